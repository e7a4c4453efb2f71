// Turns the JSON lines of the benchmark scripts into one table of rows: ktctl's figure, the other
// side's, the ratio (or the difference) and the goal of issue 11. Used by test/bench/all.ts.

/** What each script prints as its last line (only the fields read here). */
export interface BenchOutputs {
  forward?: { results: Record<string, Record<string, number[]>>; memory: Record<string, { rss: number; peak: number }> };
  connect?: { results: Record<string, Record<string, number[]>>; memory: Record<string, { rss: number; peak: number }>; scale: Record<string, any> };
  exchange?: { rounds: { mode: string; readyMs: number; firstAnswerMs: number }[]; load?: Record<string, { rps: number; meanMs: number; p50ms?: number }> };
  mesh?: { rows: { scenario: string; direct: { rps: number; p50ms: number }; router: { rps: number; p50ms: number }; rpsRatio: number; addedP50ms: number }[]; memory: Record<string, number> };
  peers?: PeersOutput;
}

/** peers.bench.ts: ktctl beside kt-connect and kubefwd on the same workload, in one run. */
export interface PeersOutput {
  /** Per tool ("ktctl connect", "kt-connect connect", "kubefwd"), per metric, one value per round. */
  connect: Record<string, Record<string, number[]>>;
  /** Start to first answer by name with N services, per tool. */
  scale: { services: number; ms: Record<string, number[]> };
  exchange: Record<string, { firstAnswerMs: number[]; rps?: number; meanMs?: number }>;
  mesh: Record<string, { rps: number; p50ms: number; rpsRounds?: number[] }>;
  memory: Record<string, number>;
  /** What could not run, with the command and its error. */
  unavailable: Record<string, string>;
}

export interface Row {
  area: string;
  metric: string;
  ktctl?: number;
  otherName: string;
  other?: number;
  /** ratio: how many times better ktctl is (> 1 better); diff: ktctl minus other (ms); absolute: ktctl's figure alone. */
  kind: "ratio" | "diff" | "absolute";
  value?: number;
  goal?: string;
  met?: boolean;
}

export const GOALS = {
  throughput: ">= 0.95x",
  fresh: ">= 2.0x (ktctl <= 0.5x kubectl's time)",
  keepalive: "<= +0.1 ms",
  exchangeAdded: "<= 3 ms",
  exchangeRps: ">= 0.5x",
  meshDirect: ">= 0.8x",
  meshAdded: "<= 0.5 ms",
  peer: "> 1.0x (better)",
  peerThroughput: ">= 1.0x",
  connectStart: "< 1500 ms",
  shadowIdle: "<= 40 MiB",
  shadowBulk: "<= 64 MiB",
  ktctlIdle: "<= 64 MiB",
  ktctlBulk: "<= 96 MiB",
};

const median = (xs: number[] | undefined): number | undefined => (xs?.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] : undefined);
const mib = (kb: number | undefined) => (kb === undefined ? undefined : kb / 1024);

/** A row comparing ktctl with another side; `higher` says which way is better. */
function compare(area: string, metric: string, ktctl: number | undefined, otherName: string, other: number | undefined, higher: boolean, goal?: { text: string; min: number }): Row {
  const value = ktctl === undefined || other === undefined ? undefined : higher ? ktctl / other : other / ktctl;
  return { area, metric, ktctl, otherName, other, kind: "ratio", value, goal: goal?.text, met: goal && value !== undefined ? value >= goal.min : undefined };
}

function added(area: string, metric: string, ktctl: number | undefined, otherName: string, other: number | undefined, goal: { text: string; max: number }): Row {
  const value = ktctl === undefined || other === undefined ? undefined : ktctl - other;
  return { area, metric, ktctl, otherName, other, kind: "diff", value, goal: goal.text, met: value === undefined ? undefined : value <= goal.max };
}

