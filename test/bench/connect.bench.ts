// ktctl connect, measured from the laptop namespace against the test cluster, side by side with
// kubectl port-forward in one run:
//   - time from starting `ktctl connect` (system mode) to the first successful request BY NAME
//     (curl in a loop, one process per attempt, so no resolver cache hides the moment), with a new
//     shadow and with a shared shadow already running (--shareShadow); kubectl port-forward's time
//     to its first answer beside it;
//   - throughput and latency to a service through connect (its ClusterIP, captured by the kernel)
//     against kubectl port-forward to the service's one pod: bulk TCP echo, requests on one
//     connection, a new connection per request;
//   - scale: a namespace of N selector-less services with their own EndpointSlices (M endpoints in
//     all, addresses of real pods): time to ready, ktctl's memory, and C connections held open at
//     once through the tunnel, each to another service by name, without an error.
// `ktctl forward` to the same pod runs in the same rounds: the tunnel's share of connect's figures.
// So does `ktctl connect --via pod` (system mode, the same ClusterIP): straight to the pod through
// its port-forward, no shadow.
// Everything it creates lives in two namespaces of its own, deleted at the end.
// New connections are measured apart, with all three paths up at once (fresh-batches.ts):
// --batches batches of 50 on each in turn; the figure is the median of the batches' p50s.
//   bun test/bench/connect.bench.ts [--rounds 3] [--mib 64] [--requests 300] [--batches 12] [--idle 10]
//                                   [--services 500] [--endpoints 2000] [--concurrency 200]
// Prints Markdown tables and a JSON line. Needs the test cluster (test/cluster/up).

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  KTCTL,
  KUBECONFIG,
  REPO,
  clusterIpOf,
  eventually,
  inLaptop,
  kubectl,
  kubectlJson,
  kubectlOk,
  podsOf,
  requireCluster,
  run,
  runInPod,
  startKtctl,
  waitFor,
  type RunningKtctl,
} from "../e2e/harness.ts";
import { freshInBatches } from "./fresh-batches.ts";
import { keepingOutputOnFailure, rssKbOf as rssKb, shadowPidIn as shadowPid } from "./processes.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    batches: { type: "string", default: "12" },
    mib: { type: "string", default: "64" },
    requests: { type: "string", default: "300" },
    services: { type: "string", default: "500" },
    endpoints: { type: "string", default: "2000" },
    concurrency: { type: "string", default: "200" },
    // Idle, as the goal means it: once ktctl has given its start's pages back (after a whole 3 s
    // interval without work, core/protocol/start-pages.ts), not at its first answer.
    idle: { type: "string", default: "10" },
  },
});
const rounds = Number(values.rounds);
const mib = Number(values.mib);
const requests = Number(values.requests);
const serviceCount = Number(values.services);
const endpointCount = Number(values.endpoints);
const concurrency = Math.min(Number(values.concurrency), serviceCount);
const endpointsEach = Math.max(1, Math.round(endpointCount / serviceCount));

const NS = "ktctl-bench-connect";
const SCALE_NS = "ktctl-bench-scale";
const CLIENT = `${REPO}/test/bench/load-client.ts`;
const KUBECTL_HTTP = 28090;
const KUBECTL_TCP = 29090;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const errorText = (error: unknown) => (error instanceof Error ? error.message : String(error));

