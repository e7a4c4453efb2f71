// What the benchmarks read about processes on this machine, which is also the cluster's node: the
// shadow's pid (through its container's cgroup), CPU time and memory from /proc.
import { readFileSync } from "node:fs";
import { kubectl, kubectlJson, run } from "../e2e/harness.ts";

/** The pid of the live ktctl shadow in a namespace, found through its container's cgroup. */
export async function shadowPidIn(namespace: string): Promise<number | undefined> {
  const pods = await kubectlJson<any>(["-n", namespace, "get", "pods", "-l", "ktctl.io/managed-by=ktctl"]);
  let live = pods.items.find((p: any) => !p.metadata.deletionTimestamp);
  if (!live) return undefined;
  // ktctl uses a shadow the moment it answers through the port-forward, which is before the kubelet
  // reports its container (at its next status sync): wait for that report.
  if (!live.status?.containerStatuses?.[0]?.containerID) {
    const name = `pod/${live.metadata.name}`;
    await kubectl(["-n", namespace, "wait", "--for=condition=Ready", name, "--timeout=30s"]);
    live = await kubectlJson<any>(["-n", namespace, "get", name]);
  }
  const id = live?.status?.containerStatuses?.[0]?.containerID?.replace(/^containerd:\/\//, "");
  if (!id) return undefined;
  const dir = (await run(["find", "/sys/fs/cgroup", "-type", "d", "-name", `*${id}*`])).stdout.trim().split("\n")[0];
  if (!dir) return undefined;
  return Number(readFileSync(`${dir}/cgroup.procs`, "utf8").split("\n")[0]) || undefined;
}

/** CPU time (user+system, ms) a process has used so far; NaN once it is gone. */
export function cpuMsOf(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // clock ticks of 10 ms
  } catch {
    return NaN;
  }
}

/** The CPU (ms) each of `processes` spent while `body` ran (processes without a pid are left out). */
export async function cpuDuring<T>(
  processes: Record<string, number | undefined>,
  body: () => Promise<T>,
): Promise<{ result: T; cpuMs: Record<string, number> }> {
  const known = Object.entries(processes).filter((entry): entry is [string, number] => entry[1] !== undefined);
  const before = known.map(([, pid]) => cpuMsOf(pid));
  const result = await body();
  return { result, cpuMs: Object.fromEntries(known.map(([name, pid], i) => [name, cpuMsOf(pid) - before[i]!])) };
}

/** Resident memory of a process (kB) now and at its peak. */
export function rssKbOf(pid: number): { rss: number; peak: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    return { rss: Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]), peak: Number(/VmHWM:\s+(\d+)/.exec(status)?.[1]) };
  } catch {
    return undefined;
  }
}
