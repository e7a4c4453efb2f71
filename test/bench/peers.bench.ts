// ktctl beside the tools our users compare it with, on the same workloads in one run, all from the
// laptop namespace: kt-connect v0.3.7 (connect, exchange, mesh with its nginx router) and kubefwd.
// Both are built from their public source by test/bench/anchors/build.sh into KTCTL_BENCH_ANCHORS
// (nothing of them is committed); without it this script prints why and exits 3 (skipped).
//   connect: start to the first answer BY NAME (curl, a lookup per attempt), then bulk TCP echo,
//            requests on one connection and one connection per request to the address the name
//            resolves to (looked up once), through ktctl connect, kt-connect connect and kubefwd;
//            then the same start-up with N services (kubefwd forwards each; connect routes them);
//   exchange: start to the first in-cluster request answered by the laptop, and sequential
//            requests/s from a pod with a new connection each, ktctl against kt-connect;
//   mesh:    unmarked HTTP/1.1 requests/s from a pod through ktctl's router and kt-connect's nginx
//            router, each beside its direct path (ktctl's companion, kt-connect's stuntman).
// Memory: ktctl and its shadow idle (right after ready) and after the loads.
//   bun test/bench/peers.bench.ts [--rounds 3] [--mib 64] [--requests 300] [--seconds 5] [--services 500]
//                                 [--only connect,exchange,mesh,scale]
// Prints Markdown and one JSON line (PeersOutput of test/bench/report.ts).

import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { CTR, KTCTL, KUBECONFIG, REPO, kubectl, kubectlJson, kubectlOk, requireCluster, run, runInPod, startWatched, type RunningKtctl } from "../e2e/harness.ts";
import { BENCH_LAPTOP_NS, KT_ROUTER_IMAGE, KT_SHADOW_IMAGE, anchorBinary, anchorsDir, ktImageArchives } from "./anchors/paths.ts";
import { keepOutput, rssKbOf, shadowPidIn } from "./processes.ts";
import type { PeersOutput } from "./report.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    mib: { type: "string", default: "64" },
    requests: { type: "string", default: "300" },
    seconds: { type: "string", default: "5" },
    services: { type: "string", default: "500" },
    only: { type: "string", default: "connect,exchange,mesh,scale" },
  },
});
const parts = new Set(values.only.split(","));
const rounds = Number(values.rounds);
const mib = Number(values.mib);
const requests = Number(values.requests);
const seconds = Number(values.seconds);
const serviceCount = Number(values.services);

const ktBin = anchorBinary("kt-ktctl");
const fwdBin = anchorBinary("kubefwd");
if ("missing" in ktBin && "missing" in fwdBin) {
  console.log(`skipped: ${ktBin.missing}`);
  process.exit(3);
}
await requireCluster();
if ("path" in ktBin) await ensureKtImages();

/**
 * kt-connect's images in the node's containerd: a test cluster started again from its cache has
 * only its own images, and kt-connect's pods would then fail to start ("kt-rectifier ... failed to
 * start") after their pull times out.
 */
async function ensureKtImages(): Promise<void> {
  const present = (await run([...CTR, "images", "ls", "-q"])).stdout.split("\n");
  for (const { image, archive } of ktImageArchives(anchorsDir()!)) {
    if (present.includes(image)) continue;
    const imported = await run([...CTR, "images", "import", "--no-unpack=false", archive], { timeoutMs: 120_000 });
    if (imported.code !== 0) throw new Error(`importing ${archive} into the node's containerd: ${imported.stderr.trim()}`);
    console.error(`imported ${image} from ${archive}`);
  }
}

