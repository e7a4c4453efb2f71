// The mesh benchmark: from a pod, in the same run, requests per second and latency of UNMARKED
// requests to a meshed service (service address -> router -> original pods) against the same
// requests straight to the original pods (the companion service, which selects them exactly as
// the service did before the mesh), plus the router's memory under that load and the time a route
// change takes to reach the router.
//   bun test/bench/mesh.bench.ts [--seconds 5] [--rounds 3]
// Needs the test cluster (test/cluster/up) with the current shadow image. Prints a Markdown table
// and one JSON line; docs/benchmarks.md keeps the figures.
//   KTCTL_BENCH_BASELINE_ARGV='["/path/to/older/ktctl"]' meshes a second, identical service with
// that ktctl (so with its router image) and measures its router in the same rounds, beside this
// one: a before/after of a router change from one run. kt-connect's nginx router, the anchor, is
// measured by peers.bench.ts (`--only mesh`).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { connectKube } from "../../core/kube/index.ts";
import { adminRequest } from "../../plugins/mesh/router-admin.ts";
import { DEMO_NS, KUBECONFIG, REPO, inLaptop, kubectl, kubectlJson, kubectlOk, requireCluster, run } from "../e2e/harness.ts";
import { startKtctl, stopAllKtctl } from "../e2e/exchange-harness.ts";
import { deployMeshWorkload, removeMeshWorkload, startLaptopService } from "../e2e/mesh-harness.ts";

const SERVICE = "mesh-bench";
const BASELINE_SERVICE = "mesh-bench-base";
const baselineArgv: string[] | undefined = process.env.KTCTL_BENCH_BASELINE_ARGV ? JSON.parse(process.env.KTCTL_BENCH_BASELINE_ARGV) : undefined;
const LOAD_POD = "mesh-bench-load";
const LAPTOP_PORT = 18090;
const ADMIN_PORT = 2224;

const { values } = parseArgs({ options: { seconds: { type: "string", default: "5" }, rounds: { type: "string", default: "3" } } });
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);