async function client(mode: string, target: string, amount: number): Promise<any> {
  const r = await run(inLaptop(["bun", CLIENT, mode, target, String(amount)]), { timeoutMs: 300_000 });
  if (r.code !== 0) throw new Error(`load client ${mode} ${target.slice(0, 80)}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

// ---- the workload ---------------------------------------------------------------------------------

const echoDeployment = (name: string, replicas: number) => `
apiVersion: apps/v1
kind: Deployment
metadata: { name: ${name}, namespace: ${NS} }
spec:
  replicas: ${replicas}
  selector: { matchLabels: { app: ${name} } }
  template:
    metadata: { labels: { app: ${name} } }
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: echo
        image: ktctl.local/echo:1
        imagePullPolicy: Never
        env:
        - { name: ECHO_NAME, value: ${name} }
        - { name: POD_NAME, valueFrom: { fieldRef: { fieldPath: metadata.name } } }
        ports: [{ name: http, containerPort: 8080 }, { name: tcp, containerPort: 9090 }]
        readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1 }
`;

const WORKLOAD = `
apiVersion: v1
kind: Namespace
metadata: { name: ${NS} }
---
${echoDeployment("bench-echo", 1)}
---
apiVersion: v1
kind: Service
metadata: { name: bench-echo, namespace: ${NS} }
spec:
  selector: { app: bench-echo }
  ports: [{ name: http, port: 80, targetPort: 8080 }, { name: tcp, port: 9090, targetPort: 9090 }]
---
${echoDeployment("fleet", endpointsEach)}
`;

/** N selector-less services, each with an EndpointSlice of the fleet's pods. */
function scaleObjects(fleetIps: string[]): string {
  const items: unknown[] = [{ apiVersion: "v1", kind: "Namespace", metadata: { name: SCALE_NS } }];
  for (let i = 0; i < serviceCount; i++) {
    const name = `svc-${String(i).padStart(3, "0")}`;
    items.push({ apiVersion: "v1", kind: "Service", metadata: { name, namespace: SCALE_NS }, spec: { ports: [{ name: "http", port: 80, targetPort: 8080 }] } });
    items.push({
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: { name: `${name}-1`, namespace: SCALE_NS, labels: { "kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": "ktctl-bench" } },
      addressType: "IPv4",
      ports: [{ name: "http", port: 8080, protocol: "TCP" }],
      endpoints: fleetIps.slice(0, endpointsEach).map((ip) => ({ addresses: [ip], conditions: { ready: true } })),
    });
  }
  return JSON.stringify({ apiVersion: "v1", kind: "List", items });
}

// ---- ktctl connect and kubectl port-forward ------------------------------------------------------

let home = "";
const running = new Set<RunningKtctl>();

interface Started {
  ktctl: RunningKtctl;
  /** What ktctl itself reports ("Connected ... in X s"). */
  reportedMs: number;
}

async function startConnect(namespace: string, extra: string[] = []): Promise<Started> {
  const ktctl = startKtctl(["-n", namespace, "connect", ...extra], { KTCTL_HOME: home });
  running.add(ktctl);
  const line = await ktctl.waitForOutput(/Connected to namespace \S+ in [\d.]+s/, 120_000);
  return { ktctl, reportedMs: Number(/in ([\d.]+)s/.exec(line)![1]) * 1000 };
}

async function stop(ktctl: RunningKtctl) {
  await ktctl.stop("SIGINT");
  running.delete(ktctl);
}

/** Starts connect while a client asks for `url` by name in a loop: the time until it first answers. */
async function connectToFirstAnswer(namespace: string, url: string, extra: string[] = []): Promise<{ ms: number; started: Started }> {
  // The clock is the bench's: from spawning ktctl to the probe's exit after its first answer.
  const probe = client("firstcurl", url, 90_000).then((answer) => ({ answer, at: performance.now() }));
  const t0 = performance.now();
  const started = await startConnect(namespace, extra);
  const { answer, at } = await probe;
  if (answer.firstAnswerMs === null) throw new Error(`no answer from ${url} through connect`);
  return { ms: at - t0, started };
}

async function startKubectl(pod: string): Promise<{ pid: number; stop(): Promise<void> }> {
  const proc = Bun.spawn(inLaptop(["kubectl", "--kubeconfig", KUBECONFIG, "-n", NS, "port-forward", `pod/${pod}`, `${KUBECTL_HTTP}:8080`, `${KUBECTL_TCP}:9090`]), {
    stdout: "pipe",
    stderr: "pipe",
  });
  const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
  let seen = "";
  while ((seen.match(/Forwarding from/g) ?? []).length < 2) {
    const { value, done } = await reader.read();
    if (done) throw new Error("kubectl port-forward exited");
    seen += new TextDecoder().decode(value);
  }
  return { pid: proc.pid, stop: async () => void (proc.kill(), await proc.exited) };
}

// ---- the run ------------------------------------------------------------------------------------

const results: Record<string, Record<string, number[]>> = {};
const record = (who: string, metric: string, value: number) => ((results[who] ??= {})[metric] ??= []).push(value);
const memory: Record<string, { rss: number; peak: number }> = {};
const scale: Record<string, unknown> = {};

await requireCluster();
home = await mkdtemp(join(tmpdir(), "ktctl-connect-bench-"));
try {
  const manifest = join(home, "workload.yaml");
  await writeFile(manifest, WORKLOAD);
  await kubectl(["wait", "--for=delete", `namespace/${NS}`, `namespace/${SCALE_NS}`, "--timeout=120s"], { timeoutMs: 130_000 });
  await kubectlOk(["apply", "-f", manifest]);
  await waitFor(["deployment/bench-echo", "deployment/fleet", "--for=condition=Available"], NS, 120);
  const [pod] = await podsOf("bench-echo", NS);
  const clusterIp = await clusterIpOf("bench-echo", NS);
  if (!pod) throw new Error("no bench-echo pod");
  const CONNECT = "ktctl connect (system)";
  const CONNECT_POD = "ktctl connect --via pod";
  const KUBECTL = "kubectl port-forward";
  const FORWARD = "ktctl forward";
  // Through the shadow, connect's own path: the tunnel's share of connect's figures (forward's
  // default goes straight to the pod, which connect does not).
  const forwardArgv = ["-n", NS, "forward", `pod/${pod.name}`, `${KUBECTL_HTTP + 1}:8080`, `${KUBECTL_TCP + 1}:9090`, "--via", "shadow"];

  /** The same three loads against a local port pair; the tunnel's cost without connect's capture. */
  const loads = async (who: string, http: string, tcp: string) => {
    record(who, "bulkMBps", (await client("bulk", tcp, mib)).mbPerSecond);
    const keep = await client("keepalive", http, requests);
    record(who, "keepaliveP50ms", keep.p50ms);
    record(who, "keepaliveP99ms", keep.p99ms);
  };

  for (let round = 1; round <= rounds; round++) {
    const order = [KUBECTL, CONNECT, FORWARD, CONNECT_POD];
    for (const who of [...order.slice(round % order.length), ...order.slice(0, round % order.length)]) {
      console.error(`round ${round}: ${who}`);
      if (who === FORWARD) {
        const ktctl = startKtctl(forwardArgv, { KTCTL_HOME: home });
        running.add(ktctl);
        try {
          await ktctl.waitForOutput(new RegExp(`Forwarding 127\\.0\\.0\\.1:${KUBECTL_TCP + 1}`), 60_000);
          await keepingOutputOnFailure(who, ktctl.output, () => loads(who, String(KUBECTL_HTTP + 1), String(KUBECTL_TCP + 1)));
        } finally {
          await stop(ktctl);
        }
      } else if (who === CONNECT || who === CONNECT_POD) {
        const { ms, started } = await connectToFirstAnswer(NS, "http://bench-echo/", ["--mode", "system", ...(who === CONNECT_POD ? ["--via", "pod"] : [])]);
        record(who, "firstAnswerMs", ms);
        record(who, "reportedReadyMs", started.reportedMs);
        try {
          await keepingOutputOnFailure(who, started.ktctl.output, () => loads(who, `${clusterIp}:80`, `${clusterIp}:9090`));
          if (round === rounds) {
            const own = rssKb(started.ktctl.proc.pid);
            if (own) memory[who === CONNECT ? `ktctl connect, ${NS} (1 service)` : `ktctl connect --via pod, ${NS} (1 service)`] = own;
            const shadow = who === CONNECT ? await shadowPid(NS) : undefined;
            const shadowMem = shadow ? rssKb(shadow) : undefined;
            if (shadowMem) memory["shadow pod (after the same load)"] = shadowMem;
          }
        } finally {
          await stop(started.ktctl);
        }
      } else {
        const probe = client("first", String(KUBECTL_HTTP), 60_000).then(() => performance.now());
        const t0 = performance.now();
        const forward = await startKubectl(pod.name);
        record(who, "firstAnswerMs", (await probe) - t0);
        try {
          await loads(who, String(KUBECTL_HTTP), String(KUBECTL_TCP));
          if (round === rounds) {
            const own = rssKb(forward.pid);
            if (own) memory["kubectl port-forward"] = own;
          }
        } finally {
          await forward.stop();
        }
      }
    }
  }

  // New connections: the three paths up at once, their batches interleaved; once with connect's
  // default path, once with --via pod (two system-mode connects would capture the same ranges).
  for (const who of [CONNECT, CONNECT_POD]) {
    console.error(`new connections, interleaved: ${who}`);
    const kubectlUp = await startKubectl(pod.name);
    const forwardUp = startKtctl(forwardArgv, { KTCTL_HOME: home });
    running.add(forwardUp);
    const connectUp = await startConnect(NS, ["--mode", "system", ...(who === CONNECT_POD ? ["--via", "pod"] : [])]);
    try {
      await forwardUp.waitForOutput(new RegExp(`Forwarding 127\\.0\\.0\\.1:${KUBECTL_TCP + 1}`), 60_000);
      const paths: [string, string][] = [
        [KUBECTL, String(KUBECTL_HTTP)],
        [who, `${clusterIp}:80`],
        [FORWARD, String(KUBECTL_HTTP + 1)],
      ];
      await freshInBatches(paths, Number(values.batches), (target, count) => client("fresh", target, count), record);
    } finally {
      await Promise.all([kubectlUp.stop(), stop(forwardUp), stop(connectUp.ktctl)]);
    }
  }

  // A shared shadow already running: a second connect only joins it.
  console.error("shared shadow");
  const holder = await startConnect(NS, ["--mode", "proxy", "--proxyPort", "0", "--shareShadow"]);
  try {
    for (let round = 1; round <= rounds; round++) {
      const { ms, started } = await connectToFirstAnswer(NS, "http://bench-echo/", ["--mode", "system", "--shareShadow"]);
      record("shared", "firstAnswerMs", ms);
      record("shared", "reportedReadyMs", started.reportedMs);
      await stop(started.ktctl);
    }
  } finally {
    await stop(holder.ktctl);
  }

  // Scale: N services, M endpoints.
  console.error(`scale: ${serviceCount} services, ${serviceCount * endpointsEach} endpoints`);
  const fleet = (await podsOf("fleet", NS)).map((p) => p.ip);
  if (fleet.length < endpointsEach) throw new Error(`only ${fleet.length} fleet pods`);
  const scaleFile = join(home, "scale.json");
  await writeFile(scaleFile, scaleObjects(fleet));
  const created = performance.now();
  await kubectlOk(["create", "-f", scaleFile], { timeoutMs: 600_000 });
  scale.createSeconds = (performance.now() - created) / 1000;
  const last = `svc-${String(serviceCount - 1).padStart(3, "0")}`;
  // kube-proxy programs the services on its own schedule: ask from inside the cluster until the last answers.
  await eventually(async () => {
    const r = await runInPod(["kecho", "client", "http", `http://${last}.${SCALE_NS}/`], "toolbox", "demo", { timeoutMs: 10_000 });
    if (r.code !== 0) throw new Error(r.stderr);
  }, 180_000, 500);
  const slices = await kubectlJson<any>(["-n", SCALE_NS, "get", "endpointslices"]);
  scale.services = serviceCount;
  scale.endpoints = slices.items.reduce((n: number, s: any) => n + (s.endpoints?.length ?? 0), 0);

  for (let round = 1; round <= rounds; round++) {
    console.error(`scale round ${round}`);
    const { ms, started } = await connectToFirstAnswer(SCALE_NS, `http://${last}/`, ["--mode", "system"]);
    record("scale", "firstAnswerMs", ms);
    record("scale", "reportedReadyMs", started.reportedMs);
    try {
      const ready = rssKb(started.ktctl.proc.pid);
      if (ready) record("scale", "readyRssKb", ready.rss);
      await Bun.sleep(Number(values.idle) * 1000);
      const idle = rssKb(started.ktctl.proc.pid);
      if (idle) record("scale", "idleRssKb", idle.rss);
      if (round === rounds) {
        const targets = Array.from({ length: concurrency }, (_, i) => `svc-${String(i).padStart(3, "0")}:80`).join(",");
        const burst = await client("concurrent", targets, 5);
        scale.concurrent = burst;
        const after = rssKb(started.ktctl.proc.pid);
        if (after) memory[`ktctl connect, ${SCALE_NS} (${serviceCount} services), after ${concurrency} connections`] = after;
        const shadow = await shadowPid(SCALE_NS);
        const shadowMem = shadow ? rssKb(shadow) : undefined;
        if (shadowMem) memory[`shadow pod, after ${concurrency} connections`] = shadowMem;
      }
    } finally {
      await stop(started.ktctl);
    }
  }
} finally {
  for (const ktctl of running) await ktctl.stop("SIGINT").catch(() => undefined);
  await kubectl(["delete", "namespace", NS, SCALE_NS, "--ignore-not-found", "--timeout=120s"], { timeoutMs: 150_000 });
  await rm(home, { recursive: true, force: true });
}

