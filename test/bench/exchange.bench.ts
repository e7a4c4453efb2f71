// exchange against the real cluster, ktctl in the laptop namespace, measured from inside the cluster:
//   - time from starting `ktctl exchange` to the first in-cluster request the LAPTOP answers (a pod
//     keeps asking http://echo.demo/ meanwhile; the laptop server stamps the requests it gets);
//   - time to restore on Ctrl-C: until ktctl exits (everything undone) and until the last request
//     reached the laptop (traffic back on the original pods), for selector and scale mode;
//   - requests/s and mean latency from a pod to the exchanged service (pod -> shadow -> tunnel ->
//     laptop) against the original pods, in the same run; and the p50 of a new connection per
//     request, from a client in the pod's network namespace (busybox has no clock finer than 10 ms),
//     and the CPU the session's ktctl and shadow spent per request of that client;
//   - the same load, at the same time, through a second session whose tunnel carries the cluster's
//     connections over SSH (KTCTL_TUNNEL_REVERSE=0; it exchanges the echo service of the second
//     namespace, served by the same laptop server): the reverse path and its fallback and the
//     original pod measured in turns, --loadRounds turns each, medians reported (on a loaded
//     machine, rounds minutes apart differed by 2x; turns seconds apart share the same load).
//     With KTCTL_BENCH_BASELINE_ARGV (a JSON argv of another ktctl, e.g. the build before a change)
//     the second session is that ktctl, on its default path: before and after, side by side.
//   bun test/bench/exchange.bench.ts [--rounds 3] [--loadRounds 3] [--requests 300] [--concurrency 8]
// Prints a Markdown table and a JSON line. Needs the test cluster (test/cluster/up).

import { parseArgs } from "node:util";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { DEMO2_NS, DEMO_NS, REPO, clusterIpOf, inLaptop, kubectl, kubectlJson, requireCluster, run, runInLaptop, runInPod, trackedConnections } from "../e2e/harness.ts";
import { startKtctl, tempHome, type KtctlProcess } from "../e2e/exchange-harness.ts";
import { cpuDuring, keepOutput, shadowPidIn } from "./processes.ts";
import { wgetLoad } from "./pod-wget-load.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    loadRounds: { type: "string", default: "3" },
    requests: { type: "string", default: "300" },
    concurrency: { type: "string", default: "8" },
  },
});
const rounds = Number(values.rounds);
const loadRounds = Number(values.loadRounds);
const requests = Number(values.requests);
const concurrency = Number(values.concurrency);
const LOCAL_PORT = 28180;
/** The second session's ktctl: another build (before/after), or this one over SSH. */
const baselineArgv: string[] | undefined = process.env.KTCTL_BENCH_BASELINE_ARGV ? JSON.parse(process.env.KTCTL_BENCH_BASELINE_ARGV) : undefined;
const SECOND = baselineArgv ? `the other ktctl (${baselineArgv.join(" ")}), default path` : "over SSH (KTCTL_TUNNEL_REVERSE=0)";
const STATS_PORT = 28181;

await requireCluster();
const { home, remove } = tempHome("bench");
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

// ---- the laptop: an HTTP server answering like the echo pods, stamping every request -------------
const serverScript = `
const stamps = [];
Bun.serve({ port: ${LOCAL_PORT}, hostname: "127.0.0.1", fetch() { stamps.push(Date.now()); return Response.json({ pod: "laptop" }); } });
Bun.serve({ port: ${STATS_PORT}, hostname: "127.0.0.1", fetch(req) {
  const since = Number(new URL(req.url).searchParams.get("since") ?? 0);
  const after = stamps.filter((t) => t >= since);
  return Response.json({ count: after.length, first: after[0] ?? null, last: after.at(-1) ?? null });
} });`;
const server = Bun.spawn(inLaptop(["bun", "-e", serverScript]), { stdout: "ignore", stderr: "inherit" });

async function laptopStats(since: number): Promise<{ count: number; first: number | null; last: number | null }> {
  const r = await runInLaptop(["curl", "-s", "--max-time", "2", `http://127.0.0.1:${STATS_PORT}/?since=${since}`]);
  return JSON.parse(r.stdout || '{"count":0,"first":null,"last":null}');
}