const NS = "ktctl-peers";
const SCALE_NS = "ktctl-peers-scale";
const CLIENT = `${REPO}/test/bench/load-client.ts`;
const LAPTOP_PORT = 28280;
const STATS_PORT = 28281;
// Every tool runs in a laptop namespace of the benchmarks' own (anchors/netns.sh), built like the
// test cluster's: kt-connect's routes and kubefwd's hosts entries cannot meet those of tests running
// meanwhile in ktctl-laptop (a route left there by another run stops kt-connect routing services).
const LAPTOP = BENCH_LAPTOP_NS;
const NETNS_SCRIPT = `${REPO}/test/bench/anchors/netns.sh`;
const HOSTS = `/etc/netns/${LAPTOP}/hosts`;
const inLaptop = (argv: string[]): string[] => ["ip", "netns", "exec", LAPTOP, ...argv];
const runInLaptop = (argv: string[]) => run(inLaptop(argv));
const startKtctl = (args: string[], env: Record<string, string>) => startWatched(inLaptop([...KTCTL, "--kubeconfig", KUBECONFIG, ...args]), env);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const out: PeersOutput = { connect: {}, scale: { services: serviceCount, ms: {} }, exchange: {}, mesh: {}, memory: {}, unavailable: {} };
const record = (who: string, metric: string, value: number) => ((out.connect[who] ??= {})[metric] ??= []).push(value);

// ---- the workload ---------------------------------------------------------------------------------
const deployment = (name: string, ns: string, replicas = 1, labels: Record<string, string> = { app: name }) => ({
  apiVersion: "apps/v1",
  kind: "Deployment",
  metadata: { name, namespace: ns },
  spec: {
    replicas,
    selector: { matchLabels: labels },
    template: {
      metadata: { labels },
      spec: {
        terminationGracePeriodSeconds: 1,
        containers: [
          {
            name: "echo",
            image: "ktctl.local/echo:1",
            imagePullPolicy: "Never",
            env: [{ name: "ECHO_NAME", value: name }, { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } }],
            ports: [{ name: "http", containerPort: 8080 }, { name: "tcp", containerPort: 9090 }],
            readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1 },
          },
        ],
      },
    },
  },
});
const service = (name: string, ns: string, selector: Record<string, string> = { app: name }) => ({
  apiVersion: "v1",
  kind: "Service",
  metadata: { name, namespace: ns },
  spec: { selector, ports: [{ name: "http", port: 80, targetPort: 8080 }, { name: "tcp", port: 9090, targetPort: 9090 }] },
});
// bench-echo: connect; ex-ktctl / ex-kt: exchange; mesh-ktctl / mesh-kt: mesh. One per tool, so
// neither tool's leftovers can touch the other's figures.
const WORKLOADS = ["bench-echo", "ex-ktctl", "ex-kt", "mesh-ktctl", "mesh-kt"];

async function deployWorkload(): Promise<void> {
  await kubectl(["wait", "--for=delete", `namespace/${NS}`, `namespace/${SCALE_NS}`, "--timeout=120s"], { timeoutMs: 130_000 });
  const items: unknown[] = [{ apiVersion: "v1", kind: "Namespace", metadata: { name: NS } }];
  for (const name of WORKLOADS) items.push(deployment(name, NS), service(name, NS));
  items.push({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "toolbox", namespace: NS },
    spec: { terminationGracePeriodSeconds: 0, containers: [{ name: "toolbox", image: "ktctl.local/toolbox:1", imagePullPolicy: "Never" }] },
  });
  await kubectlOk(["apply", "-f", "-"], { stdin: JSON.stringify({ apiVersion: "v1", kind: "List", items }) });
  await kubectlOk(["-n", NS, "wait", "pod/toolbox", "--for=condition=Ready", "--timeout=120s"], { timeoutMs: 130_000 });
  await kubectlOk(["-n", NS, "wait", ...WORKLOADS.map((n) => `deployment/${n}`), "--for=condition=Available", "--timeout=120s"], { timeoutMs: 130_000 });
}

/** N services selecting the same 4 pods (kubefwd forwards a service only when it selects pods). */
async function deployScale(): Promise<void> {
  const items: unknown[] = [{ apiVersion: "v1", kind: "Namespace", metadata: { name: SCALE_NS } }, deployment("fleet", SCALE_NS, 4, { app: "fleet" })];
  for (let i = 0; i < serviceCount; i++) items.push(service(`svc-${String(i).padStart(3, "0")}`, SCALE_NS, { app: "fleet" }));
  await kubectlOk(["apply", "-f", "-"], { stdin: JSON.stringify({ apiVersion: "v1", kind: "List", items }), timeoutMs: 600_000 });
  await kubectlOk(["-n", SCALE_NS, "wait", "deployment/fleet", "--for=condition=Available", "--timeout=120s"], { timeoutMs: 130_000 });
  // The cluster programs 500 new services on its own schedule: the clock starts once the last one
  // answers from inside the cluster, so no tool is charged for kube-proxy's work.
  const last = `svc-${String(serviceCount - 1).padStart(3, "0")}`;
  await until(async () => (await runInPod(["kecho", "client", "http", `http://${last}.${SCALE_NS}/`], "toolbox", NS, { timeoutMs: 10_000 })).code === 0, 180_000);
}