function absolute(area: string, metric: string, ktctl: number | undefined, goal?: { text: string; max: number }): Row {
  const met = ktctl === undefined || goal === undefined ? undefined : ktctl <= goal.max;
  return { area, metric, ktctl, otherName: "-", kind: "absolute", value: ktctl, goal: goal?.text, met };
}

/** The goal a reading of ktctl's memory is judged by, from how the peers bench names it. */
function memoryGoal(name: string): { text: string; max: number } | undefined {
  // Right after a start is neither idle (start pages not yet handed back) nor under load: no goal.
  if (name.includes("first answer")) return undefined;
  const idle = name.includes("idle");
  if (name.includes("shadow")) return idle ? { text: GOALS.shadowIdle, max: 40 } : { text: GOALS.shadowBulk, max: 64 };
  return idle ? { text: GOALS.ktctlIdle, max: 64 } : { text: GOALS.ktctlBulk, max: 96 };
}

/** The rows shared by forward and connect: one tunnel against kubectl port-forward to the same pod. */
function tunnelRows(area: string, ours: Record<string, number[]>, kubectl: Record<string, number[]>): Row[] {
  const k = "kubectl port-forward";
  return [
    compare(area, "bulk echo throughput (MB/s)", median(ours.bulkMBps), k, median(kubectl.bulkMBps), true, { text: GOALS.throughput, min: 0.95 }),
    added(area, "request on one connection, p50 (ms)", median(ours.keepaliveP50ms), k, median(kubectl.keepaliveP50ms), { text: GOALS.keepalive, max: 0.1 }),
    compare(area, "new connection per request, p50 (ms)", median(ours.freshP50ms), k, median(kubectl.freshP50ms), false, { text: GOALS.fresh, min: 2.0 }),
    compare(area, "start to first answer (ms)", median(ours.firstAnswerMs), k, median(kubectl.firstAnswerMs), false),
  ];
}

