// What every e2e test stands on: the real cluster of test/cluster, the laptop network namespace,
// commands in pods, and event-driven waits. The cluster is started once per run by test/run (or by
// `test/cluster/up` by hand); tests only check that it is there.

import { existsSync } from "node:fs";
import { resolve } from "node:path";

export const REPO = resolve(import.meta.dir, "../..");
export const KUBECONFIG = process.env.KTCTL_E2E_KUBECONFIG ?? "/var/lib/ktctl-cluster/admin.kubeconfig";
/** The laptop's network namespace; the benchmarks may run in one of their own (test/bench/all.ts). */
export const LAPTOP_NS = process.env.KTCTL_E2E_LAPTOP_NS || "ktctl-laptop";
export const API_SERVER = "https://10.200.0.1:6443";
/** `ctr` on the test node's containerd, in the namespace the kubelet uses (test/cluster). */
export const CTR = ["ctr", "--address", "/run/ktctl-cluster/containerd.sock", "-n", "k8s.io"];
export const DEMO_NS = "demo";
export const DEMO2_NS = "demo2";

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: Record<string, string>;
  timeoutMs?: number;
  stdin?: string;
  cwd?: string;
}

/** Runs a command to completion and collects its output (never throws on a non-zero exit). */
export async function run(argv: string[], options: RunOptions = {}): Promise<RunResult> {
  const proc = Bun.spawn(argv, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdin: options.stdin === undefined ? "ignore" : new Blob([options.stdin]),
    stdout: "pipe",
    stderr: "pipe",
    timeout: options.timeoutMs ?? 60_000,
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}

/** kubectl with the admin kubeconfig, from the host (the test's view, not the laptop's). */
export function kubectl(args: string[], options?: RunOptions): Promise<RunResult> {
  return run(["kubectl", "--kubeconfig", KUBECONFIG, ...args], options);
}

/** kubectl that must succeed; returns stdout. */
export async function kubectlOk(args: string[], options?: RunOptions): Promise<string> {
  const r = await kubectl(args, options);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

export async function kubectlJson<T = any>(args: string[]): Promise<T> {
  return JSON.parse(await kubectlOk([...args, "-o", "json"])) as T;
}

/** The argv prefix that runs a command inside the laptop network namespace. */
export const inLaptop = (argv: string[]): string[] => ["ip", "netns", "exec", LAPTOP_NS, ...argv];

/** Runs a command on the "laptop": it reaches the API server and nothing else of the cluster. */
export function runInLaptop(argv: string[], options?: RunOptions): Promise<RunResult> {
  return run(inLaptop(argv), options);
}

/** Runs a command inside a pod (default: the toolbox pod of the demo namespace). */
export function runInPod(argv: string[], pod = "toolbox", namespace = DEMO_NS, options?: RunOptions): Promise<RunResult> {
  return kubectl(["-n", namespace, "exec", pod, "--", ...argv], options);
}

/**
 * Waits for `kubectl wait`-style conditions (a watch inside kubectl, not a poll).
 * Example: waitFor(["pod/x", "--for=condition=Ready"], "demo").
 */
export async function waitFor(args: string[], namespace = DEMO_NS, timeoutSeconds = 60): Promise<void> {
  await kubectlOk(["-n", namespace, "wait", ...args, `--timeout=${timeoutSeconds}s`], { timeoutMs: (timeoutSeconds + 10) * 1000 });
}

/**
 * Retries a check until it passes, bounded by a deadline: for conditions that have no watch
 * (a TCP answer, a file restored by another process). Each attempt is a real check of the thing.
 */
export async function eventually<T>(check: () => Promise<T>, timeoutMs = 30_000, intervalMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      return await check();
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) throw lastError;
    await Bun.sleep(intervalMs);
  }
}

/** True when the cluster of test/cluster is up; e2e files call requireCluster() in beforeAll. */
export async function clusterIsUp(): Promise<boolean> {
  if (!existsSync(KUBECONFIG)) return false;
  const r = await kubectl(["get", "--raw", "/readyz"], { timeoutMs: 10_000 });
  return r.code === 0;
}

export async function requireCluster(): Promise<void> {
  if (!(await clusterIsUp())) {
    throw new Error(`the test cluster is not up (no answer with ${KUBECONFIG}); run test/cluster/up first`);
  }
}

/** Pods of an app label in a namespace, with their IPs. */
export async function podsOf(app: string, namespace = DEMO_NS): Promise<{ name: string; ip: string }[]> {
  const list = await kubectlJson<{ items: any[] }>(["-n", namespace, "get", "pods", "-l", `app=${app}`]);
  return list.items
    .filter((p) => p.status?.podIP && !p.metadata.deletionTimestamp)
    .map((p) => ({ name: p.metadata.name, ip: p.status.podIP }));
}

export async function clusterIpOf(service: string, namespace = DEMO_NS): Promise<string> {
  const svc = await kubectlJson<any>(["-n", namespace, "get", "service", service]);
  return svc.spec.clusterIP;
}