// ---- the clients --------------------------------------------------------------------------------
async function client(mode: string, target: string, amount: number): Promise<any> {
  const r = await run(inLaptop(["bun", CLIENT, mode, target, String(amount)]), { timeoutMs: 300_000 });
  if (r.code !== 0) throw new Error(`load client ${mode} ${target}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

/** Starts a tool while a client asks for `url` by name in a loop: ms from spawn to the first answer. */
async function toFirstAnswer(url: string, start: () => RunningKtctl): Promise<{ ms: number; tool: RunningKtctl }> {
  const probe = client("firstcurl", url, 180_000).then((answer) => ({ answer, at: performance.now() }));
  const t0 = performance.now();
  const tool = start();
  const { answer, at } = await probe;
  if (answer.firstAnswerMs === null) {
    await tool.stop("SIGINT");
    // The tool's own complaints say why; distinct ones, without colours and time stamps.
    const complaints = [...new Set(tool.output().replace(/\x1b\[[0-9;]*m/g, "").split("\n").filter((l) => /WARN|ERR|error/i.test(l)).map((l) => l.replace(/^\S*\[[\d:]+\]\s*/, "").trim()))];
    throw new Error(`no answer from ${url} within 180 s; it said: ${complaints.slice(0, 3).join(" | ") || tool.output().slice(-500)}`);
  }
  return { ms: at - t0, tool };
}

// ---- the tools ----------------------------------------------------------------------------------
const netns = await run([NETNS_SCRIPT, "up"]);
if (netns.code !== 0) throw new Error(`${NETNS_SCRIPT} up: ${netns.stderr}`);
const home = mkdtempSync(join(tmpdir(), "ktctl-peers-"));
const ktKubeconfig = join(home, "kubeconfig");
copyFileSync(KUBECONFIG, ktKubeconfig);
// kt-connect keeps its state (keys, pid files) under $HOME/.kt; a home of its own keeps it apart.
const ktEnv = { HOME: home };
const ktArgs = (args: string[]) => ["--kubeconfig", ktKubeconfig, "-n", NS, "--image", KT_SHADOW_IMAGE, "--podCreationTimeout", "120", ...args];
const startKt = (args: string[]) => startWatched(inLaptop(["path" in ktBin ? ktBin.path : "kt-ktctl", ...ktArgs(args)]), ktEnv);
const hostsBefore = readFileSync(HOSTS, "utf8");
/** kubefwd and kt-connect's hosts mode write the laptop's /etc/hosts: put it back after each. */
const restoreHosts = () => writeFileSync(HOSTS, hostsBefore);

interface Tool {
  name: string;
  /** Starts it; resolves once a request to `url` by name is answered. */
  start(namespace: string, url: string): Promise<{ ms: number; tool: RunningKtctl }>;
  /** The host name the loads use for service NAME. */
  host(name: string, namespace: string): string;
}
const tools: Tool[] = [
  {
    name: "ktctl connect",
    start: (namespace, url) => toFirstAnswer(url, () => startKtctl(["-n", namespace, "connect", "--mode", "system"], { KTCTL_HOME: home })),
    host: (name, namespace) => `${name}.${namespace}`,
  },
  {
    // Straight to the pods through their port-forwards, as kubefwd goes; no shadow pod.
    name: "ktctl connect --via pod",
    start: (namespace, url) => toFirstAnswer(url, () => startKtctl(["-n", namespace, "connect", "--mode", "system", "--via", "pod"], { KTCTL_HOME: home })),
    host: (name, namespace) => `${name}.${namespace}`,
  },
];
if ("path" in ktBin) {
  tools.push({
    name: "kt-connect connect",
    // tun2socks and hosts-file DNS: the modes that need nothing but root in the laptop namespace.
    start: (namespace, url) =>
      toFirstAnswer(url, () =>
        startWatched(inLaptop([ktBin.path, "connect", "--kubeconfig", ktKubeconfig, "-n", namespace, "--image", KT_SHADOW_IMAGE, "--podCreationTimeout", "120", "--dnsMode", "hosts"]), ktEnv),
      ),
    host: (name, namespace) => `${name}.${namespace}`,
  });
} else out.unavailable["kt-connect"] = ktBin.missing;
if ("path" in fwdBin) {
  tools.push({
    name: "kubefwd",
    start: (namespace, url) => toFirstAnswer(url, () => startWatched(inLaptop([fwdBin.path, "svc", "--kubeconfig", KUBECONFIG, "-n", namespace]), { HOME: home })),
    host: (name, namespace) => `${name}.${namespace}`,
  });
} else out.unavailable.kubefwd = fwdBin.missing;

async function stopTool(tool: RunningKtctl): Promise<void> {
  await tool.stop("SIGINT");
  restoreHosts();
}

// ---- connect ------------------------------------------------------------------------------------
async function connectRounds(): Promise<void> {
  for (let round = 1; round <= rounds; round++) {
    const order = tools.map((_, i) => tools[(i + round - 1) % tools.length]!);
    for (const t of order) {
      console.error(`connect round ${round}: ${t.name}`);
      const host = t.host("bench-echo", NS);
      let started: { ms: number; tool: RunningKtctl };
      try {
        started = await t.start(NS, `http://${host}/`);
      } catch (e) {
        out.unavailable[t.name] = `${t.name}: ${String(e).slice(0, 1500)}`;
        restoreHosts();
        continue;
      }
      try {
        record(t.name, "firstAnswerMs", started.ms);
        if (t.name === "ktctl connect" && round === rounds) {
          const atFirstAnswer = rssKbOf(started.tool.proc.pid);
          if (atFirstAnswer) out.memory["ktctl connect, at its first answer"] = atFirstAnswer.rss;
          const shadow = await shadowPidIn(NS);
          const shadowAtStart = shadow ? rssKbOf(shadow) : undefined;
          if (shadowAtStart) out.memory["ktctl shadow, at connect's first answer"] = shadowAtStart.rss;
        }
        // The name is resolved once, as a client with a resolver cache does: the loads measure the
        // tunnel, not a lookup per connection (/etc/hosts for kubefwd and kt-connect, ktctl's DNS).
        const address = (await runInLaptop(["getent", "hosts", host])).stdout.trim().split(/\s+/)[0] || host;
        // kubefwd opens its forwards port by port: the HTTP port can answer before the TCP one.
        await until(async () => (await runInLaptop(["timeout", "1", "bash", "-c", `</dev/tcp/${address}/9090`])).code === 0, 30_000);
        await client("bulk", `${address}:9090`, 4); // warm-up, the same for every tool
        await client("keepalive", `${address}:80`, 50);
        record(t.name, "bulkMBps", (await client("bulk", `${address}:9090`, mib)).mbPerSecond);
        const keep = await client("keepalive", `${address}:80`, requests);
        record(t.name, "keepaliveP50ms", keep.p50ms);
        const fresh = await client("fresh", `${address}:80`, Math.min(requests, 100));
        record(t.name, "freshP50ms", fresh.p50ms);
        if (round === rounds) {
          const own = rssKbOf(started.tool.proc.pid);
          if (own) out.memory[`${t.name}, after the loads`] = own.peak;
          if (t.name === "ktctl connect") {
            const shadow = await shadowPidIn(NS);
            const mem = shadow ? rssKbOf(shadow) : undefined;
            if (mem) out.memory["ktctl shadow, after the loads (peak)"] = mem.peak;
          }
        }
      } catch (e) {
        const kept = keepOutput(t.name, started.tool.output);
        out.unavailable[`${t.name} loads`] = `${String(e).slice(0, 1500)} (its output: ${kept})`;
      } finally {
        await stopTool(started.tool);
      }
    }
  }
}