async function until<T>(check: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}
await until(async () => ((await runInLaptop(["curl", "-sf", "--max-time", "2", `http://127.0.0.1:${STATS_PORT}/`])).code === 0 ? true : undefined), 15_000, "the laptop server");

// ---- a pod that keeps asking the service ---------------------------------------------------------
/**
 * Requests http://echo.demo/ back to back from the toolbox pod until stop() (a marker file) ends it;
 * resolves once the loop runs (it leaves a file after its first request).
 */
async function probeLoop(tag: string): Promise<{ stop(): Promise<{ requests: number; failures: number }> }> {
  const marker = `/tmp/ktctl-bench-stop-${tag}`;
  const running = `/tmp/ktctl-bench-running-${tag}`;
  const loop = kubectl(
    [
      "-n", DEMO_NS, "exec", "toolbox", "--", "sh", "-c",
      `rm -f ${marker}; n=0; f=0; while [ ! -e ${marker} ]; do n=$((n+1)); timeout 2 wget -qO- http://echo.${DEMO_NS}/ >/dev/null 2>&1 || f=$((f+1)); touch ${running}; done; rm -f ${marker} ${running}; echo "$n $f"`,
    ],
    { timeoutMs: 600_000 },
  );
  await until(async () => ((await runInPod(["test", "-e", running])).code === 0 ? true : undefined), 30_000, "the probe loop");
  return {
    async stop() {
      await runInPod(["touch", marker]);
      const [requests, failures] = (await loop).stdout.trim().split(/\s+/).map(Number) as [number, number];
      return { requests, failures };
    },
  };
}

/** Sequential requests from the toolbox pod in `parallel` loops; wall time by the pod's clock. */
async function load(url: string, total: number, parallel: number): Promise<{ rps: number; meanMs: number; failures: number }> {
  const { rps, meanMs, failures } = await wgetLoad(url, total, parallel);
  return { rps, meanMs, failures };
}

/**
 * The toolbox pod's sandbox process (found by its pod's cgroup; it lives as long as the pod, unlike
 * the commands exec'd in it), whose network namespace a client can enter.
 */
async function toolboxPid(): Promise<number> {
  const uid: string = (await kubectlJson(["-n", DEMO_NS, "get", "pod", "toolbox"])).metadata.uid;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const inPod = readFileSync(join("/proc", entry, "cgroup"), "utf8").includes(`pod${uid}`);
      if (inPod && readFileSync(join("/proc", entry, "comm"), "utf8").trim() === "pause") return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  throw new Error("no sandbox process of the toolbox pod found");
}

/** The processes an exchanged request passes through on its way to the laptop, whose CPU a turn measures. */
interface PathProcesses {
  ktctl: number;
  shadow: number;
}

/**
 * Sequential requests, a new connection each, from the toolbox pod's network namespace: latency
 * percentiles, and for an exchanged target the CPU its ktctl and shadow spent per request meanwhile.
 */
async function freshFromPod(target: string, count: number, path?: PathProcesses): Promise<Record<string, number>> {
  const pid = await toolboxPid();
  const { result: r, cpuMs } = await cpuDuring({ ...path }, () =>
    run(["nsenter", "-t", String(pid), "-n", process.execPath, join(REPO, "test/bench/load-client.ts"), "fresh", target, String(count)], { timeoutMs: 600_000 }),
  );
  if (r.code !== 0) throw new Error(`load client failed: ${r.stderr}`);
  const latency = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
  if (!path) return latency;
  return { ...latency, ktctlCpuMs: cpuMs.ktctl! / count, shadowCpuMs: cpuMs.shadow! / count };
}

/**
 * One target as a pod reaches it: by its service's address (`url`, `address`) and by the service's
 * name (`named`: every busybox request then pays its DNS lookups first, through CoreDNS).
 */
interface LoadTarget {
  url: string;
  named: string;
  address: string;
  /** An exchanged target's ktctl and shadow. */
  path?: PathProcesses;
}

/** One turn of load against one target: busybox wget sequential and in parallel, the same by name, and the p50 client. */
async function loadTurn(target: LoadTarget): Promise<Record<string, any>> {
  return {
    seq: await load(target.url, requests, 1),
    par: await load(target.url, requests * 2, concurrency),
    seqByName: await load(target.named, requests, 1),
    fresh: await freshFromPod(target.address, requests, target.path),
  };
}