interface LoadResult {
  mode: string;
  target: string;
  concurrency: number;
  requests: number;
  errors: number;
  rps: number;
  p50ms: number;
  p90ms: number;
  p99ms: number;
  maxMs: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function load(args: string[]): Promise<LoadResult> {
  const r = await kubectl(["-n", DEMO_NS, "exec", LOAD_POD, "--", "/bench/mesh-load", ...args], { timeoutMs: (seconds + 60) * 1000 });
  if (r.code !== 0) throw new Error(`load ${args.join(" ")} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

async function startLoadPod(dir: string): Promise<void> {
  const image = (await kubectlJson(["-n", DEMO_NS, "get", "deployment", `${SERVICE}-ktctl-router`])).spec.template.spec.containers[0].image;
  const pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: LOAD_POD, namespace: DEMO_NS, labels: { app: LOAD_POD } },
    spec: {
      terminationGracePeriodSeconds: 0,
      containers: [
        {
          name: "load",
          // The shadow image holds exactly the libraries a compiled Bun program links.
          image,
          imagePullPolicy: "IfNotPresent",
          command: ["/bench/mesh-load", "idle"],
          volumeMounts: [{ name: "bench", mountPath: "/bench", readOnly: true }],
        },
      ],
      volumes: [{ name: "bench", hostPath: { path: dir, type: "Directory" } }],
    },
  };
  await kubectl(["-n", DEMO_NS, "delete", "pod", LOAD_POD, "--ignore-not-found", "--wait=true"]);
  await kubectlOk(["apply", "-f", "-"], { stdin: JSON.stringify(pod) });
  await kubectlOk(["-n", DEMO_NS, "wait", `pod/${LOAD_POD}`, "--for=condition=Ready", "--timeout=60s"], { timeoutMs: 70_000 });
}

/** A mesh session of the baseline ktctl, up once it prints its mark; stopped with Ctrl-C. */
async function startBaselineMesh(argv: string[], home: string): Promise<{ stop(): Promise<void> }> {
  const proc = Bun.spawn(inLaptop([...argv, "mesh", BASELINE_SERVICE, "--expose", `${LAPTOP_PORT}:80`, "--versionMark", "bench", "-c", KUBECONFIG, "-n", DEMO_NS]), {
    env: { ...process.env, KTCTL_HOME: home, NO_COLOR: "1" },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let text = "";
  const read = async (stream: ReadableStream<Uint8Array>, found: () => void) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      text += decoder.decode(chunk, { stream: true });
      if (/\bMARK \S/.test(text)) found();
    }
  };
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`baseline mesh not up within 120 s: ${text.slice(-2000)}`)), 120_000);
    const found = () => {
      clearTimeout(timer);
      resolve();
    };
    void read(proc.stdout, found);
    void read(proc.stderr, found);
    void proc.exited.then((code) => reject(new Error(`baseline mesh exited ${code}: ${text.slice(-2000)}`)));
  });
  return {
    async stop() {
      proc.kill("SIGINT");
      await proc.exited;
    },
  };
}

async function main(): Promise<void> {
  await requireCluster();
  const dir = mkdtempSync(join(tmpdir(), "ktctl-mesh-bench-"));
  const home = mkdtempSync(join(tmpdir(), "ktctl-mesh-bench-home-"));
  const baselineHome = mkdtempSync(join(tmpdir(), "ktctl-mesh-bench-base-home-"));
  let laptop: { stop(): Promise<void> } | undefined;
  let baselineMesh: { stop(): Promise<void> } | undefined;
  try {
    const compiled = await run(["bun", "build", "--compile", join(REPO, "test/bench/mesh-load.ts"), "--outfile", join(dir, "mesh-load")]);
    if (compiled.code !== 0) throw new Error(`cannot compile the load generator: ${compiled.stderr}`);
    await run(["chmod", "755", dir, join(dir, "mesh-load")]);

    await deployMeshWorkload(SERVICE);
    laptop = await startLaptopService("laptop-bench", LAPTOP_PORT);
    const mesh = startKtctl(["mesh", SERVICE, "--expose", `${LAPTOP_PORT}:80`, "--versionMark", "bench"], home);
    await mesh.waitFor(/\bMARK \S/, 120_000);
    if (baselineArgv) {
      await deployMeshWorkload(BASELINE_SERVICE);
      baselineMesh = await startBaselineMesh(baselineArgv, baselineHome);
    }
    await startLoadPod(dir);

    const kube = await connectKube({ kubeconfig: KUBECONFIG, namespace: DEMO_NS });
    const routerPod = (await kubectlJson(["-n", DEMO_NS, "get", "pods", "-l", `ktctl.io/role=mesh-router-${SERVICE}`])).items[0].metadata.name;
    const stats = async () => (await adminRequest(kube, DEMO_NS, routerPod, ADMIN_PORT, "GET", "/stats")).body;
    const idle = await stats();

    const direct = `${SERVICE}-ktctl-original.${DEMO_NS}:80`;
    const meshed = `${SERVICE}.${DEMO_NS}:80`;
    const baselineMeshed = `${BASELINE_SERVICE}.${DEMO_NS}:80`;
    // Sanity: a marked request through the router reaches the laptop; the load itself is unmarked.
    const marked = await load(["h1", meshed, "1", "300", "VERSION: bench"]);
    if (marked.errors > 0 || marked.requests === 0) throw new Error(`marked requests fail through the router: ${JSON.stringify(marked)}`);

    let peakRss = idle.rssBytes as number;
    const sampleWhile = async <T>(work: Promise<T>): Promise<T> => {
      let done = false;
      const sampler = (async () => {
        while (!done) {
          peakRss = Math.max(peakRss, (await stats()).rssBytes);
          await Bun.sleep(500); // a sampling interval, not a wait for readiness
        }
      })();
      try {
        return await work;
      } finally {
        done = true;
        await sampler;
      }
    };

    const scenarios: { name: string; args: (target: string) => string[] }[] = [
      { name: "HTTP/1.1, 1 connection", args: (t) => ["h1", t, "1", String(seconds * 1000)] },
      { name: "HTTP/1.1, 16 connections", args: (t) => ["h1", t, "16", String(seconds * 1000)] },
      { name: "gRPC (h2c), 1 connection, 8 streams", args: (t) => ["grpc", t, "8", String(seconds * 1000)] },
      // Open loop: a steady rate well below saturation, as a busy service sees it; latency counts
      // from when each request was due (the generator's 1 ms timer adds the same slack to both).
      { name: "HTTP/1.1, steady 2,000 req/s (open loop)", args: (t) => ["rate", t, "2000", String(seconds * 1000), "16"] },
      { name: "HTTP/1.1, steady 5,000 req/s (open loop)", args: (t) => ["rate", t, "5000", String(seconds * 1000), "32"] },
    ];
    const rows: any[] = [];
    for (const scenario of scenarios) {
      // A short warm-up of both paths (JIT, pooled connections) before the measured rounds.
      const warm = (args: string[]) => args.map((a, i) => (i === 3 ? "1000" : a)); // argument 3 is the duration in every mode
      await load(warm(scenario.args(direct)));
      await load(warm(scenario.args(meshed)));
      if (baselineArgv) await load(warm(scenario.args(baselineMeshed)));
      const directRuns: LoadResult[] = [];
      const routerRuns: LoadResult[] = [];
      const baselineRuns: LoadResult[] = [];
      for (let round = 0; round < rounds; round++) {
        directRuns.push(await load(scenario.args(direct)));
        routerRuns.push(await sampleWhile(load(scenario.args(meshed))));
        if (baselineArgv) baselineRuns.push(await load(scenario.args(baselineMeshed)));
      }
      const pick = (runs: LoadResult[]) => ({
        rps: median(runs.map((r) => r.rps)),
        p50ms: median(runs.map((r) => r.p50ms)),
        p99ms: median(runs.map((r) => r.p99ms)),
        errors: runs.reduce((sum, r) => sum + r.errors, 0),
      });
      const d = pick(directRuns);
      const m = pick(routerRuns);
      // Each round runs direct then router back to back: comparing within a round cancels most of
      // what other work on the machine does to both.
      const ratios = routerRuns.map((r, i) => r.rps / directRuns[i]!.rps);
      const added = routerRuns.map((r, i) => r.p50ms - directRuns[i]!.p50ms);
      const baseline = baselineArgv
        ? {
            router: pick(baselineRuns),
            rpsRatio: median(baselineRuns.map((r, i) => r.rps / directRuns[i]!.rps)),
            addedP50ms: median(baselineRuns.map((r, i) => r.p50ms - directRuns[i]!.p50ms)),
          }
        : undefined;
      rows.push({
        scenario: scenario.name,
        direct: d,
        router: m,
        rpsRatio: median(ratios),
        rpsRatioRange: [Math.min(...ratios), Math.max(...ratios)],
        addedP50ms: median(added),
        addedP50Range: [Math.min(...added), Math.max(...added)],
        ...(baseline ? { baseline } : {}),
        runs: { directRuns, routerRuns, ...(baselineArgv ? { baselineRuns } : {}) },
      });
    }
    const after = await stats();

    // How long a route change takes to reach the router: a PUT through a fresh port-forward.
    const pushes: number[] = [];
    for (let i = 0; i < 10; i++) {
      const route = { id: `bench${i}`, header: "x-bench", value: `v${i}`, upstreams: { "8080": { host: "10.0.0.1", port: 1 } } };
      const t0 = performance.now();
      const put = await adminRequest(kube, DEMO_NS, routerPod, ADMIN_PORT, "PUT", `/routes/${route.id}`, route);
      pushes.push(performance.now() - t0);
      if (put.status !== 200) throw new Error(`route push failed: ${JSON.stringify(put.body)}`);
      await adminRequest(kube, DEMO_NS, routerPod, ADMIN_PORT, "DELETE", `/routes/${route.id}`);
    }

    const mib = (b: number) => (b / 1048576).toFixed(1);
    console.log(`\n| scenario (unmarked requests, from a pod; median of ${rounds} rounds) | direct req/s | router req/s | ratio (range) | direct p50 / p99 ms | router p50 / p99 ms | added p50 ms (range) |`);
    console.log(`|---|---|---|---|---|---|---|`);
    for (const row of rows) {
      console.log(
        `| ${row.scenario} | ${row.direct.rps} | ${row.router.rps} | ${row.rpsRatio.toFixed(2)}x (${row.rpsRatioRange.map((v: number) => v.toFixed(2)).join("-")}) | ` +
          `${row.direct.p50ms.toFixed(3)} / ${row.direct.p99ms.toFixed(2)} | ${row.router.p50ms.toFixed(3)} / ${row.router.p99ms.toFixed(2)} | ` +
          `${row.addedP50ms.toFixed(3)} (${row.addedP50Range.map((v: number) => v.toFixed(2)).join(" to ")}) |`,
      );
    }
    if (baselineArgv) {
      console.log(`\n| scenario (same rounds; baseline: ${baselineArgv.join(" ")}) | direct req/s | baseline router req/s | this router req/s | ratio to direct: baseline / this | added p50 ms: baseline / this |`);
      console.log(`|---|---|---|---|---|---|`);
      for (const row of rows) {
        const b = row.baseline;
        console.log(
          `| ${row.scenario} | ${row.direct.rps} | ${b.router.rps} | ${row.router.rps} | ${b.rpsRatio.toFixed(2)}x / ${row.rpsRatio.toFixed(2)}x | ` +
            `${b.addedP50ms.toFixed(3)} / ${row.addedP50ms.toFixed(3)} |`,
        );
      }
    }
    console.log(`\nrouter RSS: idle ${mib(idle.rssBytes)} MiB, peak under load ${mib(peakRss)} MiB, after ${mib(after.rssBytes)} MiB`);
    console.log(`route push through a port-forward: median ${median(pushes).toFixed(1)} ms, max ${Math.max(...pushes).toFixed(1)} ms`);
    console.log(`router counters after the run: ${JSON.stringify(after.counters)}`);
    console.log(JSON.stringify({ rows, memory: { idle: idle.rssBytes, peak: peakRss, after: after.rssBytes }, routePushMs: pushes }));

    mesh.proc.kill("SIGINT");
    await mesh.exited;
  } finally {
    await stopAllKtctl();
    await baselineMesh?.stop();
    await kubectl(["-n", DEMO_NS, "delete", "pod", LOAD_POD, "--ignore-not-found", "--wait=false"]);
    await laptop?.stop();
    await removeMeshWorkload(SERVICE);
    if (baselineArgv) await removeMeshWorkload(BASELINE_SERVICE);
    rmSync(baselineHome, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  }
}

await main();
process.exit(0);