async function scaleRounds(): Promise<void> {
  const last = `svc-${String(serviceCount - 1).padStart(3, "0")}`;
  for (const t of tools.filter((t) => t.name !== "kt-connect connect")) {
    console.error(`scale (${serviceCount} services): ${t.name}`);
    try {
      const started = await t.start(SCALE_NS, `http://${t.host(last, SCALE_NS)}/`);
      (out.scale.ms[t.name] ??= []).push(started.ms);
      await stopTool(started.tool);
    } catch (e) {
      out.unavailable[`${t.name}, ${serviceCount} services`] = String(e).slice(0, 1500);
      restoreHosts();
    }
  }
}

// ---- exchange -----------------------------------------------------------------------------------
const serverScript = `
const stamps = [];
Bun.serve({ port: ${LAPTOP_PORT}, hostname: "127.0.0.1", fetch() { stamps.push(Date.now()); return Response.json({ pod: "laptop" }); } });
Bun.serve({ port: ${STATS_PORT}, hostname: "127.0.0.1", fetch(req) {
  const since = Number(new URL(req.url).searchParams.get("since") ?? 0);
  const first = stamps.find((t) => t >= since);
  return Response.json({ first: first ?? null });
} });`;

async function firstLaptopAnswerSince(since: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await runInLaptop(["curl", "-s", "--max-time", "2", `http://127.0.0.1:${STATS_PORT}/?since=${since}`]);
    const first = JSON.parse(r.stdout || '{"first":null}').first;
    if (first) return first;
    if (Date.now() > deadline) throw new Error("no request reached the laptop");
    await Bun.sleep(100); // polling the laptop server's stamps, not standing in for readiness
  }
}

