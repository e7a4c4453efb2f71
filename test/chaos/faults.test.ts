// Faults while a session is up: with connect (system), exchange, mesh, preview and forward all
// running, each fault in turn: the API server SIGKILLed and restarted, the laptop's link dropped for
// 20 s, every shadow pod deleted (gracefully, then with --grace-period=0 --force), containerd
// SIGKILLed and restarted. Continuous probes (a request every ~100 ms per target) measure each mode's
// heal time: from the fault's end to the first request that succeeds again. A mode passes a fault
// when its traffic flows again within 10 s, or when its session ended by itself with a message and
// nothing of it left. At the end Ctrl-C must restore the cluster and the laptop exactly.
//
// Traffic per mode: connect = a request by service name from the laptop; exchange and preview = a
// request from a pod of the namespace (the probe runs in the prober pod's network) reaching the
// laptop's server; mesh = the same with the mark (the laptop) and without (the cluster's echo-m);
// forward = a request to the forwarded local port.
//
// Not part of test/run: the API server and containerd restarts break every other test running at the
// same time, and one run takes about 4 minutes. Run it on its own with a run count:
//
//   KTCTL_FAULT_RUNS=3 bun test --timeout 0 test/chaos/faults.test.ts
//   KTCTL_FAULTS=laptop-link-drop-20s,shadow-pod-delete KTCTL_FAULT_MODES=exchange,mesh bun test ...
//
// Needs the test cluster (test/cluster/up) and root (network namespaces, nsenter, the daemons).
// Cluster-wide faults are announced in /tmp/ktctl-faults.log.

import "./faults-laptop.ts";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "bun:test";
import {
  brokeBetween,
  clusterHealthy,
  clusterIpOf,
  containerIdsOf,
  containersGone,
  deployFaultWorkspace,
  cleanFromElsewhere,
  cutLaptopOff,
  healMs,
  lastOf,
  laptopProber,
  laptopDown,
  laptopUp,
  logFault,
  podPid,
  podProber,
  primeLaptopFirewall,
  restartDaemon,
  sessionIdIn,
  shadowPodsOf,
  startFaultSession,
  type ProbeTarget,
  type Prober,
} from "./faults-harness.ts";
import { kubectl, kubectlJson, requireCluster, type RunningKtctl } from "../e2e/harness.ts";
import { startLaptopServer } from "../e2e/exchange-harness.ts";
import { clusterState, differences, laptopQuiet, laptopState, removeHome, scratchHome, tidyWorkspace } from "../e2e/reliability-harness.ts";

const NS = "rel-faults";
const PORT = 28950;
const FORWARD_PORT = 28951;
const RUNS = Number(process.env.KTCTL_FAULT_RUNS ?? "1");
const ONLY_FAULTS = process.env.KTCTL_FAULTS?.split(",").filter(Boolean);
const ONLY_MODES = process.env.KTCTL_FAULT_MODES?.split(",").filter(Boolean);
const HEAL_LIMIT_MS = 10_000;
/** How long to watch for a heal before calling it failed (the table shows the real time). */
const HEAL_WATCH_MS = 45_000;
const RESTORE_LIMIT_MS = 10_000;

interface Target extends ProbeTarget {
  side: "laptop" | "pod";
}

interface FaultMode {
  name: string;
  args: string[];
  ready: RegExp;
  /** What to probe, given the service addresses of the namespace. */
  targets(ip: (service: string) => string): Target[];
}

