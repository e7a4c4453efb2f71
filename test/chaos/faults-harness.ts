// What the fault suite (faults.test.ts) stands on: its own laptop namespace, a workspace with one
// echo service per mode, the faults themselves (API server and containerd killed and restarted, the
// laptop's link dropped, shadow pods deleted), continuous probes, and heal times read off them.

import { FAULTS_LAPTOP } from "./faults-laptop.ts";
import { appendFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { API_SERVER, CTR, KUBECONFIG, REPO, inLaptop, kubectl, kubectlJson, kubectlOk, run, startWatched, type RunningKtctl } from "../e2e/harness.ts";
import { echoWorkloadYaml } from "../e2e/echo-workload.ts";
import { deployWorkspace, ktctlArgv } from "../e2e/reliability-harness.ts";

/** Where every cluster-wide fault is announced, so other runs can tell why they failed. */
export const FAULT_LOG = "/tmp/ktctl-faults.log";

export function logFault(phase: "START" | "END", fault: string): void {
  appendFileSync(FAULT_LOG, `${new Date().toISOString()} ${phase} ${fault}\n`);
}

// ---- the laptop --------------------------------------------------------------------------------

const netnsEnv = {
  KTCTL_NETNS: FAULTS_LAPTOP.name,
  KTCTL_NETNS_IF: FAULTS_LAPTOP.hostInterface,
  KTCTL_NETNS_NET: FAULTS_LAPTOP.net,
  KTCTL_NETNS_CHAIN: FAULTS_LAPTOP.chain,
};

async function netns(action: "up" | "down"): Promise<void> {
  const r = await run(["bash", join(REPO, "test/bench/anchors/netns.sh"), action], { env: netnsEnv });
  if (r.code !== 0) throw new Error(`netns.sh ${action}: ${r.stderr.trim()}`);
}
export const laptopUp = () => netns("up");
export const laptopDown = () => netns("down");

async function ipOk(argv: string[]): Promise<void> {
  const r = await run(["ip", ...argv]);
  if (r.code !== 0) throw new Error(`ip ${argv.join(" ")}: ${r.stderr.trim()}`);
}

/**
 * The laptop loses the API server for `seconds`, then gets it back: "link-down" pulls the cable (the
 * laptop's side sees no carrier, new connections fail at once); "silent-drop" loses every packet on
 * the way (a dead Wi-Fi or VPN: nothing fails, everything hangs). `during` runs meanwhile.
 */
export async function cutLaptopOff(seconds: number, how: "link-down" | "silent-drop", during?: () => Promise<void>): Promise<void> {
  const apiIp = new URL(API_SERVER).hostname;
  if (how === "link-down") await ipOk(["link", "set", FAULTS_LAPTOP.hostInterface, "down"]);
  else await dropTraffic("-I", apiIp);
  const back = Date.now() + seconds * 1000;
  try {
    await during?.();
    await Bun.sleep(Math.max(0, back - Date.now())); // the fault's length is the point, not a wait for readiness
  } finally {
    if (how === "link-down") await ipOk(["link", "set", FAULTS_LAPTOP.hostInterface, "up"]);
    else await dropTraffic("-D", apiIp);
  }
}

/** Inserts (-I) or deletes (-D) the laptop's rules that drop every packet to and from `address`. */
async function dropTraffic(action: "-I" | "-D", address: string): Promise<void> {
  await inLaptopOk(["iptables", "-w", action, "OUTPUT", ...(action === "-I" ? ["1"] : []), "-d", address, "-j", "DROP"]);
  await inLaptopOk(["iptables", "-w", action, "INPUT", ...(action === "-I" ? ["1"] : []), "-s", address, "-j", "DROP"]);
}

/**
 * The silent drop's first rule creates the laptop's filter table and its chains, which stay once the
 * rules are gone: a fresh laptop would then read as changed although ktctl left nothing. The same
 * rules for an address nobody uses (TEST-NET-1), added and removed before the laptop's state is
 * first read, create them up front.
 */
export async function primeLaptopFirewall(): Promise<void> {
  await dropTraffic("-I", "192.0.2.1");
  await dropTraffic("-D", "192.0.2.1");
}

async function inLaptopOk(argv: string[]): Promise<void> {
  const r = await run(inLaptop(argv));
  if (r.code !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr.trim()}`);
}

/** `ktctl clean` from another machine (the host, with a home of its own): it undoes expired sessions. */
export async function cleanFromElsewhere(namespace: string, home: string): Promise<string> {
  const r = await run(["bun", join(REPO, "core/cli/main.ts"), "--kubeconfig", KUBECONFIG, "-n", namespace, "clean"], { env: { KTCTL_HOME: home, NO_COLOR: "1" }, timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`ktctl clean failed (${r.code}): ${r.stdout}${r.stderr}`);
  return r.stdout;
}

// ---- the cluster -------------------------------------------------------------------------------

/** SIGKILL and restart of one cluster daemon with its own arguments; resolves once it answers again. */
export async function restartDaemon(name: "kube-apiserver" | "containerd", downSeconds = 0): Promise<void> {
  const r = await run(["bash", join(REPO, "test/cluster/lib/restart-daemon.sh"), name, String(downSeconds)], { timeoutMs: 180_000 });
  if (r.code !== 0) throw new Error(`restart-daemon.sh ${name}: ${r.stdout}${r.stderr}`);
}

/** Waits until the node is Ready and every pod of `namespaces` is Ready (kubectl's own watch). */
export async function clusterHealthy(namespaces: string[], timeoutSeconds = 120): Promise<void> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  const left = () => `${Math.max(1, Math.round((deadline - Date.now()) / 1000))}s`;
  // The API server may still refuse for a moment after a restart: retry until the deadline.
  for (;;) {
    const node = await kubectl(["wait", "--for=condition=Ready", "node", "--all", `--timeout=${left()}`], { timeoutMs: timeoutSeconds * 1000 + 10_000 });
    if (node.code === 0) break;
    if (Date.now() > deadline) throw new Error(`node not Ready: ${node.stderr.trim()}`);
    await Bun.sleep(500);
  }
  for (const namespace of namespaces) {
    for (;;) {
      // Bare pods only by their own readiness; pods being deleted (a shadow just replaced) are skipped.
      const pods = await kubectlJson<{ items: any[] }>(["-n", namespace, "get", "pods"]).catch(() => ({ items: [] as any[] }));
      const notReady = pods.items.filter(
        (p) => !p.metadata.deletionTimestamp && p.status?.phase !== "Succeeded" && !(p.status?.conditions ?? []).some((c: any) => c.type === "Ready" && c.status === "True"),
      );
      if (!notReady.length) break;
      if (Date.now() > deadline) throw new Error(`pods not Ready in ${namespace}: ${notReady.map((p) => p.metadata.name).join(", ")}`);
      await Bun.sleep(500);
    }
  }
}

/** The pod whose network the in-cluster probes run in: a pod of the namespace like any client. */
const proberYaml = (namespace: string) => `
apiVersion: v1
kind: Pod
metadata: { name: prober, namespace: ${namespace}, labels: { app: prober } }
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: prober
    image: ktctl.local/echo:1
    imagePullPolicy: Never
`;

/** The namespace: echo (connect, forward), echo-x (exchange), echo-m (mesh), and the prober pod. */
export async function deployFaultWorkspace(namespace: string): Promise<void> {
  await deployWorkspace(namespace);
  await kubectlOk(["apply", "-f", "-"], { stdin: [...["echo-x", "echo-m"].map((name) => echoWorkloadYaml({ namespace, name, labels: { app: name } })), proberYaml(namespace)].join("\n---\n") });
  for (const name of ["echo-x", "echo-m"]) await kubectlOk(["-n", namespace, "rollout", "status", `deployment/${name}`, "--timeout=120s"], { timeoutMs: 130_000 });
  await kubectlOk(["-n", namespace, "wait", "--for=condition=Ready", "pod/prober", "--timeout=120s"], { timeoutMs: 130_000 });
}

export async function clusterIpOf(namespace: string, service: string): Promise<string> {
  return (await kubectlOk(["-n", namespace, "get", "service", service, "-o", "jsonpath={.spec.clusterIP}"])).trim();
}

/** The containerd ids of a pod's containers. */
export async function containerIdsOf(namespace: string, pod: string): Promise<string[]> {
  const ids = await kubectlOk(["-n", namespace, "get", "pod", pod, "-o", "jsonpath={.status.containerStatuses[*].containerID}"]);
  return ids.split(/\s+/).filter(Boolean).map((id) => id.replace(/^containerd:\/\//, ""));
}

async function runningTasks(): Promise<string[]> {
  const r = await run([...CTR, "task", "ls"]);
  return r.stdout.split("\n").filter((l) => /\bRUNNING\b/.test(l)).map((l) => l.split(/\s+/)[0]!);
}

/** Waits until none of `ids` runs any more on the node (containerd's own view). */
export async function containersGone(ids: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const tasks = await runningTasks();
    const alive = ids.filter((id) => tasks.includes(id));
    if (!alive.length) return;
    if (Date.now() > deadline) throw new Error(`containers still running after ${timeoutMs} ms: ${alive.join(", ")}`);
    await Bun.sleep(100);
  }
}

/** The host PID of a pod's first container: `nsenter -t PID -n` enters the pod's network. */
export async function podPid(namespace: string, pod: string): Promise<number> {
  const id = (await kubectlOk(["-n", namespace, "get", "pod", pod, "-o", "jsonpath={.status.containerStatuses[0].containerID}"])).trim().replace(/^containerd:\/\//, "");
  const r = await run([...CTR, "task", "ls"]);
  const line = r.stdout.split("\n").find((l) => l.startsWith(id));
  const pid = Number(line?.trim().split(/\s+/)[1]);
  if (!pid) throw new Error(`no running task for ${namespace}/${pod} (${id})`);
  return pid;
}

/** The bare pods of a session (its shadows; the mesh's router is a Deployment's pod). */
export async function shadowPodsOf(namespace: string, sessionId: string): Promise<string[]> {
  const pods = await kubectlJson<{ items: any[] }>(["-n", namespace, "get", "pods", "-l", `ktctl.io/session=${sessionId}`]);
  return pods.items.filter((p) => !p.metadata.deletionTimestamp && !(p.metadata.ownerReferences ?? []).length).map((p) => p.metadata.name);
}

/** The id of the one session a KTCTL_HOME holds (its journal's file name). */
export function sessionIdIn(home: string): string | undefined {
  try {
    return readdirSync(join(home, "sessions")).find((f) => /^[a-z][a-z0-9]+\.json$/.test(f))?.replace(/\.json$/, "");
  } catch {
    return undefined;
  }
}

// ---- sessions and probes -----------------------------------------------------------------------

/** ktctl started in the fault laptop with a home of its own. */
export function startFaultSession(namespace: string, args: string[], home: string): RunningKtctl {
  return startWatched(ktctlArgv(KUBECONFIG, namespace, args), { KTCTL_HOME: home, NO_COLOR: "1" });
}

export interface ProbeTarget {
  name: string;
  url: string;
  headers?: Record<string, string>;
  expect: string;
}

export interface ProbeRecord {
  start: number;
  end: number;
  target: string;
  ok: boolean;
  answer: string;
}

export interface Prober {
  records: ProbeRecord[];
  stop(): Promise<void>;
}

const PROBE_LOOP = join(REPO, "test/chaos/probe-loop.ts");

/** Runs probe-loop.ts under `prefix` (ip netns exec ..., nsenter ...) and collects its answers. */
export function startProber(prefix: string[], targets: ProbeTarget[]): Prober {
  const proc = Bun.spawn([...prefix, process.execPath, PROBE_LOOP, JSON.stringify(targets)], { stdout: "pipe", stderr: "inherit", stdin: "ignore" });
  const records: ProbeRecord[] = [];
  const pumped = (async () => {
    const decoder = new TextDecoder();
    let buffer = "";
    for await (const chunk of proc.stdout) {
      buffer += decoder.decode(chunk, { stream: true });
      let newline: number;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        if (line.trim()) records.push(JSON.parse(line));
      }
    }
  })();
  return {
    records,
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
      await pumped;
    },
  };
}

export const laptopProber = (targets: ProbeTarget[]) => startProber(inLaptop([]), targets);
export const podProber = (pid: number, targets: ProbeTarget[]) => startProber(["nsenter", "-t", String(pid), "-n"], targets);

/**
 * The heal time of a target: from the fault's end to the end of the first request started after
 * it that succeeded. Undefined when none has yet.
 */
export function healMs(records: ProbeRecord[], target: string, faultEnd: number): number | undefined {
  const first = records.find((r) => r.target === target && r.start >= faultEnd && r.ok);
  return first ? first.end - faultEnd : undefined;
}

/** Whether the target failed at all between `from` and `to` (did the fault break the traffic?). */
export const brokeBetween = (records: ProbeRecord[], target: string, from: number, to: number): boolean =>
  records.some((r) => r.target === target && r.start >= from && r.start <= to && !r.ok);

/** The target's latest answer, ok or not. */
export const lastOf = (records: ProbeRecord[], target: string): ProbeRecord | undefined => records.findLast((r) => r.target === target);
