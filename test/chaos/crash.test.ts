// Crash at any moment: for every mode, ktctl is SIGKILLed at a random moment between its start and
// full readiness, or during its exit's undo (after Ctrl-C), and then, with no user action, the
// cluster objects it may touch and the laptop (resolv.conf, hosts, nftables, iptables, routes,
// addresses) must be exactly as before within 10 s: the watchdog finishes what the dead process
// started. Then the same with ktctl AND its watchdog killed (a laptop that lost power): nothing
// acts until the session's Lease has expired by the API server's clock, then `ktctl clean` must
// restore the same. Not part of the e2e suite (it is slow by design); run it with a run count:
//
//   KTCTL_CHAOS_RUNS=20 bun test test/chaos/crash.test.ts
//   KTCTL_CHAOS_RUNS=3 KTCTL_CHAOS_MODES=mesh,forward bun test test/chaos/crash.test.ts
//   KTCTL_CHAOS_DOUBLE_MODES=mesh    the double kill for these modes only (CI: one mode, ~45 s)
// (each mode's test allows 90 s per run; a double kill waits out the 30 s lease: ~45 s a run)
//
// Needs the test cluster (test/cluster/up) and root (the laptop network namespace).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { connectKube } from "../../core/kube/index.ts";
import { EXPIRY_GRACE_SECONDS, isLeaseExpired, listLeases, readLease, serverNow } from "../../core/session/lease.ts";
import { leaseSelector } from "../../core/session/labels.ts";
import type { Kube } from "../../core/plugin-api.ts";
import { inLaptop, KTCTL, requireCluster, run } from "../e2e/harness.ts";
import { startLaptopServer } from "../e2e/exchange-harness.ts";
import { everyProcessStat } from "../bench/processes.ts";
import {
  KUBECONFIG,
  MODES,
  deployWorkspace,
  ktctlArgv,
  laptopQuiet,
  removeHome,
  repairWorkspace,
  scratchHome,
  snapshot,
  tidyWorkspace,
  unrestored,
  untilRestored,
} from "../e2e/reliability-harness.ts";

const NS = "rel-chaos";
const PORT = 28900;
const RUNS = Number(process.env.KTCTL_CHAOS_RUNS ?? "1");
const ONLY = process.env.KTCTL_CHAOS_MODES?.split(",").filter(Boolean);
const DOUBLE_ONLY = process.env.KTCTL_CHAOS_DOUBLE_MODES?.split(",").filter(Boolean) ?? ONLY;
const RESTORE_LIMIT_MS = 10_000;
let home: string;
let laptop: { stop(): Promise<void> };
let kube: Kube;

type Phase = "start" | "exit";

interface Run {
  mode: string;
  /** single: ktctl alone killed, its watchdog restores; double: both killed, clean restores. */
  kind: "single" | "double";
  phase: Phase;
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
type Ktctl = ReturnType<typeof spawn>;

/** Waits until `pattern` is printed or `ms` pass; true when printed. */
async function printed(k: Ktctl, pattern: RegExp, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline && k.proc.exitCode === null) {
    if (pattern.test(k.output())) return true;
    await Bun.sleep(25);
  }
  return pattern.test(k.output());
}

/** True when the process exits within `ms`. */
async function exitedWithin(k: Ktctl, ms: number): Promise<boolean> {
  const timer = Bun.sleep(ms).then(() => false);
  return Promise.race([k.proc.exited.then(() => true), timer]);
}

/**
 * Starts the mode and returns at a random moment to kill it: in `start`, anywhere from the first
 * instant to a little after readiness; in `exit`, inside the undo that Ctrl-C began.
 */
