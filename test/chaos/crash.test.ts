// Crash at any moment: for every mode, ktctl is SIGKILLed at a random moment between its start and
// full readiness, or during its exit's undo (after Ctrl-C), and then, with no user action, the
// cluster objects it may touch and the laptop (resolv.conf, hosts, nftables, iptables, routes,
// addresses) must be exactly as before within 10 s: the watchdog finishes what the dead process
// started. Not part of the e2e suite (it is slow by design); run it with a run count:
//
//   KTCTL_CHAOS_RUNS=20 bun test test/chaos
//   KTCTL_CHAOS_RUNS=3 KTCTL_CHAOS_MODES=mesh,forward bun test test/chaos
// (each mode's test allows 90 s per run)
//
// Needs the test cluster (test/cluster/up) and root (the laptop network namespace).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { kubectlJson, requireCluster } from "../e2e/harness.ts";
import { startLaptopServer } from "../e2e/exchange-harness.ts";
import {
  KUBECONFIG,
  MODES,
  clusterState,
  deployWorkspace,
  differences,
  ktctlArgv,
  laptopQuiet,
  laptopState,
  removeHome,
  scratchHome,
  tidyWorkspace,
} from "../e2e/reliability-harness.ts";

const NS = "rel-chaos";
const PORT = 28900;
const RUNS = Number(process.env.KTCTL_CHAOS_RUNS ?? "1");
const ONLY = process.env.KTCTL_CHAOS_MODES?.split(",").filter(Boolean);
const RESTORE_LIMIT_MS = 10_000;
let home: string;
let laptop: { stop(): Promise<void> };
let clusterBefore: string;

/** ktctl's objects in the namespace that are not already being deleted. */
async function liveKtctlObjects(): Promise<string[]> {
  const list = await kubectlJson<{ items: any[] }>(["-n", NS, "get", "pods,services,deployments,replicasets,configmaps,secrets,leases", "-l", "ktctl.io/managed-by"]);
  return list.items.filter((o) => !o.metadata.deletionTimestamp).map((o) => `${o.kind}/${o.metadata.name}`);
}

/** What differs from before (empty when restored). */
async function unrestored(laptopBefore: Record<string, string>): Promise<string[]> {
  const [objects, cluster, laptopNow] = await Promise.all([liveKtctlObjects(), clusterState(NS), laptopState()]);
  return [...objects.map((o) => `left: ${o}`), ...(cluster !== clusterBefore ? ["cluster objects changed"] : []), ...differences(laptopNow, laptopBefore).map((k) => `laptop ${k}`)];
}

interface Run {
  mode: string;
  phase: "start" | "exit";
  killAtMs: number;
  restored: boolean;
  restoreMs: number;
  detail: string;
}
const results: Run[] = [];

/** Typical start-up and undo durations seen so far per mode, so kill times spread over them. */
const seen = new Map<string, { readyMs: number; exitMs: number }>();

function spawn(mode: (typeof MODES)[number]) {
  const local = mode.name === "forward" ? PORT + 1 : PORT;
  const proc = Bun.spawn(ktctlArgv(KUBECONFIG, NS, mode.args(local)), {
    env: { ...process.env, KTCTL_HOME: home, NO_COLOR: "1" },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let output = "";
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) output += decoder.decode(chunk, { stream: true });
  };
  void pump(proc.stdout);
  void pump(proc.stderr);
  return { proc, output: () => output };
}

/** Waits until `pattern` is printed or `ms` pass; true when printed. */
async function printed(k: ReturnType<typeof spawn>, pattern: RegExp, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline && k.proc.exitCode === null) {
    if (pattern.test(k.output())) return true;
    await Bun.sleep(25);
  }
  return pattern.test(k.output());
}

/** True when the process exits within `ms`. */
async function exitedWithin(k: ReturnType<typeof spawn>, ms: number): Promise<boolean> {
  const timer = Bun.sleep(ms).then(() => false);
  return Promise.race([k.proc.exited.then(() => true), timer]);
}

