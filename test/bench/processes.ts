// What the benchmarks read about processes on this machine, which is also the cluster's node: the
// shadow's pid (through its container's cgroup), CPU time and memory from /proc.
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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

/**
 * A process's /proc/PID/stat: its command name, and the fields after it (`fields[0]` is the state,
 * field 3 of proc(5); utime is `fields[11]`). Undefined once the process is gone.
 */
export interface ProcessStat {
  pid: number;
  command: string;
  fields: string[];
}

export function processStat(pid: number): ProcessStat | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name may hold spaces and parentheses: it ends at the last ")".
    return { pid, command: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")), fields: stat.slice(stat.lastIndexOf(")") + 2).split(" ") };
  } catch {
    return undefined;
  }
}

/** The stat of every process on the machine (those gone while it reads are left out). */
export function everyProcessStat(): ProcessStat[] {
  return readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry))
    .flatMap((entry) => processStat(Number(entry)) ?? []);
}

/** CPU time (user+system, ms) a process has used so far; NaN once it is gone. */
export function cpuMsOf(pid: number): number {
  const stat = processStat(pid);
  if (!stat) return NaN;
  return ((Number(stat.fields[11]) + Number(stat.fields[12])) * 1000) / 100; // clock ticks of 10 ms
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

/** Writes what a tool printed so far to a file (its warnings say when a tunnel broke, and why); returns the file. */
export function keepOutput(who: string, output: () => string): string {
  const file = join(tmpdir(), `ktctl-bench-failure-${new Date().toISOString().replace(/[:.]/g, "-")}.log`);
  writeFileSync(file, output());
  console.error(`${who}: a load failed; what it printed is in ${file}`);
  return file;
}

/**
 * Runs a load; if it fails, keeps what the tool under test printed (keepOutput) before the failure
 * goes on, so a rare failure can be read afterwards instead of guessed at.
 */
export async function keepingOutputOnFailure<T>(who: string, output: (() => string) | undefined, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (error) {
    if (output) keepOutput(who, output);
    throw error;
  }
}