const ALL_MODES: FaultMode[] = [
  {
    name: "connect",
    args: ["connect", "--mode", "system"],
    ready: /Connected to namespace \S+ in [\d.]+s/,
    targets: () => [{ side: "laptop", name: "connect", url: `http://echo.${NS}/`, expect: "^echo-" }],
  },
  {
    name: "exchange",
    args: ["exchange", "echo-x", "--expose", `${PORT}:80`],
    ready: /exchanged svc\/echo-x in [\d.]+s/,
    targets: (ip) => [{ side: "pod", name: "exchange", url: `http://${ip("echo-x")}/`, expect: "^laptop$" }],
  },
  {
    name: "mesh",
    args: ["mesh", "echo-m", "--expose", `${PORT}:80`, "--versionMark", "rel"],
    ready: /\bMARK \S/,
    targets: (ip) => [
      { side: "pod", name: "mesh-marked", url: `http://${ip("echo-m")}/`, headers: { VERSION: "rel" }, expect: "^laptop$" },
      { side: "pod", name: "mesh-unmarked", url: `http://${ip("echo-m")}/`, expect: "^echo-m-" },
    ],
  },
  {
    name: "preview",
    args: ["preview", "echo-p", "--expose", `${PORT}:80`],
    ready: /preview \S+\/echo-p is up/,
    targets: (ip) => [{ side: "pod", name: "preview", url: `http://${ip("echo-p")}/`, expect: "^laptop$" }],
  },
  {
    name: "forward",
    args: ["forward", "svc/echo", `${FORWARD_PORT}:80`],
    ready: /Forwarding 127\.0\.0\.1:\d+/,
    targets: () => [{ side: "laptop", name: "forward", url: `http://127.0.0.1:${FORWARD_PORT}/`, expect: "^echo-" }],
  },
];
const MODES = ALL_MODES.filter((m) => !ONLY_MODES || ONLY_MODES.includes(m.name));

interface Live {
  mode: FaultMode;
  home: string;
  ktctl: RunningKtctl;
  id: string;
}

interface Fault {
  name: string;
  /** Breaks more than this suite: announced in the fault log, and the cluster must be healthy after. */
  clusterWide: boolean;
  /**
   * The sessions cannot survive it (their Leases were cleaned from elsewhere): each must end by
   * itself with exit code 10 and a message naming the lost lease, the cluster restored by that clean.
   */
  endsSessions?: boolean;
  /** Injects the fault; resolves when it ends (the daemon answers again, the link is back, the pod is gone). */
  inject(sessions: Live[]): Promise<void>;
}

/**
 * Deletes every session's shadow pod. The fault ends when their containers are gone, not when the
 * API says the pods are: a forced delete removes the object at once while the old shadow still runs
 * (and still serves) until the kubelet kills it, which is when the traffic really breaks.
 */