/**
 * A service of the bench's own in front of echo's original pods (the deployment's selector), so that
 * the original pods are reached the way the exchanged service is: by a ClusterIP and by a name.
 */
async function originalService(): Promise<{ name: string; remove(): Promise<void> }> {
  const name = "echo-bench-original";
  const deployment = await kubectlJson(["-n", DEMO_NS, "get", "deployment", "echo"]);
  const service = {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name, namespace: DEMO_NS },
    spec: { selector: deployment.spec.selector.matchLabels, ports: [{ port: 80, targetPort: 8080 }] },
  };
  const applied = await kubectl(["apply", "-f", "-"], { stdin: JSON.stringify(service) });
  if (applied.code !== 0) throw new Error(`creating service ${name}: ${applied.stderr}`);
  return { name, remove: async () => void (await kubectl(["-n", DEMO_NS, "delete", "service", name, "--ignore-not-found", "--wait=false"])) };
}

// ---- one exchange ------------------------------------------------------------------------------
interface Round {
  mode: string;
  /** Start of ktctl to its "exchanged" line. */
  readyMs: number;
  /** Start of ktctl to the first request the laptop answered. */
  firstAnswerMs: number;
  /** Ctrl-C to ktctl's exit, everything restored (scale: replicas ready again). */
  restoreMs: number;
  /** Ctrl-C to the last request that still reached the laptop. */
  trafficBackMs: number;
  /** Requests a pod made back to back while the service switched to the laptop, and how many failed. */
  probeIn: { requests: number; failures: number };
  /** The same while it switched back. */
  probeOut: { requests: number; failures: number };
}

const EXCHANGED = /exchanged \S+ in [\d.]+s \((\w+) mode, session ([a-z0-9]+)\)/;

async function exchangeRound(mode: "selector" | "scale"): Promise<Round> {
  const target = mode === "scale" ? "deployment/echo" : "svc/echo";
  const probe = await probeLoop(`${mode}-${Date.now()}`);
  const t0 = Date.now();
  const k: KtctlProcess = startKtctl(["exchange", target, "--mode", mode, "--expose", `${LOCAL_PORT}:80`], home);
  let readyMs: number, first: number, probedIn: { requests: number; failures: number };
  try {
    await k.waitFor(EXCHANGED, 120_000);
    readyMs = Date.now() - t0;
    first = await until(async () => (await laptopStats(t0)).first ?? undefined, 60_000, "the first request answered by the laptop");
    // The probe that watched the switch in ends here; a new one watches the switch back.
    probedIn = await probe.stop();
  } catch (error) {
    // Whatever failed, the session ends with its undo (a bench that dies leaves nothing taken over).
    k.proc.kill("SIGINT");
    await k.exited;
    await probe.stop().catch(() => undefined);
    throw error;
  }
  const back = await probeLoop(`${mode}-back-${Date.now()}`);
  const t2 = Date.now();
  k.proc.kill("SIGINT");
  await k.exited;
  const restoreMs = Date.now() - t2;
  // Traffic is back once the pod's requests no longer reach the laptop: wait until one is answered
  // by an original pod, then take the last laptop stamp.
  await until(
    async () => {
      const r = await runInPod(["sh", "-c", `timeout 2 wget -qO- http://echo.${DEMO_NS}/`]);
      return r.code === 0 && !r.stdout.includes('"laptop"') ? true : undefined;
    },
    120_000,
    "the original pods answering again",
  );
  const last = (await laptopStats(t2)).last;
  const probedBack = await back.stop();
  return {
    mode,
    readyMs,
    firstAnswerMs: first - t0,
    restoreMs,
    trafficBackMs: last ? Math.max(0, last - t2) : 0,
    probeIn: probedIn,
    probeOut: probedBack,
  };
}

/**
 * The reverse path (demo's echo, the default tunnel) and a second session on the second
 * namespace's echo (its SSH fallback, or the baseline ktctl) exchanged at the same time, and the
 * original pods, loaded in turns.
 */