async function crashOnce(mode: (typeof MODES)[number], phase: "start" | "exit"): Promise<Run> {
  await laptopQuiet();
  const laptopBefore = await laptopState();
  const typical = seen.get(mode.name) ?? { readyMs: mode.name.startsWith("connect") || mode.name === "forward" ? 3000 : 6000, exitMs: 1500 };
  const started = Date.now();
  const k = spawn(mode);
  let killAtMs: number;
  if (phase === "start") {
    // Anywhere from the first instant to a little after readiness.
    killAtMs = Math.floor(Math.random() * typical.readyMs * 1.1);
    await printed(k, mode.ready, killAtMs);
  } else {
    const ready = await printed(k, mode.ready, 120_000);
    if (!ready) {
      k.proc.kill("SIGINT");
      await k.proc.exited;
      throw new Error(`${mode.name} never became ready:\n${k.output()}`);
    }
    typical.readyMs = Date.now() - started;
    k.proc.kill("SIGINT");
    killAtMs = Math.floor(Math.random() * typical.exitMs);
    const exitStarted = Date.now();
    // An undo that finished before the kill says how long undo takes: later kills aim inside it.
    if (await exitedWithin(k, killAtMs)) typical.exitMs = Math.max(500, Date.now() - exitStarted);
  }
  if (phase === "start" && mode.ready.test(k.output())) typical.readyMs = Math.max(typical.readyMs, Date.now() - started);
  seen.set(mode.name, typical);
  // A start-up kill must find ktctl alive: one that ended by itself failed, which is not this test's case.
  if (phase === "start" && k.proc.exitCode !== null) {
    throw new Error(`${mode.name} exited ${k.proc.exitCode} by itself before the kill:\n${k.output()}`);
  }
  const killedAt = Date.now();
  k.proc.kill("SIGKILL");
  await k.proc.exited;

  // No user action from here: only the watchdog (and the API server) may act.
  let left: string[] = [];
  for (;;) {
    left = await unrestored(laptopBefore);
    if (!left.length || Date.now() - killedAt > 60_000) break;
    await Bun.sleep(100);
  }
  const restoreMs = Date.now() - killedAt;
  const run: Run = { mode: mode.name, phase, killAtMs, restored: !left.length && restoreMs <= RESTORE_LIMIT_MS, restoreMs, detail: left.join("; ") };
  if (left.length) {
    // Leave the next run a clean start; this one has failed already.
    await tidyWorkspace(NS);
    await deployWorkspace(NS);
  }
  return run;
}

beforeAll(async () => {
  await requireCluster();
  await deployWorkspace(NS);
  clusterBefore = await clusterState(NS);
  home = scratchHome("chaos");
  laptop = await startLaptopServer(PORT);
}, 180_000);

afterAll(async () => {
  await laptop?.stop();
  await tidyWorkspace(NS);
  removeHome(home);
  const rows = MODES.filter((m) => results.some((r) => r.mode === m.name)).map((m) => {
    const mine = results.filter((r) => r.mode === m.name);
    return `| ${m.name} | ${mine.length} | ${mine.filter((r) => r.restored).length} | ${(Math.max(...mine.map((r) => r.restoreMs)) / 1000).toFixed(1)} s |`;
  });
  console.log(["| mode | runs | restored within 10 s | worst time |", "|---|---|---|---|", ...rows].join("\n"));
});

describe(`SIGKILL at a random moment, ${RUNS} run(s) per mode`, () => {
  for (const mode of MODES.filter((m) => !ONLY || ONLY.includes(m.name))) {
    test(`${mode.name}: the cluster and the laptop are as before within 10 s`, async () => {
      const mine: Run[] = [];
      for (let i = 0; i < RUNS; i++) {
        // Two of three kills land in start-up (shadow not ready, selector being patched, routes
        // pushed), one in the exit's undo.
        const phase = RUNS === 1 ? (Math.random() < 0.5 ? "start" : "exit") : i % 3 === 2 ? "exit" : "start";
        // A run that could not be staged (ktctl failed by itself) counts as a failure, and the next
        // run starts from a repaired namespace.
        const run = await crashOnce(mode, phase).catch(async (error): Promise<Run> => {
          await tidyWorkspace(NS);
          await deployWorkspace(NS);
          return { mode: mode.name, phase, killAtMs: 0, restored: false, restoreMs: 0, detail: (error as Error).message };
        });
        mine.push(run);
        results.push(run);
        console.log(`${mode.name} #${i + 1}: killed ${run.phase === "start" ? "after start" : "into undo"} +${run.killAtMs} ms; ${run.restored ? "restored" : "NOT restored"} in ${run.restoreMs} ms ${run.detail}`);
      }
      expect(mine.filter((r) => !r.restored)).toEqual([]);
    }, RUNS * 90_000 + 60_000);
  }
});
