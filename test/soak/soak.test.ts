// Soak: a connect and an exchange side by side under steady load, their shadow pods deleted on a
// schedule. Passes when no request fails outside a heal window (from a deletion to the first
// success once the old pod stopped serving), every heal takes at most 10 s, and at the end each
// ktctl's resident memory (its floor under load) has grown by at most 10% and its open descriptors
// (with no client connected) are within 10% of what they were after warm-up (the first minute,
// with one deletion early in it). A failure of the exchange's load that a control load in the same
// pod (to a service ktctl has no part in) shares is the cluster network's: reported, not held
// against the session.
//
//   KTCTL_SOAK_MINUTES=15 bun test test/soak                 the full run (deletions every 3 min)
//   bun test test/soak                                       2 min, two deletions per session (~2.5 min in all)
//
// Load (test/soak/load-generator.ts, open loop, half the requests on kept-alive connections, half
// on a new connection each): 50 requests/s from the laptop to a service by name through
// `ktctl connect --mode system`, and 50 requests/s from a pod in the cluster to the exchanged
// service, which the laptop's server answers. The sessions run on a laptop network namespace of
// the soak's own, so the resolver and routes they hold for minutes keep no other test waiting.
// Writes a JSON report (KTCTL_SOAK_REPORT, default in the temp directory) and each load's
// per-request records next to it. Needs the test cluster and root.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SHADOW_BINARY_PATH } from "../../build/shadow.ts";
import { DEFAULT_SHADOW_IMAGE } from "../../core/protocol/version.ts";
import { KTCTL, REPO, eventually, kubectl, kubectlJson, kubectlOk, requireCluster, run, runInPod, startWatched, trackedConnections, type RunningKtctl } from "../e2e/harness.ts";
import { KUBECONFIG, deployWorkspace, removeHome, scratchHome, tidyWorkspace } from "../e2e/reliability-harness.ts";
import { change, failuresOutside, healWindows, medianSample, percentile, splitByControl, type Deletion, type HealWindow, type RequestRecord, type Sample } from "./soak-analysis.ts";
import { SOAK_LAPTOP, childrenOf, executableOf, inSoakLaptop, laptopDown, laptopUp, podProcess, processStats } from "./soak-harness.ts";

const NS = "rel-soak";
/** The service connect reaches by name, and the one exchange takes over (same echo pods). */
const CONNECT_SERVICE = "echo";
const EXCHANGE_SERVICE = "echo-ex";
const LOCAL_PORT = 28950;
const RATE = 50;
const MINUTES = Number(process.env.KTCTL_SOAK_MINUTES ?? "2");
const DURATION_MS = MINUTES * 60_000;
/** Every 3 minutes; a run shorter than two such periods deletes once, halfway. */
const DELETE_EVERY_MS = Math.min(180_000, DURATION_MS / 2);
/** Warm-up: the first minute, or half the time before the first deletion when that is sooner. */
const WARM_UP_MS = Math.min(60_000, DELETE_EVERY_MS / 2);
/** When the warm-up's deletion comes: once the loads run, well before the warm-up's floor is read. */
const WARM_UP_HEAL_AT_MS = Math.min(10_000, WARM_UP_MS / 6);
/** A deletion leaves this much of the run after it, so its heal is seen before the end's readings. */
const LAST_DELETION_MARGIN_MS = 30_000;
const HEAL_LIMIT_MS = 10_000;
const GROWTH_LIMIT = 0.1;
const SAMPLE_EVERY_MS = 2_000;
/** A quiet reading: the descriptors unchanged this long, polled this often, given up after the limit. */
const QUIET_MS = 3_000;
const QUIET_POLL_MS = 500;
const QUIET_LIMIT_MS = 30_000;
/**
 * RSS is compared by its floor under load: the lowest reading over the second half of the warm-up
 * and over the run's last minutes. Bun collects no garbage while idle, so an idle reading lands
 * anywhere on the heap's saw-tooth (one 2-min run read +17% idle where the floors differ by 5%);
 * the floor is what each collection brings the heap back to, which is where a leak shows. Its
 * anonymous part (RssAnon: heap, stacks) is reported beside it: the rest is the executable's pages,
 * which ktctl hands back to the kernel once idle (core/protocol/start-pages.ts) and which fault in
 * again as code paths run (a heal's, say). The anonymous floor alone swings more (one 15-min run:
 * -14.7% where the whole RSS floor moved +0.6%), so the bound stays on the RSS the issue names.
 * The bound is on growth: a process under load is never idle, so the warm-up's floor still holds
 * the start pages, which go at the first idle moment (the reading after the warm-up); a floor that
 * falls by more than 10% then (one 15-min run: -12.7%, its anonymous part -11.7%) is no leak.
 */