async function sideBySide(): Promise<Record<string, any>> {
  const original = await originalService();
  const sessions = [
    startKtctl(["exchange", "svc/echo", "--expose", `${LOCAL_PORT}:80`], home),
    baselineArgv
      ? startKtctl(["exchange", "svc/echo", "--expose", `${LOCAL_PORT}:80`], home, {}, DEMO2_NS, baselineArgv)
      : startKtctl(["exchange", "svc/echo", "--expose", `${LOCAL_PORT}:80`], home, { KTCTL_TUNNEL_REVERSE: "0" }, DEMO2_NS),
  ];
  try {
    await Promise.all(sessions.map((k) => k.waitFor(EXCHANGED, 120_000)));
    const byService = async (name: string, namespace: string, path?: PathProcesses): Promise<LoadTarget> => {
      const ip = await clusterIpOf(name, namespace);
      return { url: `http://${ip}/`, named: `http://${name}.${namespace}/`, address: `${ip}:80`, path };
    };
    const pathIn = async (ktctl: KtctlProcess, namespace: string): Promise<PathProcesses> => {
      const shadow = await shadowPidIn(namespace);
      if (!shadow) throw new Error(`no shadow process found in ${namespace}`);
      return { ktctl: ktctl.pid, shadow };
    };
    const targets = {
      reverse: await byService("echo", DEMO_NS, await pathIn(sessions[0]!, DEMO_NS)),
      ssh: await byService("echo", DEMO2_NS, await pathIn(sessions[1]!, DEMO2_NS)),
      original: await byService(original.name, DEMO_NS),
    };
    staleTracking = await clearStaleTracking(Object.values(targets).map((t) => t.address.split(":")[0]!));
    if (staleTracking.removed) console.error(`stale conntrack entries toward deleted pods, removed before the load: ${JSON.stringify(staleTracking)}`);
    for (const name of ["reverse", "ssh", "original"] as const) {
      const answers = (body: string) => (name === "original" ? body.includes('"pod"') && !body.includes('"laptop"') : body.includes('"laptop"'));
      await until(async () => (answers((await runInPod(["sh", "-c", `timeout 2 wget -qO- ${targets[name].named}`])).stdout) ? true : undefined), 60_000, `${name} answering`);
    }
    const turns: Record<keyof typeof targets, Record<string, any>[]> = { reverse: [], ssh: [], original: [] };
    const names = Object.keys(targets) as (keyof typeof targets)[];
    for (let i = 0; i < loadRounds; i++) {
      for (const name of [...names.slice(i % names.length), ...names.slice(0, i % names.length)]) {
        const turn = await loadTurn(targets[name]);
        turns[name].push(turn);
        console.error(`load turn ${i + 1}, ${name}: ${JSON.stringify(turn)}`);
        // A failed request: what both sessions and their shadows said, kept while they still run.
        if (Object.values(turn).some((figures: any) => figures.failures > 0)) {
          const shadows = await Promise.all(
            [DEMO_NS, DEMO2_NS].map(async (ns) => `--- shadow in ${ns}\n${(await kubectl(["-n", ns, "logs", "-l", "ktctl.io/managed-by=ktctl", "--tail=-1"])).stdout}`),
          );
          keepOutput(`load turn ${i + 1}, ${name}`, () => [...sessions.map((k, at) => `--- session ${at + 1}\n${k.output()}`), ...shadows].join("\n"));
        }
      }
    }
    return turns;
  } finally {
    for (const k of sessions) k.proc.kill("SIGINT");
    await Promise.all(sessions.map((k) => k.exited));
    await original.remove();
  }
}

/**
 * The node's connection-tracking entries toward `serviceIps` whose translated address is a pod that
 * no longer exists, removed. The start and restore rounds before the load change the exchanged
 * service's endpoints and delete pods (the original ones in scale mode, every round's shadow); a
 * connection attempt caught in such a change leaves an entry in SYN_SENT toward the dead address
 * for two minutes, and a later connection from the same source port follows it into nothing (the
 * reverse path's lost requests of earlier runs: "A request that stalls on the reverse path").
 * That is the node's doing, left by the bench's own earlier rounds, and the original pods' fresh
 * service never has such entries: left in place, they load the comparison against the exchanged
 * side. The count is reported with the figures.
 */