/** A pod asking `url` in a loop while the exchange starts; stopped with stop(). */
function askInLoop(url: string): { stop(): Promise<void> } {
  const marker = `/tmp/peers-stop-${Date.now()}`;
  const loop = kubectl(["-n", NS, "exec", "toolbox", "--", "sh", "-c", `rm -f ${marker}; while [ ! -e ${marker} ]; do timeout 2 wget -qO- ${url} >/dev/null 2>&1; done; rm -f ${marker}`], { timeoutMs: 600_000 });
  return { stop: async () => void (await runInPod(["touch", marker], "toolbox", NS), await loop) };
}

/** Sequential requests from the toolbox pod, a new connection each (busybox wget): req/s and mean ms. */
async function podLoad(url: string, total: number): Promise<{ rps: number; meanMs: number }> {
  const script = `start=$(cut -d' ' -f1 /proc/uptime); i=0; while [ $i -lt ${total} ]; do wget -qO- ${url} >/dev/null 2>&1; i=$((i+1)); done; end=$(cut -d' ' -f1 /proc/uptime); echo "$start $end"`;
  const r = await runInPod(["sh", "-c", script], "toolbox", NS, { timeoutMs: 600_000 });
  const [start, end] = r.stdout.trim().split(/\s+/).map(Number) as [number, number];
  return { rps: total / (end - start), meanMs: ((end - start) * 1000) / total };
}

