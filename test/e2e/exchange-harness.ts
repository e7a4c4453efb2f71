// What the exchange and preview e2e tests share: ktctl run as a process in the laptop namespace
// (so the tests can signal and kill it), a local HTTP server on the "laptop" that answers
// {"pod":"laptop"}, requests from the toolbox pod, and snapshots of what ktctl must restore.

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { DEMO_NS, KUBECONFIG, REPO, eventually, inLaptop, kubectl, kubectlJson, runInLaptop, runInPod } from "./harness.ts";

export const LAPTOP_ANSWER = "laptop";

/** A fresh KTCTL_HOME (journals, watchdog logs) for one test file. */
export function tempHome(prefix: string): { home: string; remove(): void } {
  const home = mkdtempSync(join(tmpdir(), `ktctl-e2e-${prefix}-`));
  return { home, remove: () => rmSync(home, { recursive: true, force: true }) };
}

/** An HTTP server in the laptop namespace on 127.0.0.1:port answering {"pod": answer}. */
export async function startLaptopServer(port: number, answer = LAPTOP_ANSWER): Promise<{ stop(): Promise<void> }> {
  const script = `Bun.serve({ port: ${port}, hostname: "127.0.0.1", fetch: () => Response.json({ pod: ${JSON.stringify(answer)} }) });`;
  const proc = Bun.spawn(inLaptop(["bun", "-e", script]), { stdout: "ignore", stderr: "pipe" });
  const stderr = new Response(proc.stderr).text();
  await eventually(async () => {
    if (proc.exitCode !== null) throw new Error(`laptop server exited ${proc.exitCode}: ${await stderr}`);
    const r = await runInLaptop(["curl", "-s", "--max-time", "2", `http://127.0.0.1:${port}/`]);
    if (!r.stdout.includes(answer)) throw new Error(`laptop server on ${port} not answering yet`);
  }, 15_000);
  return {
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}

export interface KtctlProcess {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  pid: number;
  output(): string;
  /** Resolves with the match once the output (stdout+stderr) matches; fails if ktctl exits first. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exited: Promise<number>;
}

/** Every ktctl this file started, so a failed test does not leave one holding the service. */
const started = new Set<KtctlProcess>();

/** Ctrl-C to every ktctl still running (a failed test's), and waits for them to restore and exit. */
export async function stopAllKtctl(): Promise<void> {
  const running = [...started].filter((k) => k.proc.exitCode === null && k.proc.signalCode === null);
  for (const k of running) k.proc.kill("SIGINT");
  await Promise.all(running.map((k) => k.exited));
  started.clear();
}

/**
 * How ktctl is started: from source in the repository by default. A test that replays a scenario
 * against another ktctl (the compiled binary, from a project whose .ktctl.yaml swaps a built-in for
 * a copy loaded from disk) sets KTCTL_E2E_SCENARIO_ARGV (JSON argv) and KTCTL_E2E_SCENARIO_CWD.
 */
const scenarioArgv: string[] = process.env.KTCTL_E2E_SCENARIO_ARGV ? JSON.parse(process.env.KTCTL_E2E_SCENARIO_ARGV) : ["bun", join(REPO, "core/cli/main.ts")];
const scenarioCwd = process.env.KTCTL_E2E_SCENARIO_CWD || REPO;

/** Starts `ktctl ARGS -c <admin kubeconfig> -n demo` in the laptop namespace (`argv`: another ktctl's). */
export function startKtctl(args: string[], home: string, env: Record<string, string> = {}, namespace = DEMO_NS, argv = scenarioArgv): KtctlProcess {
  const proc = Bun.spawn(inLaptop([...argv, ...args, "-c", KUBECONFIG, "-n", namespace]), {
    cwd: scenarioCwd,
    env: { ...process.env, KTCTL_HOME: home, NO_COLOR: "1", ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let text = "";
  let finished = false;
  const waiters = new Set<() => void>();
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      text += decoder.decode(chunk, { stream: true });
      for (const wake of [...waiters]) wake();
    }
  };
  const pumped = Promise.all([pump(proc.stdout), pump(proc.stderr)]);
  const exited = proc.exited.then(async (code) => {
    await pumped;
    finished = true;
    for (const wake of [...waiters]) wake();
    return code;
  });
  const handle: KtctlProcess = {
    proc,
    pid: proc.pid,
    output: () => text,
    exited,
    waitFor(pattern, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const done = (settle: () => void) => {
          clearTimeout(timer);
          waiters.delete(check);
          settle();
        };
        const check = () => {
          const match = text.match(pattern);
          if (match) done(() => resolve(match));
          else if (finished) done(() => reject(new Error(`ktctl exited ${proc.exitCode} before ${pattern}:\n${text}`)));
        };
        const timer = setTimeout(() => done(() => reject(new Error(`no ${pattern} within ${timeoutMs} ms:\n${text}`))), timeoutMs);
        waiters.add(check);
        check();
      });
    },
  };
  started.add(handle);
  return handle;
}

/** Runs ktctl to completion in the laptop namespace. */
export async function runKtctl(args: string[], home: string, env: Record<string, string> = {}, namespace = DEMO_NS) {
  const k = startKtctl(args, home, env, namespace);
  const code = await k.exited;
  return { code, output: k.output() };
}

/** Which pod answered `http://<host>/` from the toolbox pod (its JSON "pod" field). */
export async function whoAnswers(host = `echo.${DEMO_NS}`): Promise<string> {
  // busybox wget crashes with -T here; the kubectl exec timeout bounds a hanging request instead
  // (a connection caught by a stale kube-proxy rule to a pod that just went away hangs until then).
  const r = await runInPod(["wget", "-qO-", `http://${host}/`], "toolbox", DEMO_NS, { timeoutMs: 4_000 });
  if (r.code !== 0) throw new Error(`wget http://${host}/ failed (${r.code}): ${r.stderr.trim()}`);
  return JSON.parse(r.stdout).pod;
}

/** The session id ktctl prints ("... session abcd1234 ..."). */
export const SESSION_ID = /session ([a-z][a-z0-9]{3,15})\b/;

/** What exchange must give back exactly: the service's and the deployment's observable state. */
export async function snapshot(service = "echo", deployment = "echo", namespace = DEMO_NS) {
  const svc = await kubectlJson(["-n", namespace, "get", "service", service]);
  const dep = await kubectlJson(["-n", namespace, "get", "deployment", deployment]);
  return {
    service: {
      labels: svc.metadata.labels ?? {},
      annotations: svc.metadata.annotations ?? {},
      type: svc.spec.type,
      selector: svc.spec.selector ?? {},
      ports: svc.spec.ports,
    },
    deployment: {
      labels: dep.metadata.labels ?? {},
      annotations: dep.metadata.annotations ?? {},
      replicas: dep.spec.replicas,
      templateLabels: dep.spec.template.metadata.labels ?? {},
      selector: dep.spec.selector,
    },
  };
}

/** Every object of a session still in the cluster (any namespace): pods, services, leases, ... */
export async function leftovers(sessionId: string): Promise<string[]> {
  const r = await kubectl(["get", "pods,services,deployments,configmaps,secrets,leases", "-A", "-l", `ktctl.io/session=${sessionId}`, "-o", "name"]);
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout.split("\n").filter(Boolean);
}

/** The watchdog pid of a session, from its local journal. */
export function watchdogPid(home: string, sessionId: string): number {
  const journal = JSON.parse(readFileSync(join(home, "sessions", `${sessionId}.json`), "utf8"));
  const pid = journal.meta?.watchdogPid;
  if (typeof pid !== "number") throw new Error(`session ${sessionId} has no watchdog pid in its journal`);
  return pid;
}

/** Waits until a process is gone (its pid no longer signalable). */
export async function processGone(pid: number, timeoutMs = 30_000): Promise<void> {
  await eventually(async () => {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    throw new Error(`process ${pid} still running`);
  }, timeoutMs, 100);
}

/** The pods of the echo deployment (not ktctl's), by name. */
export async function echoPodNames(namespace = DEMO_NS): Promise<string[]> {
  const list = await kubectlJson<{ items: any[] }>(["-n", namespace, "get", "pods", "-l", "app=echo,!ktctl.io/managed-by"]);
  return list.items.filter((p) => !p.metadata.deletionTimestamp).map((p) => p.metadata.name);
}

/**
 * After a session ends: the original pods answer, the snapshot is identical to `before`, and nothing
 * of the session is left in the cluster.
 */
export async function expectRestored(before: Awaited<ReturnType<typeof snapshot>>, sessionId: string, timeoutMs = 40_000): Promise<void> {
  await eventually(async () => {
    const now = await snapshot();
    if (JSON.stringify(now) !== JSON.stringify(before)) throw new Error(`not restored yet:\n${JSON.stringify(now)}\n!=\n${JSON.stringify(before)}`);
  }, timeoutMs);
  await eventually(async () => {
    const pod = await whoAnswers();
    const originals = await echoPodNames();
    if (!originals.includes(pod)) throw new Error(`answered by ${pod}, not by one of ${originals.join(", ")}`);
  }, timeoutMs);
  await eventually(async () => {
    const left = await leftovers(sessionId);
    if (left.length) throw new Error(`left behind: ${left.join(", ")}`);
  }, timeoutMs);
}

/** Until the laptop answers the in-cluster request. */
export async function expectLaptopAnswers(host?: string, timeoutMs = 20_000): Promise<void> {
  await eventually(async () => {
    const pod = await whoAnswers(host);
    if (pod !== LAPTOP_ANSWER) throw new Error(`answered by ${pod}`);
  }, timeoutMs);
}