async function deleteShadows(sessions: Live[], force: boolean): Promise<void> {
  const pods = (await Promise.all(sessions.map((s) => shadowPodsOf(NS, s.id)))).flat();
  if (!pods.length) throw new Error("no shadow pod to delete");
  const containers = (await Promise.all(pods.map((pod) => containerIdsOf(NS, pod)))).flat();
  const flags = force ? ["--grace-period=0", "--force"] : [];
  const r = await kubectl(["-n", NS, "delete", "pod", ...pods, ...flags], { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`kubectl delete pod: ${r.stderr.trim()}`);
  await containersGone(containers, 60_000);
}

/** Longer than a Lease lives unrenewed (30 s, plus 2 s for the server's 1 s timestamps), by a margin. */
const PAST_THE_LEASE_SECONDS = 42;
const CLEAN_AT_SECONDS = 37;

async function cutOffAndCleaned(): Promise<void> {
  const home = scratchHome("faults-clean");
  const started = Date.now();
  try {
    await cutLaptopOff(PAST_THE_LEASE_SECONDS, "link-down", async () => {
      await Bun.sleep(CLEAN_AT_SECONDS * 1000 - (Date.now() - started)); // the Leases must have expired first
      console.log(lastLines(await cleanFromElsewhere(NS, home), 12));
    });
  } finally {
    removeHome(home);
  }
}

const ALL_FAULTS: Fault[] = [
  { name: "api-server-restart", clusterWide: true, inject: () => restartDaemon("kube-apiserver") },
  { name: "laptop-link-down-20s", clusterWide: false, inject: () => cutLaptopOff(20, "link-down") },
  { name: "laptop-silent-drop-20s", clusterWide: false, inject: () => cutLaptopOff(20, "silent-drop") },
  { name: "shadow-pod-delete", clusterWide: false, inject: (s) => deleteShadows(s, false) },
  { name: "shadow-pod-delete-force", clusterWide: false, inject: (s) => deleteShadows(s, true) },
  { name: "containerd-restart", clusterWide: true, inject: () => restartDaemon("containerd") },
  { name: "laptop-cut-off-42s-cleaned", clusterWide: false, endsSessions: true, inject: cutOffAndCleaned },
];
const FAULTS = ALL_FAULTS.filter((f) => !ONLY_FAULTS || ONLY_FAULTS.includes(f.name));

interface Outcome {
  run: number;
  fault: string;
  mode: string;
  /** The traffic failed at some point during the fault. */
  broke: boolean;
  /** ms from the fault's end to the first success; undefined when it never came back. */
  healMs?: number;
  /**
   * Set when the session ended by itself: its last words, exit code, and whether its objects were
   * gone within 10 s (and, for connect, the laptop as before).
   */
  ended?: { message: string; code: number; cleaned: boolean; afterMs: number };
}
const outcomes: Outcome[] = [];
const LOST_LEASE_MESSAGE = /session \S+ ended: the session's lease was (deleted|taken over)/;
function passed(o: Outcome): boolean {
  if (ALL_FAULTS.find((f) => f.name === o.fault)?.endsSessions) return Boolean(o.ended?.cleaned && o.ended.code === 10 && LOST_LEASE_MESSAGE.test(o.ended.message));
  if (o.ended) return o.ended.cleaned && o.ended.message !== "";
  return o.healMs !== undefined && o.healMs <= HEAL_LIMIT_MS;
}

let laptopServer: { stop(): Promise<void> } | undefined;
let clusterBefore: string;
let laptopBefore: Record<string, string>;
const running = new Set<Live>();

/** KTCTL_FAULT_OUTPUT=DIR keeps every session's whole output there (with --debug), one file per session. */
const OUTPUT_DIR = process.env.KTCTL_FAULT_OUTPUT;
if (OUTPUT_DIR) mkdirSync(OUTPUT_DIR, { recursive: true });

async function startSession(mode: FaultMode): Promise<Live> {
  const home = scratchHome(`faults-${mode.name}`);
  const ktctl = startFaultSession(NS, OUTPUT_DIR ? ["--debug", ...mode.args] : mode.args, home);
  const live: Live = { mode, home, ktctl, id: "" };
  running.add(live);
  await ktctl.waitForOutput(mode.ready, 120_000);
  const id = sessionIdIn(home);
  if (!id) throw new Error(`${mode.name}: no session journal in ${home}`);
  live.id = id;
  return live;
}

/**
 * Starts a mode again after its session ended. Right after a containerd restart runc may still fail
 * to start a container once ("can't get final child's PID from pipe"): that is the node's, so one
 * more try is allowed, and said.
 */
async function restartSession(mode: FaultMode): Promise<Live> {
  try {
    return await startSession(mode);
  } catch (error) {
    console.log(`${mode.name}: could not start again (${lastLines((error as Error).message, 2)}); one more try`);
    for (const live of running) if (live.mode === mode && live.ktctl.proc.exitCode !== null) running.delete(live);
    return startSession(mode);
  }
}

function keepOutput(live: Live): void {
  if (OUTPUT_DIR) writeFileSync(join(OUTPUT_DIR, `${live.mode.name}-${live.id || "unstarted"}.log`), live.ktctl.output());
}

async function stopSession(live: Live): Promise<number> {
  const code = await live.ktctl.stop("SIGINT");
  keepOutput(live);
  running.delete(live);
  removeHome(live.home);
  return code;
}

/** The probes of every session: the laptop's in the fault laptop, the cluster's in the prober pod. */
async function startProbes(): Promise<{ all: Prober[]; records(): ReturnType<typeof mergedRecords> }> {
  const ips = new Map<string, string>();
  for (const service of ["echo-x", "echo-m", "echo-p"]) {
    const ip = await clusterIpOf(NS, service).catch(() => "");
    if (ip) ips.set(service, ip);
  }
  const targets = MODES.flatMap((m) =>
    m.targets((service) => {
      const ip = ips.get(service);
      if (!ip) throw new Error(`service ${service} has no address`);
      return ip;
    }),
  );
  const strip = ({ side: _, ...t }: Target): ProbeTarget => t;
  const all: Prober[] = [];
  const onLaptop = targets.filter((t) => t.side === "laptop").map(strip);
  const inPod = targets.filter((t) => t.side === "pod").map(strip);
  if (onLaptop.length) all.push(laptopProber(onLaptop));
  if (inPod.length) all.push(podProber(await podPid(NS, "prober"), inPod));
  return { all, records: () => mergedRecords(all) };
}
const mergedRecords = (probers: Prober[]) => probers.flatMap((p) => p.records);

const targetsOf = (mode: FaultMode): string[] => mode.targets(() => "x").map((t) => t.name);

/** Waits until every target's latest answer is right (the sessions are all working). */
async function allFlowing(records: () => ReturnType<typeof mergedRecords>, timeoutMs: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  const names = MODES.flatMap(targetsOf);
  // Answers from before this call may predate a restart: only newer ones count (on a loaded machine
  // one probe round can take longer than this loop's step).
  const since = Date.now();
  for (;;) {
    await Bun.sleep(300);
    const failing = names.filter((n) => !records().some((r) => r.target === n && r.start >= since && r.ok) || !lastOf(records(), n)?.ok);
    if (!failing.length || Date.now() > deadline) return failing.map((n) => `${n}: ${lastOf(records(), n)?.answer ?? "no answer"}`);
  }
}

/** The session's own objects still in the cluster (not already being deleted). */
async function leftOf(id: string): Promise<string[]> {
  const list = await kubectlJson<{ items: any[] }>(["-n", NS, "get", "pods,services,deployments,configmaps,leases", "-l", `ktctl.io/session=${id}`]);
  return list.items.filter((o) => !o.metadata.deletionTimestamp).map((o) => `${o.kind}/${o.metadata.name}`);
}

async function goneWithin(id: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    const left = await leftOf(id).catch(() => ["(API not answering)"]);
    if (!left.length) return true;
    if (Date.now() > deadline) return false;
    await Bun.sleep(200);
  }
}