async function stageKill(mode: (typeof MODES)[number], phase: Phase): Promise<{ k: Ktctl; killAtMs: number }> {
  const typical = seen.get(mode.name) ?? { readyMs: mode.name.startsWith("connect") || mode.name === "forward" ? 3000 : 6000, exitMs: 1500 };
  const started = Date.now();
  const k = spawn(mode);
  let killAtMs: number;
  if (phase === "start") {
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
  return { k, killAtMs };
}

async function crashOnce(mode: (typeof MODES)[number], phase: Phase): Promise<Run> {
  await laptopQuiet();
  const before = await snapshot(NS);
  const { k, killAtMs } = await stageKill(mode, phase);
  k.proc.kill("SIGKILL");
  await k.proc.exited;
  // No user action from here: only the watchdog (and the API server) may act.
  const { left, ms } = await untilRestored(before, 60_000);
  // Leave the next run a clean start; this one has failed already.
  if (left.length) await repairWorkspace(NS);
  return { mode: mode.name, kind: "single", phase, killAtMs, restored: !left.length && ms <= RESTORE_LIMIT_MS, restoreMs: ms, detail: left.join("; ") };
}

/** The parent pid of every process, from /proc (field 4 of proc(5)). */
function parentPids(): Map<number, number> {
  return new Map(everyProcessStat().map((stat) => [stat.pid, Number(stat.fields[1])]));
}

/** Every process descending from `pid`: ktctl's watchdog (spawned detached, but still its child) and helpers. */
function descendants(pid: number): number[] {
  const parents = parentPids();
  const found: number[] = [];
  const queue = [pid];
  while (queue.length) {
    const parent = queue.shift()!;
    for (const [child, ppid] of parents) if (ppid === parent && !found.includes(child)) (found.push(child), queue.push(child));
  }
  return found;
}

const commandLine = (pid: number): string => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
  } catch {
    return "";
  }
};

/**
 * SIGKILLs ktctl and everything it started, its watchdog first. ktctl is frozen meanwhile, so it
 * can neither notice its watchdog's death nor start another one. Returns how many watchdogs died.
 */
async function killWithWatchdog(k: Ktctl): Promise<number> {
  const pid = k.proc.pid;
  // An undo that finished before the kill: ktctl has exited, and told its watchdog so.
  if (k.proc.exitCode !== null) return 0;
  process.kill(pid, "SIGSTOP");
  const children = descendants(pid);
  const watchdogs = children.filter((c) => commandLine(c).includes("__watchdog")).length;
  for (const child of children) {
    try {
      process.kill(child, "SIGKILL");
    } catch {
      // Exited by itself meanwhile.
    }
  }
  k.proc.kill("SIGKILL");
  await k.proc.exited;
  return watchdogs;
}

/**
 * Waits until every ktctl Lease in the namespace has expired by the API server's clock (the rule
 * clean itself applies): sleeps exactly the time the server clock says is left, then checks again.
 */
async function untilLeasesExpire(): Promise<void> {
  for (;;) {
    const [leases, now] = await Promise.all([listLeases(kube, NS, leaseSelector()), serverNow(kube, NS)]);
    const records = leases.map(readLease).filter((r) => !isLeaseExpired(r, now));
    if (!records.length) return;
    const left = Math.max(...records.map((r) => (r.lastRenewal ?? now) + (r.durationSeconds + EXPIRY_GRACE_SECONDS) * 1000 - now));
    await Bun.sleep(Math.max(100, left + 100));
  }
}

/** Waits until ktctl has started its watchdog (or has exited); a kill before that is the single-kill case. */
async function untilWatchdogStarted(k: Ktctl, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (k.proc.exitCode === null && Date.now() < deadline) {
    if (descendants(k.proc.pid).some((c) => commandLine(c).includes("__watchdog"))) return;
    await Bun.sleep(25);
  }
}

async function doubleKillOnce(mode: (typeof MODES)[number], phase: Phase): Promise<Run> {
  await laptopQuiet();
  const before = await snapshot(NS);
  const { k, killAtMs } = await stageKill(mode, phase);
  if (phase === "start") await untilWatchdogStarted(k);
  const watchdogs = await killWithWatchdog(k);
  // Nobody restores now: the Lease must expire before clean may take the session.
  await untilLeasesExpire();
  const cleanStarted = Date.now();
  const clean = await run(inLaptop([...KTCTL, "--kubeconfig", KUBECONFIG, "-n", NS, "clean"]), { env: { KTCTL_HOME: home, NO_COLOR: "1" }, timeoutMs: 120_000 });
  const cleanMs = Date.now() - cleanStarted;
  // What clean restores is restored when it returns (pods it deleted may still be terminating).
  const left = await unrestored(before);
  const detail = [...(clean.code !== 0 ? [`clean exited ${clean.code}: ${(clean.stdout + clean.stderr).trim()}`] : []), ...left].join("; ");
  if (left.length) await repairWorkspace(NS);
  return {
    mode: mode.name,
    kind: "double",
    phase,
    killAtMs,
    restored: clean.code === 0 && !left.length,
    restoreMs: cleanMs,
    detail: `${watchdogs} watchdog(s) killed${detail ? `; ${detail}` : ""}`,
  };
}