async function clearStaleTracking(serviceIps: string[]): Promise<{ removed: number; deadPods: number; unavailable?: string }> {
  const pods = await kubectlJson<any>(["get", "pods", "-A"]);
  const live = new Set<string>(pods.items.flatMap((p: any) => (p.status?.podIPs ?? []).map((ip: any) => ip.ip)));
  const dead = new Set<string>();
  for (const ip of serviceIps) {
    const tracked = await trackedConnections(ip);
    if (!("entries" in tracked)) return { removed: 0, deadPods: 0, unavailable: tracked.unavailable };
    for (const { replySource } of tracked.entries) if (!live.has(replySource)) dead.add(replySource);
  }
  let removed = 0;
  for (const ip of serviceIps) {
    for (const pod of dead) {
      // conntrack -D says how many it deleted on stderr; a run that finds none exits non-zero.
      const deleted = await run(["conntrack", "-D", "-p", "tcp", "--orig-dst", ip, "--reply-src", pod], { timeoutMs: 10_000 });
      removed += Number(/(\d+) flow entries have been deleted/.exec(deleted.stderr)?.[1] ?? 0);
    }
  }
  return { removed, deadPods: dead.size };
}

/** Each figure of load rounds as its median over the rounds (the same shape as one round's). */
function medians(loads: Record<string, any>[]): Record<string, any> {
  const out: Record<string, any> = {};
  for (const [name, figures] of Object.entries(loads[0]!)) {
    out[name] = Object.fromEntries(Object.keys(figures as object).map((key) => [key, median(loads.map((l) => l[name][key]))]));
  }
  return out;
}

const results: Round[] = [];
let loadFigures: Record<string, any> | undefined;
let staleTracking: Awaited<ReturnType<typeof clearStaleTracking>> | undefined;
try {
  for (const mode of ["selector", "scale"] as const) {
    for (let i = 0; i < rounds; i++) {
      const round = await exchangeRound(mode);
      results.push(round);
      console.error(`${mode} round ${i + 1}: ${JSON.stringify(round)}`);
    }
  }
  if (loadRounds > 0) {
    const turns = await sideBySide();
    const [reverse, ssh, original] = [medians(turns.reverse), medians(turns.ssh), medians(turns.original)];
    // Named as before for report.ts: "exchanged" is the default path; the second session under "ssh"
    // (the SSH fallback, or the baseline ktctl: `second` says which).
    const shape = (exchanged: Record<string, any>) => ({
      exchangedSeq: exchanged.seq,
      exchangedPar: exchanged.par,
      exchangedFresh: exchanged.fresh,
      exchangedSeqByName: exchanged.seqByName,
      originalSeq: original.seq,
      originalSeqByName: original.seqByName,
      originalPar: original.par,
      originalFresh: original.fresh,
    });
    loadFigures = { ...shape(reverse), ssh: shape(ssh), second: SECOND, turns };
  }
} finally {
  server.kill();
  await server.exited;
  remove();
}

const fmt = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const row = (mode: string, key: "readyMs" | "firstAnswerMs" | "restoreMs" | "trafficBackMs") => {
  const xs = results.filter((r) => r.mode === mode).map((r) => r[key]);
  return `${fmt(median(xs))} (${xs.map(fmt).join(", ")})`;
};
console.log(`| exchange, ${rounds} rounds per mode, median (all rounds) | selector mode | scale mode |`);
console.log("|---|---|---|");
console.log(`| start of ktctl to "exchanged" printed | ${row("selector", "readyMs")} | ${row("scale", "readyMs")} |`);
console.log(`| start of ktctl to first in-cluster request answered by the laptop | ${row("selector", "firstAnswerMs")} | ${row("scale", "firstAnswerMs")} |`);
console.log(`| Ctrl-C to ktctl exit (all restored${"; scale: replicas ready"}) | ${row("selector", "restoreMs")} | ${row("scale", "restoreMs")} |`);
console.log(`| Ctrl-C to last request reaching the laptop | ${row("selector", "trafficBackMs")} | ${row("scale", "trafficBackMs")} |`);
const failures = (mode: string, phase: "probeIn" | "probeOut") =>
  results
    .filter((r) => r.mode === mode)
    .map((r) => `${r[phase].failures}/${r[phase].requests}`)
    .join(", ");