const lastLines = (text: string, n = 3) => text.trim().split("\n").slice(-n).join(" | ");

async function oneRun(run: number): Promise<void> {
  await laptopQuiet();
  const sessions = await Promise.all(MODES.map(startSession));
  let probes = await startProbes();
  try {
    const notFlowing = await allFlowing(probes.records, 30_000);
    if (notFlowing.length) throw new Error(`run ${run}: traffic not flowing before any fault: ${notFlowing.join("; ")}`);

    for (const fault of FAULTS) {
      const faultStart = Date.now();
      if (fault.clusterWide) logFault("START", fault.name);
      try {
        await fault.inject(sessions);
      } finally {
        if (fault.clusterWide) logFault("END", fault.name);
      }
      const faultEnd = Date.now();
      console.log(`run ${run}: ${fault.name} lasted ${((faultEnd - faultStart) / 1000).toFixed(1)} s`);

      // Watch every mode until it heals, its session ends, or the watch runs out.
      await Promise.all(
        sessions.map(async (live, index) => {
          const names = targetsOf(live.mode);
          const deadline = faultEnd + HEAL_WATCH_MS;
          let heal: number | undefined;
          while (Date.now() < deadline && live.ktctl.proc.exitCode === null) {
            const times = names.map((n) => healMs(probes.records(), n, faultEnd));
            if (times.every((t) => t !== undefined)) {
              heal = Math.max(...(times as number[]));
              break;
            }
            await Bun.sleep(100);
          }
          const outcome: Outcome = {
            run,
            fault: fault.name,
            mode: live.mode.name,
            broke: names.some((n) => brokeBetween(probes.records(), n, faultStart, faultEnd + (heal ?? HEAL_WATCH_MS))),
            healMs: heal,
          };
          if (fault.endsSessions) await Promise.race([live.ktctl.proc.exited, Bun.sleep(Math.max(0, deadline - Date.now()))]);
          if (live.ktctl.proc.exitCode !== null) {
            const afterMs = Date.now() - faultEnd;
            const cleaned = await goneWithin(live.id, RESTORE_LIMIT_MS);
            // Only connect changes the laptop: once it ended, the laptop must be as before.
            const laptopLeft = live.mode.name === "connect" ? differences(await laptopState(), laptopBefore) : [];
            // Its one-line error (with --debug a stack follows it), or else its last words.
            const output = live.ktctl.output();
            const message = output.split("\n").find((l) => l.startsWith("ktctl: ")) ?? lastLines(output);
            outcome.ended = { message, code: live.ktctl.proc.exitCode, cleaned: cleaned && !laptopLeft.length, afterMs };
            outcome.healMs = undefined;
            keepOutput(live);
            running.delete(live);
            removeHome(live.home);
            // The next fault needs the mode up again.
            sessions[index] = await restartSession(live.mode);
          }
          outcomes.push(outcome);
          const said = outcome.ended
            ? `session ENDED ${(outcome.ended.afterMs / 1000).toFixed(1)} s after, exit ${outcome.ended.code} (${outcome.ended.cleaned ? "cleaned" : "NOT cleaned"}): ${outcome.ended.message}`
            : outcome.healMs === undefined
              ? `NOT healed after ${HEAL_WATCH_MS / 1000} s: ${names.map((n) => lastOf(probes.records(), n)?.answer).join("; ")}\n${lastLines(live.ktctl.output(), 8)}`
              : `healed in ${(outcome.healMs / 1000).toFixed(1)} s${outcome.broke ? "" : " (never broke)"}`;
          console.log(`run ${run}: ${fault.name} / ${live.mode.name}: ${said}`);
        }),
      );

      if (fault.clusterWide) await clusterHealthy(["kube-system", "demo", NS]);
      // A restarted session (or a re-made preview service) needs fresh probes.
      if (outcomes.some((o) => o.run === run && o.fault === fault.name && o.ended)) {
        await Promise.all(probes.all.map((p) => p.stop()));
        probes = await startProbes();
      }
      const stillBroken = await allFlowing(probes.records, 30_000);
      if (stillBroken.length) throw new Error(`run ${run}: after ${fault.name}, traffic does not flow: ${stillBroken.join("; ")}`);
    }
  } finally {
    await Promise.all(probes.all.map((p) => p.stop()));
    // Ctrl-C: each session must undo everything it did.
    const codes = await Promise.all(sessions.map(async (s) => [s.mode.name, s.id, await stopSession(s), s.ktctl.output()] as const));
    for (const [name, id, code, output] of codes) {
      // 130: ktctl ends on SIGINT with the shell's code for it, after restoring.
      if (code !== 0 && code !== 130) console.log(`run ${run}: ${name} exited ${code} on Ctrl-C:\n${lastLines(output, 10)}`);
      expect(await goneWithin(id, RESTORE_LIMIT_MS)).toBe(true);
    }
  }
  expect(await clusterState(NS)).toBe(clusterBefore);
  expect(differences(await laptopState(), laptopBefore)).toEqual([]);
}