async function exchangeRounds(): Promise<void> {
  const server = Bun.spawn(inLaptop(["bun", "-e", serverScript]), { stdout: "ignore", stderr: "inherit" });
  try {
    await until(async () => (await runInLaptop(["curl", "-sf", "--max-time", "2", `http://127.0.0.1:${STATS_PORT}/`])).code === 0);
    const sides: { name: string; service: string; start: () => RunningKtctl }[] = [
      {
        name: "ktctl",
        service: "ex-ktctl",
        start: () => startKtctl(["-n", NS, "exchange", "svc/ex-ktctl", "--mode", "selector", "--expose", `${LAPTOP_PORT}:80`], { KTCTL_HOME: home }),
      },
    ];
    if ("path" in ktBin) {
      sides.push({ name: "kt-connect", service: "ex-kt", start: () => startKt(["exchange", "ex-kt", "--mode", "selector", "--expose", `${LAPTOP_PORT}:8080`]) });
      // kt-connect's --expose names the service's target port (ktctl's, the service port).
    }
    for (let round = 1; round <= rounds; round++) {
      for (const side of round % 2 ? sides : [...sides].reverse()) {
        console.error(`exchange round ${round}: ${side.name}`);
        const url = `http://${side.service}.${NS}/`;
        const asking = askInLoop(url);
        const t0 = Date.now();
        const tool = side.start();
        try {
          const first = await firstLaptopAnswerSince(t0, 180_000);
          await asking.stop();
          ((out.exchange[side.name] ??= { firstAnswerMs: [] }).firstAnswerMs).push(first - t0);
          if (round === 1) {
            const load = await podLoad(url, requests);
            Object.assign(out.exchange[side.name]!, load);
          }
        } catch (e) {
          await asking.stop();
          out.unavailable[`${side.name} exchange`] = `${String(e).slice(0, 500)}\n${tool.output().slice(-1500)}`;
        } finally {
          await tool.stop("SIGINT");
        }
      }
    }
    // The original pods' figure for scale: the same load straight to a pod of ex-ktctl.
    const pod = (await kubectlJson(["-n", NS, "get", "pods", "-l", "app=ex-ktctl"])).items.find((p: any) => !p.metadata.deletionTimestamp);
    out.exchange["original pod"] = { firstAnswerMs: [], ...(await podLoad(`http://${pod.status.podIP}:8080/`, requests)) };
  } finally {
    server.kill();
    await server.exited;
  }
}

async function until(check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error("timed out");
    await Bun.sleep(100); // polling a condition that has no event to wait on
  }
}