console.log(`| failed/made requests of a pod asking back to back, while switching to the laptop (per round) | ${failures("selector", "probeIn")} | ${failures("scale", "probeIn")} |`);
console.log(`| the same while switching back | ${failures("selector", "probeOut")} | ${failures("scale", "probeOut")} |`);
if (loadFigures) {
  const l = loadFigures;
  const ssh = l.ssh as Record<string, any> | undefined;
  const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
  const both = (pick: (x: Record<string, any>) => string) => `${pick(l)} | ${ssh ? pick(ssh) : "-"}`;
  console.log("");
  console.log(
    `| from the toolbox pod, a new connection per request, median of ${loadRounds} turns each | exchanged, reverse streams (default) | exchanged at the same time, ${SECOND} | original pod |`,
  );
  console.log("|---|---|---|---|");
  const orig = (pick: (x: Record<string, any>) => string) => pick(l);
  console.log(`| busybox wget, sequential, ${requests} requests: requests/s | ${both((x) => x.exchangedSeq.rps.toFixed(0))} | ${orig((x) => x.originalSeq.rps.toFixed(0))} |`);
  console.log(`| the same, ratio to the original pod | ${both((x) => ratio(x.exchangedSeq.rps, x.originalSeq.rps))} | |`);
  console.log(`| sequential: mean latency | ${both((x) => `${x.exchangedSeq.meanMs.toFixed(2)} ms`)} | ${orig((x) => `${x.originalSeq.meanMs.toFixed(2)} ms`)} |`);
  console.log(`| the same by the service's name (DNS lookups included): requests/s | ${both((x) => x.exchangedSeqByName.rps.toFixed(0))} | ${orig((x) => x.originalSeqByName.rps.toFixed(0))} |`);
  console.log(`| the same, ratio to the original pod | ${both((x) => ratio(x.exchangedSeqByName.rps, x.originalSeqByName.rps))} | |`);
  console.log(`| ${concurrency} in parallel, ${requests * 2} requests: requests/s | ${both((x) => x.exchangedPar.rps.toFixed(0))} | ${orig((x) => x.originalPar.rps.toFixed(0))} |`);
  console.log(`| the same, ratio to the original pod | ${both((x) => ratio(x.exchangedPar.rps, x.originalPar.rps))} | |`);
  console.log(`| ${concurrency} in parallel: mean latency | ${both((x) => `${x.exchangedPar.meanMs.toFixed(1)} ms`)} | ${orig((x) => `${x.originalPar.meanMs.toFixed(1)} ms`)} |`);
  console.log(`| client in the pod's network namespace, ${requests} sequential: p50 | ${both((x) => `${x.exchangedFresh.p50ms.toFixed(2)} ms`)} | ${orig((x) => `${x.originalFresh.p50ms.toFixed(2)} ms`)} |`);
  console.log(`| the same: added p50 over the original pod | ${both((x) => `+${(x.exchangedFresh.p50ms - x.originalFresh.p50ms).toFixed(2)} ms`)} | |`);
  console.log(`| the same: p99 | ${both((x) => `${x.exchangedFresh.p99ms.toFixed(2)} ms`)} | ${orig((x) => `${x.originalFresh.p99ms.toFixed(2)} ms`)} |`);
  console.log(`| the same: CPU per request, ktctl | ${both((x) => `${x.exchangedFresh.ktctlCpuMs.toFixed(3)} ms`)} | |`);
  console.log(`| the same: CPU per request, its shadow | ${both((x) => `${x.exchangedFresh.shadowCpuMs.toFixed(3)} ms`)} | |`);
  // Every turn's, not the median turn's: one failure must not hide behind the median.
  const failed = (path: "reverse" | "ssh" | "original") =>
    String(((l.turns as Record<string, any[]> | undefined)?.[path] ?? []).reduce((n, t) => n + t.seq.failures + t.par.failures + t.seqByName.failures + t.fresh.failures, 0));
  console.log(`| failed requests, all turns (sequential, parallel, by name, client in the namespace) | ${failed("reverse")} | ${failed("ssh")} | ${failed("original")} |`);
  if (staleTracking)
    console.log(
      staleTracking.unavailable
        ? `\nStale conntrack entries were not looked for (${staleTracking.unavailable}).`
        : `\nBefore the load, ${staleTracking.removed} conntrack entries toward the services' addresses led to ${staleTracking.deadPods} pods that no longer exist (left by the start and restore rounds): removed.`,
    );
}
console.log(JSON.stringify({ rounds: results, load: loadFigures, staleTracking }));