beforeAll(async () => {
  await requireCluster();
  await laptopUp();
  await primeLaptopFirewall();
  await deployFaultWorkspace(NS);
  await tidyWorkspace(NS);
  clusterBefore = await clusterState(NS);
  laptopBefore = await laptopState();
  laptopServer = await startLaptopServer(PORT);
}, 300_000);

afterAll(async () => {
  for (const live of running) await stopSession(live).catch(() => undefined);
  await laptopServer?.stop();
  await laptopDown();
  const rows: string[] = [];
  for (const fault of FAULTS) {
    for (const mode of MODES) {
      const mine = outcomes.filter((o) => o.fault === fault.name && o.mode === mode.name);
      if (!mine.length) continue;
      const heals = mine.filter((o) => o.healMs !== undefined).map((o) => o.healMs!);
      const ended = mine.filter((o) => o.ended).length;
      const worst = heals.length ? `${(Math.max(...heals) / 1000).toFixed(1)} s` : "-";
      rows.push(`| ${fault.name} | ${mode.name} | ${mine.length} | ${mine.filter((o) => o.healMs !== undefined && o.healMs <= HEAL_LIMIT_MS).length} | ${ended} | ${worst} |`);
    }
  }
  console.log(["| fault | mode | runs | healed within 10 s | session ended | worst heal time |", "|---|---|---|---|---|---|", ...rows].join("\n"));
});

for (let run = 1; run <= RUNS; run++) {
  test(`run ${run}: every mode heals within 10 s of each fault, or ends cleanly; Ctrl-C restores all`, async () => {
    await oneRun(run);
    const failed = outcomes.filter((o) => o.run === run && !passed(o));
    expect(failed).toEqual([]);
  }, 900_000);
}