const END_FLOOR_SPAN_MS = 180_000;
/**
 * Bounds the set-up and the test alike: Bun (1.4) lets a beforeAll hook's timeout run on into the
 * test that follows, so a hook bounded tighter than the run would kill the run part-way.
 */
const RUN_LIMIT_MS = DURATION_MS + 15 * 60_000;
const REPORT = process.env.KTCTL_SOAK_REPORT ?? join(tmpdir(), `ktctl-soak-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);

if (!(MINUTES > 0)) throw new Error(`KTCTL_SOAK_MINUTES must be a positive number of minutes, not ${process.env.KTCTL_SOAK_MINUTES}`);

const extraServiceYaml = `
apiVersion: v1
kind: Service
metadata: { name: ${EXCHANGE_SERVICE}, namespace: ${NS}, labels: { app: echo } }
spec:
  selector: { app: echo }
  ports:
  - { name: http, port: 80, targetPort: http }
`;

/** The load generator run by the shadow image's Bun binary (the one Bun image the cluster holds). */
const loadContainer = (name: string, url: string, expect: string, script: string, seconds: number) => ({
  name,
  image: DEFAULT_SHADOW_IMAGE,
  imagePullPolicy: "IfNotPresent",
  command: [SHADOW_BINARY_PATH],
  args: ["-e", script],
  env: [
    { name: "BUN_BE_BUN", value: "1" },
    { name: "HOME", value: "/tmp" },
    { name: "LOAD_URL", value: url },
    { name: "LOAD_RATE", value: String(RATE) },
    { name: "LOAD_SECONDS", value: String(seconds) },
    { name: "LOAD_EXPECT", value: expect },
  ],
});

/**
 * The in-cluster load: the exchanged service, and beside it in the same pod (same network, same
 * moments) a control load to the echo service, which ktctl has no part in: a failure both see at
 * once is the cluster network's.
 */
const loadPodSpec = (name: string, script: string, seconds: number) => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name, namespace: NS, labels: { app: "soak-load" } },
  spec: {
    restartPolicy: "Never",
    terminationGracePeriodSeconds: 1,
    enableServiceLinks: false,
    containers: [
      loadContainer("load", `http://${EXCHANGE_SERVICE}.${NS}/`, '"pod":"laptop"', script, seconds),
      loadContainer("control", `http://${CONNECT_SERVICE}.${NS}/`, '"pod":"echo-', script, seconds),
    ],
  },
});

interface Session {
  name: "connect" | "exchange";
  ktctl: RunningKtctl;
  id: string;
  samples: Sample[];
  shadowSamples: (Sample & { pod: string })[];
  deletions: Deletion[];
  requests: RequestRecord[];
  shadowLogs: { pod: string; log: string }[];
}

let home: string;
let laptopServer: ReturnType<typeof Bun.spawn> | undefined;
let laptopLoad: ReturnType<typeof Bun.spawn> | undefined;
const sessions: Session[] = [];
/** Pod IPs of the shadows deleted so far, and the node's connection-tracking entries still aimed at them. */
const deletedShadowIps = new Set<string>();
const staleTracking: { at: number; synSent: number; all: number }[] = [];
const LOAD_POD = "soak-load";

const ktctlArgv = (args: string[]) => inSoakLaptop(SOAK_LAPTOP, [...KTCTL, "--kubeconfig", KUBECONFIG, "-n", NS, ...args]);

async function startSession(name: Session["name"], args: string[], ready: RegExp): Promise<Session> {
  const ktctl = startWatched(ktctlArgv(args), { KTCTL_HOME: home, NO_COLOR: "1" });
  const line = await ktctl.waitForOutput(ready, 120_000);
  const id = /session ([a-z0-9]+)/.exec(line)?.[1];
  if (!id) throw new Error(`${name}: no session id in "${line}"`);
  return { name, ktctl, id, samples: [], shadowSamples: [], deletions: [], requests: [], shadowLogs: [] };
}