/** A TCP connect attempt from the laptop namespace: true when something answered. */
export async function laptopCanConnect(host: string, port: number, timeoutSeconds = 2): Promise<boolean> {
  const r = await runInLaptop(["curl", "-s", "-o", "/dev/null", "--connect-timeout", String(timeoutSeconds), "-k", `http://${host}:${port}/`], {
    timeoutMs: (timeoutSeconds + 5) * 1000,
  });
  // 7: could not connect; 28: timed out; 6: name not resolved. Anything else means a peer answered.
  return ![6, 7, 28].includes(r.code);
}

/** One of the node's TCP connection-tracking entries toward a service address. */
export interface TrackedConnection {
  /** conntrack's TCP state: SYN_SENT, ESTABLISHED, TIME_WAIT, ... */
  state: string;
  /** The address the service address was translated to (the endpoint the entry sends to). */
  replySource: string;
}

/** The node's TCP conntrack entries toward `serviceIp` (as root, on the node); why not, when they cannot be read. */
export async function trackedConnections(serviceIp: string): Promise<{ entries: TrackedConnection[] } | { unavailable: string }> {
  const r = await run(["conntrack", "-L", "-p", "tcp", "--orig-dst", serviceIp], { timeoutMs: 10_000 });
  if (r.code !== 0) return { unavailable: r.stderr.trim().split("\n")[0] || `conntrack exited ${r.code}` };
  const entries: TrackedConnection[] = [];
  for (const line of r.stdout.split("\n")) {
    // "tcp 6 117 TIME_WAIT src=CLIENT dst=SERVICE ... src=ENDPOINT dst=CLIENT ...": the second src is the reply's.
    const replySource = [...line.matchAll(/src=(\S+)/g)][1]?.[1];
    const state = /^\S+\s+\d+\s+\d+\s+([A-Z_]+)/.exec(line)?.[1];
    if (replySource && state) entries.push({ state, replySource });
  }
  return { entries };
}

/**
 * How e2e tests run ktctl: the compiled binary when KTCTL_E2E_BIN names it (test/run does), so
 * the product itself is tested; otherwise from source.
 */
export const KTCTL: string[] = process.env.KTCTL_E2E_BIN ? [process.env.KTCTL_E2E_BIN] : ["bun", `${REPO}/core/cli/main.ts`];

/** argv for ktctl on the laptop with the test cluster's kubeconfig. */
export const ktctlInLaptop = (args: string[]): string[] => inLaptop([...KTCTL, "--kubeconfig", KUBECONFIG, ...args]);

export interface RunningKtctl {
  proc: ReturnType<typeof Bun.spawn>;
  /** Everything printed so far (stdout and stderr interleaved as read). */
  output(): string;
  /** Resolves when a line matching `pattern` has been printed; rejects if ktctl exits first. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Sends a signal and waits for the exit code. */
  stop(signal?: NodeJS.Signals | number): Promise<number>;
}

/** Starts a long-running ktctl command (forward, connect, exchange, ...) in the laptop namespace. */
export function startKtctl(args: string[], env: Record<string, string> = {}, options: { cwd?: string } = {}): RunningKtctl {
  return startWatched(ktctlInLaptop(args), env, options);
}

/** Starts any long-running command (argv as given) whose output can be awaited line by line. */
export function startWatched(argv: string[], env: Record<string, string> = {}, options: { cwd?: string } = {}): RunningKtctl {
  const proc = Bun.spawn(argv, {
    cwd: options.cwd,
    env: { ...process.env, ...env },
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
  });
  let text = "";
  const listeners = new Set<() => void>();
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      text += decoder.decode(chunk, { stream: true });
      for (const notify of listeners) notify();
    }
  };
  const pumped = Promise.all([pump(proc.stdout as ReadableStream<Uint8Array>), pump(proc.stderr as ReadableStream<Uint8Array>)]);
  void proc.exited.then(() => pumped).then(() => {
    for (const notify of listeners) notify();
  });
  return {
    proc,
    output: () => text,
    waitForOutput(pattern, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = pattern.exec(text);
          if (match) return finish(() => resolve(match[0]));
          if (proc.exitCode !== null) return finish(() => reject(new Error(`${argv.join(" ")} exited (${proc.exitCode}) before printing ${pattern}:\n${text}`)));
        };
        const timer = setTimeout(() => finish(() => reject(new Error(`no ${pattern} after ${timeoutMs} ms:\n${text}`))), timeoutMs);
        const finish = (settle: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          settle();
        };
        listeners.add(check);
        check();
      });
    },
    async stop(signal = "SIGINT") {
      if (proc.exitCode === null) proc.kill(signal);
      const code = await proc.exited;
      await pumped;
      return code;
    },
  };
}

/** Objects of any session still in a namespace (pods, services, leases, configmaps). */
export async function leftovers(namespace = DEMO_NS): Promise<string[]> {
  const out = await kubectlOk(["-n", namespace, "get", "pods,services,leases,configmaps,deployments", "-l", "ktctl.io/managed-by=ktctl", "-o", "name"]);
  return out.split("\n").filter(Boolean);
}