export function rowsOf(o: BenchOutputs): Row[] {
  const rows: Row[] = [];
  if (o.forward) {
    const r = o.forward.results;
    const cpu = (who: string) => ["forwarder", "shadow", "containerd", "kubelet", "kube-apiserver"].reduce((sum, key) => sum + (median(r[who]?.[`cpu:${key}`]) ?? 0), 0);
    // forward's default goes straight to the pod; the variant "shadow" (--via shadow) is the path
    // connect takes, through the shadow, so the shadow's memory under bulk is judged on that one.
    for (const [area, who] of [["forward", "ktctl forward"], ["forward --via shadow", "ktctl forward (shadow)"]] as const) {
      if (!r[who]) continue;
      if (r["kubectl port-forward"]) rows.push(...tunnelRows(area, r[who], r["kubectl port-forward"]));
      rows.push(compare(area, "CPU per MiB echoed, whole path (ms)", cpu(who), "kubectl port-forward", cpu("kubectl port-forward"), false));
      rows.push(absolute(area, "ktctl RSS after bulk (MiB)", mib(o.forward.memory[who]?.peak), { text: GOALS.ktctlBulk, max: 96 }));
      const shadow = mib(o.forward.memory[`${who}: shadow pod`]?.peak);
      // Straight to the pods forward starts no shadow; a run of an older build had one idle beside it.
      if (who === "ktctl forward") {
        if (shadow !== undefined) rows.push(absolute(area, "shadow RSS, carrying none of the bytes (MiB)", shadow));
      }
      else rows.push(absolute(area, "shadow RSS after bulk (MiB)", shadow, { text: GOALS.shadowBulk, max: 64 }));
    }
  }
  if (o.connect) {
    const r = o.connect.results;
    const c = r["ktctl connect (system)"];
    if (c && r["kubectl port-forward"]) rows.push(...tunnelRows("connect", c, r["kubectl port-forward"]).slice(0, 3));
    rows.push(absolute("connect", "start to first answer by name (ms)", median(c?.firstAnswerMs), { text: GOALS.connectStart, max: 1500 }));
    rows.push(absolute("connect", "start to first answer, shadow shared (ms)", median(r.shared?.firstAnswerMs), { text: GOALS.connectStart, max: 1500 }));
    rows.push(absolute("connect", `start to first answer, ${o.connect.scale.services} services (ms)`, median(r.scale?.firstAnswerMs), { text: GOALS.connectStart, max: 1500 }));
    // Results of runs older than the idle reading hold only the reading at the first answer, which is not idle.
    if (r.scale?.readyRssKb) rows.push(absolute("connect", `ktctl RSS at its first answer, ${o.connect.scale.services} services (MiB)`, mib(median(r.scale.readyRssKb))));
    const idleName = r.scale?.readyRssKb ? "ktctl idle RSS" : "ktctl RSS at its first answer";
    rows.push(absolute("connect", `${idleName}, ${o.connect.scale.services} services (MiB)`, mib(median(r.scale?.idleRssKb)), r.scale?.readyRssKb ? { text: GOALS.ktctlIdle, max: 64 } : undefined));
    const ktctlMem = Object.entries(o.connect.memory).find(([name]) => name.startsWith("ktctl connect, ") && name.includes("(1 service)"))?.[1];
    rows.push(absolute("connect", "ktctl RSS peak after bulk (MiB)", mib(ktctlMem?.peak), { text: GOALS.ktctlBulk, max: 96 }));
    rows.push(absolute("connect", "shadow RSS peak after bulk (MiB)", mib(o.connect.memory["shadow pod (after the same load)"]?.peak), { text: GOALS.shadowBulk, max: 64 }));
    // --via pod: straight to the pods through their port-forwards, no shadow (runs of older builds have none).
    const pod = r["ktctl connect --via pod"];
    if (pod) {
      const area = "connect --via pod";
      if (r["kubectl port-forward"]) rows.push(...tunnelRows(area, pod, r["kubectl port-forward"]).slice(0, 3));
      rows.push(absolute(area, "start to first answer by name (ms)", median(pod.firstAnswerMs), { text: GOALS.connectStart, max: 1500 }));
      const podMem = Object.entries(o.connect.memory).find(([name]) => name.startsWith("ktctl connect --via pod"))?.[1];
      rows.push(absolute(area, "ktctl RSS peak after bulk (MiB)", mib(podMem?.peak), { text: GOALS.ktctlBulk, max: 96 }));
    }
  }
  if (o.exchange?.load) {
    const l = o.exchange.load;
    const orig = "original pod";
    rows.push(added("exchange", "pod -> laptop, new connection per request: p50 (ms)", l.exchangedFresh?.p50ms, orig, l.originalFresh?.p50ms, { text: GOALS.exchangeAdded, max: 3 }));
    rows.push(added("exchange", "pod -> laptop, new connection per request (busybox wget): mean latency (ms)", l.exchangedSeq?.meanMs, orig, l.originalSeq?.meanMs, { text: GOALS.exchangeAdded, max: 3 }));
    rows.push(compare("exchange", "pod -> laptop, sequential req/s", l.exchangedSeq?.rps, orig, l.originalSeq?.rps, true, { text: GOALS.exchangeRps, min: 0.5 }));
    rows.push(compare("exchange", "pod -> laptop, 8 parallel req/s", l.exchangedPar?.rps, orig, l.originalPar?.rps, true, { text: GOALS.exchangeRps, min: 0.5 }));
    // Both sides by the service's name: every request's DNS lookups (CoreDNS) counted on both.
    rows.push(compare("exchange", "pod -> laptop, sequential req/s, by the service's name", l.exchangedSeqByName?.rps, `${orig}, by name`, l.originalSeqByName?.rps, true, { text: GOALS.exchangeRps, min: 0.5 }));
  }
  if (o.mesh) {
    for (const m of o.mesh.rows) {
      rows.push(compare("mesh", `${m.scenario}: req/s, unmarked`, m.router.rps, "direct to the pods", m.direct.rps, true, { text: GOALS.meshDirect, min: 0.8 }));
      rows.push(added("mesh", `${m.scenario}: p50 (ms)`, m.router.p50ms, "direct to the pods", m.direct.p50ms, { text: GOALS.meshAdded, max: 0.5 }));
    }
  }
  if (o.peers) rows.push(...peerRows(o.peers));
  return rows;
}