/** The session's shadow pods that are not being deleted. */
async function liveShadows(session: Session): Promise<{ name: string; uid: string; ip: string }[]> {
  const list = await kubectlJson<{ items: any[] }>(["-n", NS, "get", "pods", "-l", `ktctl.io/session=${session.id}`]);
  return list.items.filter((p) => !p.metadata.deletionTimestamp).map((p) => ({ name: p.metadata.name, uid: p.metadata.uid, ip: p.status?.podIP ?? "" }));
}

function sampleProcesses(at: number): void {
  for (const s of sessions) {
    const own = processStats(s.ktctl.proc.pid);
    if (own) s.samples.push({ at, rssKiB: own.rssKiB, anonKiB: own.anonKiB, fds: own.fds });
  }
}

async function sampleShadows(at: number): Promise<void> {
  for (const s of sessions) {
    for (const pod of await liveShadows(s).catch(() => [])) {
      const pid = podProcess(pod.uid, "ktctl-shadow");
      const stats = pid === undefined ? undefined : processStats(pid);
      if (stats) s.shadowSamples.push({ at, pod: pod.name, rssKiB: stats.rssKiB, fds: stats.fds });
    }
  }
}

/**
 * How many of the node's connection-tracking entries for the exchanged service's address still
 * send to a deleted shadow (and how many of those never got past the SYN): a new connection whose
 * address and port match such an entry follows it to the dead address instead of a live endpoint.
 */
async function sampleStaleTracking(serviceIp: string, at: number): Promise<void> {
  const tracked = await trackedConnections(serviceIp);
  if (!("entries" in tracked)) return;
  const stale = tracked.entries.filter((entry) => deletedShadowIps.has(entry.replySource));
  const all = stale.length;
  const synSent = stale.filter((entry) => entry.state === "SYN_SENT").length;
  staleTracking.push({ at, synSent, all });
}

/** Deletes the session's shadow and waits until the pod is gone from the API, noting when it stopped serving. */
async function deleteShadow(session: Session): Promise<void> {
  const [shadow] = await liveShadows(session);
  if (!shadow) throw new Error(`${session.name}: no live shadow to delete`);
  // Its log ends here: it tells how the previous heal went on the shadow's side.
  session.shadowLogs.push({ pod: shadow.name, log: (await kubectl(["-n", NS, "logs", shadow.name])).stdout });
  const deletedAt = Date.now();
  await kubectlOk(["-n", NS, "delete", "pod", shadow.name, "--wait=false"]);
  const waitFor = (condition: string) =>
    kubectl(["-n", NS, "wait", `--for=${condition}`, `pod/${shadow.name}`, "--timeout=60s"], { timeoutMs: 70_000 }).then(() => Date.now());
  const gone = waitFor("delete");
  const stoppedAt = await Promise.race([waitFor("condition=Ready=false"), gone]);
  session.deletions.push({ pod: shadow.name, deletedAt, stoppedAt, goneAt: await gone });
  deletedShadowIps.add(shadow.ip);
}

/** Parses the load generator's lines into records (the closing {"done": n} line is not one). */
function parseRecords(text: string): RequestRecord[] {
  return text
    .split("\n")
    .filter((l) => l.startsWith('{"t":'))
    .map((l) => JSON.parse(l) as RequestRecord);
}