beforeAll(async () => {
  await requireCluster();
  await deployWorkspace(NS);
  kube = await connectKube({ kubeconfig: KUBECONFIG, namespace: NS });
  home = scratchHome("chaos");
  laptop = await startLaptopServer(PORT);
}, 180_000);

afterAll(async () => {
  await laptop?.stop();
  await tidyWorkspace(NS);
  removeHome(home);
  const table = (kind: Run["kind"], heading: string) => {
    const rows = MODES.filter((m) => results.some((r) => r.mode === m.name && r.kind === kind)).map((m) => {
      const mine = results.filter((r) => r.mode === m.name && r.kind === kind);
      return `| ${m.name} | ${mine.length} | ${mine.filter((r) => r.restored).length} | ${(Math.max(...mine.map((r) => r.restoreMs)) / 1000).toFixed(1)} s |`;
    });
    return rows.length ? [`| mode | runs | ${heading} | worst time |`, "|---|---|---|---|", ...rows].join("\n") : "";
  };
  console.log([table("single", "restored within 10 s"), table("double", "restored when clean returns")].filter(Boolean).join("\n\n"));
});

/** Two of three kills land in start-up (shadow not ready, selector being patched, routes pushed), one in the exit's undo. */
const phaseOf = (i: number): Phase => (RUNS === 1 ? (Math.random() < 0.5 ? "start" : "exit") : i % 3 === 2 ? "exit" : "start");

/** Runs `once` RUNS times for a mode; a run that could not be staged (ktctl failed by itself) counts as a failure. */
async function runsOf(mode: (typeof MODES)[number], kind: Run["kind"], once: (mode: (typeof MODES)[number], phase: Phase) => Promise<Run>): Promise<Run[]> {
  const mine: Run[] = [];
  for (let i = 0; i < RUNS; i++) {
    const phase = phaseOf(i);
    const run = await once(mode, phase).catch(async (error): Promise<Run> => {
      await repairWorkspace(NS);
      return { mode: mode.name, kind, phase, killAtMs: 0, restored: false, restoreMs: 0, detail: (error as Error).message };
    });
    mine.push(run);
    results.push(run);
    console.log(`${mode.name} ${kind} #${i + 1}: killed ${run.phase === "start" ? "after start" : "into undo"} +${run.killAtMs} ms; ${run.restored ? "restored" : "NOT restored"} in ${run.restoreMs} ms ${run.detail}`);
  }
  return mine;
}

describe(`SIGKILL at a random moment, ${RUNS} run(s) per mode`, () => {
  for (const mode of MODES.filter((m) => !ONLY || ONLY.includes(m.name))) {
    test(`${mode.name}: the cluster and the laptop are as before within 10 s`, async () => {
      const mine = await runsOf(mode, "single", crashOnce);
      expect(mine.filter((r) => !r.restored)).toEqual([]);
    }, RUNS * 90_000 + 60_000);
  }
});

describe(`ktctl and its watchdog SIGKILLed together, ${RUNS} run(s) per mode`, () => {
  for (const mode of MODES.filter((m) => !DOUBLE_ONLY || DOUBLE_ONLY.includes(m.name))) {
    test(`${mode.name}: once the lease expires, ktctl clean restores the cluster and the laptop by the time it returns`, async () => {
      const mine = await runsOf(mode, "double", doubleKillOnce);
      expect(mine.filter((r) => !r.restored)).toEqual([]);
    }, RUNS * 120_000 + 60_000);
  }
});