// ---- the report ---------------------------------------------------------------------------------

const k = results["kubectl port-forward"]!;
const c = results["ktctl connect (system)"]!;
const f = results["ktctl forward"] ?? {};
const p = results["ktctl connect --via pod"] ?? {};
const m = (xs: number[] | undefined) => (xs?.length ? median(xs) : NaN);
// Ratios say how much better ktctl connect is than kubectl (>1: better), whichever way the metric runs.
const rows: [string, string, boolean][] = [
  ["bulk echo throughput (MB/s, higher is better)", "bulkMBps", true],
  ["request on one connection, p50 (ms)", "keepaliveP50ms", false],
  ["request on one connection, p99 (ms)", "keepaliveP99ms", false],
  ["new connection per request, p50 (ms; median of interleaved batches)", "freshP50ms", false],
  ["new connection per request, p99 (ms; median of interleaved batches)", "freshP99ms", false],
];
const s = results.shared ?? {};
const sc = results.scale ?? {};
const spread = (xs: number[] | undefined) => (xs?.length ? `${(median(xs) / 1000).toFixed(2)} s (${(Math.min(...xs) / 1000).toFixed(2)}-${(Math.max(...xs) / 1000).toFixed(2)})` : "-");

console.log(`\n${rounds} rounds, ${mib} MiB bulk, ${requests} requests; connect to ClusterIP ${"bench-echo"} vs kubectl port-forward to its one pod; medians over rounds`);
console.log(
  "| metric | kubectl port-forward | ktctl connect | connect advantage (x) | ktctl connect --via pod | --via pod advantage (x) | ktctl forward --via shadow, same pod (the tunnel alone) |\n|---|---|---|---|---|---|---|",
);
for (const [label, key, higherIsBetter] of rows) {
  const [kv, cv, pv, fv] = [m(k[key]), m(c[key]), m(p[key]), m(f[key])];
  const advantage = (v: number) => (higherIsBetter ? v / kv : kv / v).toFixed(2);
  console.log(`| ${label} | ${kv.toFixed(2)} | ${cv.toFixed(2)} | ${advantage(cv)} | ${pv.toFixed(2)} | ${advantage(pv)} | ${fv.toFixed(2)} |`);
}
console.log("\n| start to first successful request | median (min-max) |\n|---|---|");
console.log(`| ktctl connect, new shadow, by name (curl http://bench-echo/) | ${spread(c.firstAnswerMs)} |`);
console.log(`| - as ktctl reports it ("Connected ... in") | ${spread(c.reportedReadyMs)} |`);
console.log(`| ktctl connect --via pod, no shadow, by name | ${spread(p.firstAnswerMs)} |`);
console.log(`| ktctl connect --shareShadow, shadow already running, by name | ${spread(s.firstAnswerMs)} |`);
console.log(`| ktctl connect, ${serviceCount} services / ${scale.endpoints} endpoints, by name (${`svc-${String(serviceCount - 1).padStart(3, "0")}`}) | ${spread(sc.firstAnswerMs)} |`);
console.log(`| kubectl port-forward, to 127.0.0.1 (no name) | ${spread(k.firstAnswerMs)} |`);
console.log("\n| process | RSS (MiB) | peak RSS (MiB) |\n|---|---|---|");
for (const [name, mem] of Object.entries(memory)) console.log(`| ${name} | ${(mem.rss / 1024).toFixed(1)} | ${(mem.peak / 1024).toFixed(1)} |`);
if (sc.readyRssKb) console.log(`\nktctl RSS at its first answer with ${serviceCount} services: median ${(median(sc.readyRssKb) / 1024).toFixed(1)} MiB`);
if (sc.idleRssKb) console.log(`ktctl RSS after ${values.idle} s idle with ${serviceCount} services: median ${(median(sc.idleRssKb) / 1024).toFixed(1)} MiB`);
const burst = scale.concurrent as any;
if (burst) {
  console.log(
    `${burst.connections} connections to ${burst.connections} services by name, opened together (${burst.openAllMs.toFixed(0)} ms) and held open, 5 requests each: ` +
      `${burst.requests} answered, ${burst.errors} errors, p50 ${burst.p50ms?.toFixed(2)} ms, p99 ${burst.p99ms?.toFixed(2)} ms, ${burst.seconds.toFixed(2)} s in all`,
  );
}
console.log(`creating ${serviceCount} services + slices with kubectl: ${(scale.createSeconds as number).toFixed(1)} s`);
console.log(JSON.stringify({ results, memory, scale, ktctl: KTCTL.join(" ") }));