// ---- mesh ---------------------------------------------------------------------------------------
async function meshRounds(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "ktctl-peers-mesh-"));
  const started: RunningKtctl[] = [];
  try {
    const compiled = await run(["bun", "build", "--compile", join(REPO, "test/bench/mesh-load.ts"), "--outfile", join(dir, "mesh-load")]);
    if (compiled.code !== 0) throw new Error(`cannot compile the load generator: ${compiled.stderr}`);
    await run(["chmod", "755", dir, join(dir, "mesh-load")]);
    const ours = startKtctl(["-n", NS, "mesh", "mesh-ktctl", "--expose", `${LAPTOP_PORT}:80`, "--versionMark", "bench"], { KTCTL_HOME: home });
    started.push(ours);
    await ours.waitForOutput(/\bMARK \S/, 180_000);
    const targets: Record<string, string> = { "ktctl router": `mesh-ktctl.${NS}:80`, "direct (ktctl companion)": `mesh-ktctl-ktctl-original.${NS}:80` };
    if ("path" in ktBin) {
      const theirs = startKt(["mesh", "mesh-kt", "--mode", "auto", "--expose", `${LAPTOP_PORT}:8080`, "--versionMark", "bench", "--routerImage", KT_ROUTER_IMAGE]);
      started.push(theirs);
      try {
        await theirs.waitForOutput(/Now you can access your service/, 180_000);
        targets["kt-connect router"] = `mesh-kt.${NS}:80`;
        targets["direct (kt-connect stuntman)"] = `mesh-kt-kt-stuntman.${NS}:80`;
      } catch (e) {
        out.unavailable["kt-connect mesh"] = String(e).slice(0, 2000);
      }
    }
    // The load runs in a pod of ktctl's shadow image, which carries what a compiled Bun program links.
    const image = (await kubectlJson(["-n", NS, "get", "deployment", "mesh-ktctl-ktctl-router"])).spec.template.spec.containers[0].image;
    const loadPod = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "mesh-load", namespace: NS },
      spec: {
        terminationGracePeriodSeconds: 0,
        containers: [{ name: "load", image, imagePullPolicy: "IfNotPresent", command: ["/bench/mesh-load", "idle"], volumeMounts: [{ name: "bench", mountPath: "/bench", readOnly: true }] }],
        volumes: [{ name: "bench", hostPath: { path: dir, type: "Directory" } }],
      },
    };
    await kubectlOk(["apply", "-f", "-"], { stdin: JSON.stringify(loadPod) });
    await kubectlOk(["-n", NS, "wait", "pod/mesh-load", "--for=condition=Ready", "--timeout=60s"], { timeoutMs: 70_000 });
    const load = async (target: string, ms: number) => {
      const r = await kubectl(["-n", NS, "exec", "mesh-load", "--", "/bench/mesh-load", "h1", target, "1", String(ms)], { timeoutMs: ms + 60_000 });
      if (r.code !== 0) throw new Error(`mesh-load ${target} (exit ${r.code}): ${r.stderr} ${r.stdout}`);
      return JSON.parse(r.stdout.trim().split("\n").pop()!) as { rps: number; p50ms: number; errors: number };
    };
    const runs: Record<string, { rps: number; p50ms: number }[]> = {};
    for (const target of Object.values(targets)) await load(target, 1000); // warm-up
    for (let round = 0; round < rounds; round++) {
      for (const [name, target] of Object.entries(targets)) (runs[name] ??= []).push(await load(target, seconds * 1000));
    }
    for (const [name, list] of Object.entries(runs)) out.mesh[name] = { rps: median(list.map((r) => r.rps)), p50ms: median(list.map((r) => r.p50ms)), rpsRounds: list.map((r) => r.rps) };
  } finally {
    for (const tool of started) await tool.stop("SIGINT");
    await kubectl(["-n", NS, "delete", "pod", "mesh-load", "--ignore-not-found", "--wait=false"]);
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- the run ------------------------------------------------------------------------------------
try {
  await deployWorkload();
  if (parts.has("connect")) await connectRounds();
  if (parts.has("exchange")) await exchangeRounds().catch((e) => void (out.unavailable.exchange = String(e).slice(0, 1500)));
  if (parts.has("mesh")) await meshRounds().catch((e) => void (out.unavailable.mesh = String(e).slice(0, 1500)));
  if (parts.has("scale")) {
    console.error(`scale: ${serviceCount} services`);
    await deployScale();
    await scaleRounds();
  }
} finally {
  restoreHosts();
  await kubectl(["delete", "namespace", NS, SCALE_NS, "--ignore-not-found", "--wait=false"]);
  if (!process.env.KTCTL_E2E_LAPTOP_NS) await run([NETNS_SCRIPT, "down"]);
  rmSync(home, { recursive: true, force: true });
}

const cell = (xs: number[] | undefined) => (xs?.length ? median(xs).toFixed(2) : "-");
const names = Object.keys(out.connect);
console.log(`\n${rounds} rounds, ${mib} MiB bulk, ${requests} requests, all by name from the laptop namespace; medians`);
console.log(`| metric | ${names.join(" | ")} |\n|---|${names.map(() => "---|").join("")}`);
for (const [label, key] of [
  ["start to first answer (ms)", "firstAnswerMs"],
  ["bulk echo (MB/s)", "bulkMBps"],
  ["request on one connection, p50 (ms)", "keepaliveP50ms"],
  ["new connection per request, p50 (ms)", "freshP50ms"],
] as const) {
  console.log(`| ${label} | ${names.map((n) => cell(out.connect[n]![key])).join(" | ")} |`);
}
console.log(`\n| start to first answer with ${serviceCount} services (ms) | ${Object.entries(out.scale.ms).map(([n, xs]) => `${n}: ${cell(xs)}`).join(" | ")} |`);
console.log("\n| exchange | start to first answer by the laptop (ms) | req/s from a pod | mean ms |\n|---|---|---|---|");
for (const [name, e] of Object.entries(out.exchange)) console.log(`| ${name} | ${cell(e.firstAnswerMs)} | ${e.rps?.toFixed(0) ?? "-"} | ${e.meanMs?.toFixed(2) ?? "-"} |`);
console.log("\n| mesh, unmarked, 1 connection | req/s | p50 ms |\n|---|---|---|");
for (const [name, m] of Object.entries(out.mesh)) console.log(`| ${name} | ${m.rps.toFixed(0)} (rounds: ${m.rpsRounds?.map((r) => r.toFixed(0)).join(", ")}) | ${m.p50ms.toFixed(3)} |`);
console.log("\n| process | MiB |\n|---|---|");
for (const [name, kb] of Object.entries(out.memory)) console.log(`| ${name} | ${(kb / 1024).toFixed(1)} |`);
for (const [what, why] of Object.entries(out.unavailable)) console.log(`\n- could not run: ${what}: ${why.replace(/\n/g, " / ")}`);
console.log(JSON.stringify(out));
process.exit(0);
