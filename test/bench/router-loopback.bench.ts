// The mesh router's own cost, without the cluster: the router of this tree in a process of its own
// on loopback, in front of the protocol server the e2e tests use as "original pods", loaded by the
// mesh benchmark's load generator (test/bench/mesh-load.ts) with unmarked requests, against the
// same load straight to the server; the two alternate, rounds apart. A developer's route is set
// (a mark nobody sends), so the router works as it does in a mesh.
//   bun test/bench/router-loopback.bench.ts [--rounds 3] [--seconds 4] [--profile DIR]
// --profile writes the router's CPU profile (bun --cpu-prof) into DIR.
// Three processes share the machine's cores: read the ratio, not the absolute figures. What the
// cluster adds (service addresses, kube-proxy, pods) is in mesh.bench.ts.

import { parseArgs } from "node:util";
import { REPO } from "../e2e/harness.ts";
import { freePort } from "../unit/router-harness.ts";

const { values } = parseArgs({
  options: { rounds: { type: "string", default: "3" }, seconds: { type: "string", default: "4" }, profile: { type: "string" }, router: { type: "boolean", default: false } },
  allowPositionals: true,
});

if (values.router) {
  // The child: a router on the given ports, until SIGTERM.
  const { validateRouterConfig } = await import("../../core/protocol/router.ts");
  const { Router } = await import("../../shadow/router/router.ts");
  const [listenPort, adminPort, fallbackPort, developerPort] = process.argv.slice(-4).map(Number);
  const quiet = { debug() {}, info() {}, warn() {}, error() {} };
  const config = validateRouterConfig({ listeners: [{ port: listenPort!, fallback: { host: "127.0.0.1", port: fallbackPort! }, name: "http" }], adminPort: adminPort!, sniffTimeoutMs: 150 });
  const router = new Router(config, quiet, { host: "127.0.0.1" });
  await router.start();
  router.routes.put({ id: "nobody", header: "version", value: "nobody", upstreams: { [String(listenPort)]: { host: "127.0.0.1", port: developerPort! } } });
  process.on("SIGTERM", () => {
    router.stop();
    process.exit(0);
  });
  console.log("READY");
} else {
  await main();
}

interface LoadResult {
  rps: number;
  p50ms: number;
  p99ms: number;
  errors: number;
}

async function main(): Promise<void> {
  const rounds = Number(values.rounds);
  const durationMs = Number(values.seconds) * 1000;
  const [serverPort, routerPort, adminPort, developerPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const server = Bun.spawn(["bun", `${REPO}/test/e2e/fixtures/protocol-server.ts`, "--name", "original", "--port", String(serverPort)], { stdout: "pipe" });
  const profile = values.profile ? ["--cpu-prof", `--cpu-prof-dir=${values.profile}`] : [];
  const router = Bun.spawn(["bun", ...profile, import.meta.path, "--router", String(routerPort), String(adminPort), String(serverPort), String(developerPort)], { stdout: "pipe" });

  const scenarios = [
    { name: "HTTP/1.1, 1 connection", args: (port: number) => ["h1", `127.0.0.1:${port}`, "1", String(durationMs)] },
    { name: "HTTP/1.1, 16 connections", args: (port: number) => ["h1", `127.0.0.1:${port}`, "16", String(durationMs)] },
    { name: "gRPC (h2c), 1 connection, 8 streams", args: (port: number) => ["grpc", `127.0.0.1:${port}`, "8", String(durationMs)] },
  ];
  const results = new Map<string, { direct: LoadResult[]; router: LoadResult[] }>();
  try {
    await lineMatching(server.stdout as ReadableStream<Uint8Array>, /READY/);
    await lineMatching(router.stdout as ReadableStream<Uint8Array>, /READY/);
    for (let round = 0; round < rounds; round++) {
      for (const scenario of scenarios) {
        const entry = results.get(scenario.name) ?? { direct: [], router: [] };
        results.set(scenario.name, entry);
        // The order alternates, so that neither side always runs on a warmer machine.
        const order: ("direct" | "router")[] = round % 2 === 0 ? ["direct", "router"] : ["router", "direct"];
        for (const side of order) entry[side].push(await load(scenario.args(side === "direct" ? serverPort : routerPort)));
      }
    }
  } finally {
    router.kill("SIGTERM");
    server.kill();
    await router.exited;
  }

  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log(`\n${rounds} rounds of ${values.seconds} s each, unmarked requests, loopback; medians`);
  console.log("| scenario | direct req/s | router req/s | ratio | direct p50 / p99 ms | router p50 / p99 ms | added p50 ms |\n|---|---|---|---|---|---|---|");
  const json: Record<string, unknown> = {};
  for (const [name, { direct, router: routed }] of results) {
    const d = { rps: median(direct.map((r) => r.rps)), p50: median(direct.map((r) => r.p50ms)), p99: median(direct.map((r) => r.p99ms)) };
    const r = { rps: median(routed.map((x) => x.rps)), p50: median(routed.map((x) => x.p50ms)), p99: median(routed.map((x) => x.p99ms)) };
    const errors = [...direct, ...routed].reduce((sum, x) => sum + x.errors, 0);
    console.log(`| ${name} | ${d.rps} | ${r.rps} | ${(r.rps / d.rps).toFixed(2)}x | ${d.p50} / ${d.p99} | ${r.p50} / ${r.p99} | ${(r.p50 - d.p50).toFixed(3)} |${errors ? ` ${errors} errors` : ""}`);
    json[name] = { direct: d, router: r, errors };
  }
  console.log(JSON.stringify({ bench: "router-loopback", rounds, seconds: Number(values.seconds), results: json }));
}

async function load(args: string[]): Promise<LoadResult> {
  const child = Bun.spawn(["bun", `${REPO}/test/bench/mesh-load.ts`, ...args], { stdout: "pipe", stderr: "inherit" });
  const text = await new Response(child.stdout).text();
  if ((await child.exited) !== 0) throw new Error(`mesh-load ${args.join(" ")} failed`);
  return JSON.parse(text.trim().split("\n").pop()!) as LoadResult;
}

async function lineMatching(stream: ReadableStream<Uint8Array>, pattern: RegExp): Promise<void> {
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of stream) {
    text += decoder.decode(chunk, { stream: true });
    if (pattern.test(text)) return;
  }
  throw new Error(`the process ended before printing ${pattern}`);
}