function peerRows(p: PeersOutput): Row[] {
  const rows: Row[] = [];
  // connect's default (through its shadow) and --via pod (straight to the pods, as kubefwd goes).
  for (const who of ["ktctl connect", "ktctl connect --via pod"]) {
    const ours = p.connect[who];
    if (!ours) continue;
    const via = who === "ktctl connect" ? "" : " (--via pod)";
    for (const peer of ["kt-connect connect", "kubefwd"]) {
      const theirs = p.connect[peer];
      if (!theirs) continue;
      const area = `vs ${peer.split(" ")[0]}${via}`;
      const better = { text: GOALS.peer, min: 1.0 };
      rows.push(compare(area, "start to first answer by name (ms)", median(ours.firstAnswerMs), peer, median(theirs.firstAnswerMs), false, better));
      rows.push(compare(area, "bulk echo throughput, service by name (MB/s)", median(ours.bulkMBps), peer, median(theirs.bulkMBps), true, { text: GOALS.peerThroughput, min: 1.0 }));
      rows.push(compare(area, "request on one connection, p50 (ms)", median(ours.keepaliveP50ms), peer, median(theirs.keepaliveP50ms), false, better));
      rows.push(compare(area, "new connection per request, p50 (ms)", median(ours.freshP50ms), peer, median(theirs.freshP50ms), false, better));
    }
    const s = p.scale;
    for (const peer of ["kt-connect connect", "kubefwd"]) {
      if (s.ms[peer] && s.ms[who]) rows.push(compare(`vs ${peer.split(" ")[0]}${via}`, `start to first answer by name, ${s.services} services (ms)`, median(s.ms[who]), peer, median(s.ms[peer]), false, { text: GOALS.peer, min: 1.0 }));
    }
  }
  const ex = p.exchange;
  if (ex["kt-connect"]) {
    rows.push(compare("vs kt-connect", "exchange: start to first request answered by the laptop (ms)", median(ex.ktctl?.firstAnswerMs), "kt-connect exchange", median(ex["kt-connect"].firstAnswerMs), false, { text: GOALS.peer, min: 1.0 }));
    rows.push(compare("vs kt-connect", "exchange: pod -> laptop req/s, new connection each", ex.ktctl?.rps, "kt-connect exchange", ex["kt-connect"].rps, true, { text: GOALS.peer, min: 1.0 }));
  }
  if (p.mesh["kt-connect router"]) {
    rows.push(compare("vs kt-connect", "mesh router, unmarked req/s (HTTP/1.1, 1 connection)", p.mesh["ktctl router"]?.rps, "kt-connect nginx router", p.mesh["kt-connect router"].rps, true, { text: GOALS.peerThroughput, min: 1.0 }));
    rows.push(compare("vs kt-connect", "mesh router, unmarked p50 (ms)", p.mesh["ktctl router"]?.p50ms, "kt-connect nginx router", p.mesh["kt-connect router"].p50ms, false));
    if (p.mesh["direct (kt-connect stuntman)"]) rows.push(compare("vs kt-connect", "kt-connect's router vs direct req/s (for scale)", p.mesh["kt-connect router"].rps, "direct", p.mesh["direct (kt-connect stuntman)"].rps, true));
  }
  for (const [name, value] of Object.entries(p.memory)) {
    if (name.startsWith("ktctl")) rows.push(absolute("memory", `${name} (MiB)`, value / 1024, memoryGoal(name)));
    else rows.push({ area: "memory", metric: `${name} (MiB)`, ktctl: undefined, otherName: name, other: value / 1024, kind: "absolute" });
  }
  return rows;
}