beforeAll(async () => {
  await requireCluster();
  await laptopUp(SOAK_LAPTOP);
  await deployWorkspace(NS);
  await kubectlOk(["apply", "-f", "-"], { stdin: extraServiceYaml });
  await tidyWorkspace(NS);
  await kubectl(["-n", NS, "delete", "pod", "-l", "app=soak-load", "--ignore-not-found", "--timeout=60s"]);
  home = scratchHome("soak");
  const serverScript = `Bun.serve({ port: ${LOCAL_PORT}, hostname: "127.0.0.1", fetch: () => Response.json({ pod: "laptop" }) });`;
  laptopServer = Bun.spawn(inSoakLaptop(SOAK_LAPTOP, ["bun", "-e", serverScript]), { stdout: "ignore", stderr: "inherit" });
  sessions.push(await startSession("connect", ["connect", "--mode", "system"], /Connected to namespace \S+ in [\d.]+s \(session [a-z0-9]+/));
  sessions.push(await startSession("exchange", ["exchange", EXCHANGE_SERVICE, "--expose", `${LOCAL_PORT}:80`], /exchanged svc\/\S+ in [\d.]+s \(selector mode, session [a-z0-9]+/));
  // Both paths answer before the load starts.
  await eventually(async () => {
    const r = await run(inSoakLaptop(SOAK_LAPTOP, ["curl", "-sS", "-m", "3", `http://${CONNECT_SERVICE}.${NS}/`]));
    if (!r.stdout.includes('"pod":"echo-')) throw new Error(`connect path: ${r.code} ${r.stdout}${r.stderr}`);
  }, 30_000, 500);
  await eventually(async () => {
    const r = await runInPod(["kecho", "client", "http", `http://${EXCHANGE_SERVICE}.${NS}/`], "toolbox", "demo", { timeoutMs: 10_000 });
    if (!r.stdout.includes('"pod":"laptop"')) throw new Error(`exchange path: ${r.code} ${r.stdout}${r.stderr}`);
  }, 30_000, 500);
}, RUN_LIMIT_MS);

afterAll(async () => {
  laptopLoad?.kill("SIGTERM");
  await kubectl(["-n", NS, "delete", "pod", "-l", "app=soak-load", "--ignore-not-found", "--wait=false"]);
  for (const s of sessions) await s.ktctl.stop("SIGINT");
  laptopServer?.kill("SIGTERM");
  await laptopServer?.exited;
  await laptopDown(SOAK_LAPTOP);
  if (home) removeHome(home);
});

/** Both loads, run side by side for `seconds`; resolves with their records once both have finished. */
async function runLoads(seconds: number, phase: string): Promise<{ connect: RequestRecord[]; exchange: RequestRecord[]; control: RequestRecord[] }> {
  const script = await Bun.file(join(REPO, "test/soak/load-generator.ts")).text();
  const pod = `${LOAD_POD}-${phase}`;
  // The cluster's load first (its pod takes a moment to start), then the laptop's.
  await kubectl(["-n", NS, "delete", "pod", pod, "--ignore-not-found", "--timeout=60s"]);
  await kubectlOk(["apply", "-f", "-"], { stdin: JSON.stringify(loadPodSpec(pod, script, seconds)) });
  await kubectlOk(["-n", NS, "wait", `pod/${pod}`, "--for=condition=Ready", "--timeout=60s"], { timeoutMs: 70_000 });
  const load = Bun.spawn(inSoakLaptop(SOAK_LAPTOP, ["bun", join(REPO, "test/soak/load-generator.ts")]), {
    env: { ...process.env, LOAD_URL: `http://${CONNECT_SERVICE}.${NS}/`, LOAD_RATE: String(RATE), LOAD_SECONDS: String(seconds), LOAD_EXPECT: '"pod":"echo-' },
    stdout: "pipe",
    stderr: "pipe",
  });
  laptopLoad = load;
  const lines = new Response(load.stdout).text();
  const errors = new Response(load.stderr).text();
  const code = await load.exited;
  if (code !== 0) throw new Error(`the laptop's load generator exited ${code}: ${await errors}`);
  await kubectlOk(["-n", NS, "wait", `pod/${pod}`, "--for=jsonpath={.status.phase}=Succeeded", `--timeout=${seconds + 120}s`], { timeoutMs: (seconds + 130) * 1000 });
  const exchangeLines = await kubectlOk(["-n", NS, "logs", pod, "-c", "load"], { timeoutMs: 120_000 });
  const controlLines = await kubectlOk(["-n", NS, "logs", pod, "-c", "control"], { timeoutMs: 120_000 });
  await kubectl(["-n", NS, "delete", "pod", pod, "--wait=false"]);
  return { connect: parseRecords(await lines), exchange: parseRecords(exchangeLines), control: parseRecords(controlLines) };
}

/**
 * Each ktctl's memory and descriptors once no client is connected: the load has stopped and the
 * descriptor count has not moved for QUIET_MS (what remains is ktctl's own: a leak shows here,
 * not a client's keep-alive pool). The median over that quiet span.
 */
async function quietReading(): Promise<Map<string, IdleReading>> {
  const deadline = Date.now() + QUIET_LIMIT_MS;
  const readings = new Map<string, Sample[]>(sessions.map((s) => [s.name, []]));
  for (;;) {
    const at = Date.now();
    for (const s of sessions) {
      const stats = processStats(s.ktctl.proc.pid);
      if (!stats) throw new Error(`${s.name}: ktctl exited:\n${s.ktctl.output()}`);
      readings.get(s.name)!.push({ at, rssKiB: stats.rssKiB, fds: stats.fds });
    }
    const steady = [...readings.values()].every((list) => {
      const recent = list.filter((x) => x.at >= at - QUIET_MS);
      return list[0]!.at <= at - QUIET_MS && recent.every((x) => x.fds === recent[0]!.fds);
    });
    if (steady || Date.now() > deadline) {
      return new Map(
        sessions.map((s) => {
          const list = readings.get(s.name)!;
          const m = medianSample(list, at - QUIET_MS, at);
          const watchdogs = childrenOf(s.ktctl.proc.pid).map(processStats).filter((w) => w !== undefined);
          return [s.name, { at, steady, rssKiB: m.rssKiB, fds: m.fds, watchdog: { rssKiB: watchdogs.reduce((n, w) => n + w.rssKiB, 0), fds: watchdogs.reduce((n, w) => n + w.fds, 0) } }];
        }),
      );
    }
    await Bun.sleep(QUIET_POLL_MS);
  }
}

interface IdleReading {
  at: number;
  /** False when the descriptors never stood still within QUIET_LIMIT_MS. */
  steady: boolean;
  rssKiB: number;
  fds: number;
  watchdog: { rssKiB: number; fds: number };
}

test(`soak: connect and exchange for ${MINUTES} min at ${RATE} req/s each, shadows deleted every ${DELETE_EVERY_MS / 1000} s`, async () => {
  const sampler = setInterval(() => sampleProcesses(Date.now()), SAMPLE_EVERY_MS);
  const shadowSampler = setInterval(() => void sampleShadows(Date.now()), 5 * SAMPLE_EVERY_MS);
  const exchangeServiceIp = (await kubectlOk(["-n", NS, "get", "service", EXCHANGE_SERVICE, "-o", "jsonpath={.spec.clusterIP}"])).trim();
  const trackingSampler = setInterval(() => void sampleStaleTracking(exchangeServiceIp, Date.now()), SAMPLE_EVERY_MS);
  const started = Date.now();
  let warm: Map<string, IdleReading>;
  let end: Map<string, IdleReading>;
  let control: RequestRecord[] = [];
  const phases = { warmUpEnded: 0, soakStarted: 0, soakEnded: 0 };
  try {
    // Warm-up: the first part of the run, then a reading with no client connected. Both shadows
    // are deleted once early in it, so the baseline has been through a heal too: the first heal
    // runs code and makes buffers for the first time (about +8 MiB once, measured), which a
    // baseline taken before any heal would count as growth in a short run.
    const warmUpLoads = runLoads(WARM_UP_MS / 1000, "warmup");
    await Bun.sleep(WARM_UP_HEAL_AT_MS);
    console.log(`soak: ${Math.round((Date.now() - started) / 1000)} s, deleting both shadows (warm-up)`);
    await Promise.all(sessions.map(deleteShadow));
    const warmUp = await warmUpLoads;
    phases.warmUpEnded = Date.now();
    warm = await quietReading();
    // The rest of the run, deleting both shadows on the schedule (counted from the run's start).
    const soakStarted = Date.now();
    const soak = runLoads((DURATION_MS - WARM_UP_MS) / 1000, "soak");
    const deleting = (async () => {
      for (let at = DELETE_EVERY_MS; at <= DURATION_MS - LAST_DELETION_MARGIN_MS; at += DELETE_EVERY_MS) {
        await Bun.sleep(soakStarted - WARM_UP_MS + at - Date.now());
        console.log(`soak: ${Math.round((Date.now() - started) / 1000)} s, deleting both shadows`);
        await Promise.all(sessions.map(deleteShadow));
      }
    })();
    const [records] = await Promise.all([soak, deleting]);
    phases.soakStarted = soakStarted;
    phases.soakEnded = Date.now();
    end = await quietReading();
    for (const s of sessions) s.requests = [...warmUp[s.name], ...records[s.name]];
    control = [...warmUp.control, ...records.control];
  } finally {
    clearInterval(sampler);
    clearInterval(shadowSampler);
    clearInterval(trackingSampler);
  }
  const ended = Date.now();

  const report = await summarize(started, ended, warm, end, control, phases);
  writeFileSync(REPORT, JSON.stringify(report, null, 2));
  for (const s of sessions) writeFileSync(REPORT.replace(/\.json$/, `.${s.name}-requests.ndjson`), s.requests.map((r) => JSON.stringify(r)).join("\n"));
  printTable(report);
  console.log(`soak: report in ${REPORT}`);

  const seconds = DURATION_MS / 1000;
  for (const s of report.sessions) {
    expect({ session: s.name, requestsShort: s.requests < 0.95 * RATE * seconds }).toEqual({ session: s.name, requestsShort: false });
    expect({ session: s.name, failedOutside: s.failedOutside }).toEqual({ session: s.name, failedOutside: [] });
    expect({ session: s.name, slowHeals: s.heals.filter((h) => !(h.healMs <= HEAL_LIMIT_MS)) }).toEqual({ session: s.name, slowHeals: [] });
    expect(s.heals.length).toBeGreaterThan(0);
    // Memory may fall (see END_FLOOR_SPAN_MS), not grow; descriptors stay put either way.
    expect({ session: s.name, rssGrowth: s.ktctl.rssChange <= GROWTH_LIMIT }).toEqual({ session: s.name, rssGrowth: true });
    expect({ session: s.name, fdChange: Math.abs(s.ktctl.fdChange) <= GROWTH_LIMIT }).toEqual({ session: s.name, fdChange: true });
  }
}, RUN_LIMIT_MS);

async function summarize(
  started: number,
  ended: number,
  warm: Map<string, IdleReading>,
  end: Map<string, IdleReading>,
  control: RequestRecord[],
  phases: { warmUpEnded: number; soakStarted: number; soakEnded: number },
) {
  const floor = (samples: Sample[], from: number, to: number, of: (x: Sample) => number = (x) => x.rssKiB) =>
    Math.min(...samples.filter((x) => x.at >= from && x.at <= to).map(of));
  const anon = (x: Sample) => x.anonKiB ?? 0;
  const endSpan = Math.min(END_FLOOR_SPAN_MS, (phases.soakEnded - phases.soakStarted) / 2);
  for (const s of sessions) {
    const [live] = await liveShadows(s).catch(() => []);
    if (live) s.shadowLogs.push({ pod: live.name, log: (await kubectl(["-n", NS, "logs", live.name])).stdout });
  }
  return {
    minutes: MINUTES,
    ratePerSecond: RATE,
    deleteEverySeconds: DELETE_EVERY_MS / 1000,
    warmUpSeconds: WARM_UP_MS / 1000,
    startedAt: new Date(started).toISOString(),
    endedAt: new Date(ended).toISOString(),
    control: { url: `http://${CONNECT_SERVICE}.${NS}/`, requests: control.length, failed: control.filter((c) => !c.ok) },
    staleTracking: { maxSynSent: Math.max(0, ...staleTracking.map((x) => x.synSent)), samples: staleTracking },
    sessions: sessions.map((s) => {
      const windows: HealWindow[] = healWindows(s.requests, s.deletions);
      const outside = failuresOutside(s.requests, windows);
      // Only the exchange's load shares a network with the control load.
      const split = s.name === "exchange" ? splitByControl(outside, control) : { cluster: [], unexplained: outside };
      const failed = s.requests.filter((r) => !r.ok);
      const latencies = s.requests.filter((r) => r.ok).map((r) => r.ms);
      const shadowPods = [...new Set(s.shadowSamples.map((x) => x.pod))];
      const a = warm.get(s.name)!;
      const warmFloor = floor(s.samples, phases.warmUpEnded - WARM_UP_MS / 2, phases.warmUpEnded);
      const endFloor = floor(s.samples, phases.soakEnded - endSpan, phases.soakEnded);
      const warmAnonFloor = floor(s.samples, phases.warmUpEnded - WARM_UP_MS / 2, phases.warmUpEnded, anon);
      const endAnonFloor = floor(s.samples, phases.soakEnded - endSpan, phases.soakEnded, anon);
      const b = end.get(s.name)!;
      return {
        name: s.name,
        session: s.id,
        executable: executableOf(s.ktctl.proc.pid),
        requests: s.requests.length,
        keptAlive: s.requests.filter((r) => r.ka).length,
        failed: failed.length,
        failedInside: failed.length - outside.length,
        failedOutside: split.unexplained,
        failedOutsideSharedWithControl: split.cluster,
        // For each failure outside: the stale SYN_SENT entries toward deleted shadows at the sample just before it.
        staleTrackingAtFailuresOutside: split.unexplained.map((f) => [...staleTracking].reverse().find((x) => x.at <= f.t)?.synSent ?? null),
        latencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: percentile(latencies, 100) },
        heals: windows.map((w) => ({ pod: w.pod, stoppedMs: w.stoppedAt - w.deletedAt, goneMs: w.goneAt - w.deletedAt, healMs: w.healMs, failures: w.failures })),
        ktctl: {
          warmUp: { ...a, rssFloorKiB: warmFloor, anonFloorKiB: warmAnonFloor },
          end: { ...b, rssFloorKiB: endFloor, anonFloorKiB: endAnonFloor },
          rssChange: change(warmFloor, endFloor),
          anonChange: change(warmAnonFloor, endAnonFloor),
          idleRssChange: change(a.rssKiB, b.rssKiB),
          fdChange: change(a.fds, b.fds),
        },
        underLoad: {
          maxRssKiB: Math.max(...s.samples.map((x) => x.rssKiB)),
          maxFds: Math.max(...s.samples.map((x) => x.fds)),
          samples: s.samples,
        },
        shadows: shadowPods.map((pod) => {
          const of = s.shadowSamples.filter((x) => x.pod === pod);
          return { pod, first: of[0], last: of.at(-1), maxRssKiB: Math.max(...of.map((x) => x.rssKiB)), maxFds: Math.max(...of.map((x) => x.fds)) };
        }),
        ktctlOutput: s.ktctl.output().split("\n"),
        shadowLogs: s.shadowLogs.map((x) => ({ pod: x.pod, log: x.log.split("\n").slice(-200) })),
      };
    }),
  };
}

function printTable(report: Awaited<ReturnType<typeof summarize>>): void {
  const mib = (kib: number) => (kib / 1024).toFixed(1);
  const pct = (x: number) => `${x >= 0 ? "+" : ""}${(x * 100).toFixed(1)}%`;
  const rows = report.sessions.map((s) => {
    const worst = Math.max(...s.heals.map((h) => h.healMs));
    return [
      s.name,
      String(s.requests),
      `${s.failed} (${s.failedInside} in, ${s.failedOutside.length} out${s.failedOutsideSharedWithControl.length ? `, ${s.failedOutsideSharedWithControl.length} out with the control` : ""})`,
      `${s.heals.length}, worst ${(worst / 1000).toFixed(1)} s`,
      `${s.latencyMs.p50} / ${s.latencyMs.p99} ms`,
      `floor ${mib(s.ktctl.warmUp.rssFloorKiB)} -> ${mib(s.ktctl.end.rssFloorKiB)} MiB (${pct(s.ktctl.rssChange)}), of it anonymous ${mib(s.ktctl.warmUp.anonFloorKiB)} -> ${mib(s.ktctl.end.anonFloorKiB)} (${pct(s.ktctl.anonChange)}); idle ${mib(s.ktctl.warmUp.rssKiB)} -> ${mib(s.ktctl.end.rssKiB)} (${pct(s.ktctl.idleRssChange)})`,
      `${s.ktctl.warmUp.fds} -> ${s.ktctl.end.fds} (${pct(s.ktctl.fdChange)})`,
      s.shadows.map((x) => `${mib(x.first?.rssKiB ?? 0)}->${mib(x.last?.rssKiB ?? 0)} MiB/${x.last?.fds ?? "?"} fd`).join(", "),
    ];
  });
  const header = ["session", "requests", "failed", "heals", "p50 / p99", "ktctl RSS warm-up -> end", "ktctl fds (idle)", "shadows (first -> last RSS / fds)"];
  console.log([header, ...rows].map((r) => `| ${r.join(" | ")} |`).join("\n"));
  console.log(`control load (pod -> ${report.control.url}, no ktctl on its path): ${report.control.requests} requests, ${report.control.failed.length} failed`);
}
