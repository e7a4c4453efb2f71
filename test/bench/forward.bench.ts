// ktctl forward against kubectl port-forward to the SAME pod, side by side in one run, both from
// the laptop namespace: bulk throughput, request latency on one connection and with a new
// connection per request, time from start to first answer; the CPU each process of the path spends
// per MiB echoed and per new connection (this machine is the node, so the API server, kubelet,
// containerd and the shadow are all visible in /proc); shadow and ktctl memory; the compiled
// binary's `--help` start-up.
// Every forwarder gets the same warm-up first (a small bulk run, 50 requests, 30 connections).
// Prints Markdown tables and a JSON line.
// New connections are measured apart, with every forwarder running at once (fresh-batches.ts):
// --batches batches of 50 on each in turn; the figure is the median of the batches' p50s.
//   bun test/bench/forward.bench.ts [--rounds 3] [--mib 64] [--requests 300] [--batches 12] [--keep]
//       [--variant NAME=ENV=VALUE[,ENV=VALUE]]...   more ktctl runs with other environments
//                                                    (BIN=PATH in a variant runs another ktctl binary:
//                                                    an older build side by side in the same run;
//                                                    ARGS=... adds space-separated arguments to its
//                                                    forward, e.g. "ARGS=--via shadow")
// The pod lives in its own namespace (ktctl-bench), so tests running meanwhile in demo cannot swap
// it out or be mistaken for our shadow; --keep leaves the namespace for the next run.
// Needs the test cluster (test/cluster/up) and, for the start-up figure, `bun run build --host-only`.

import { existsSync } from "node:fs";
import { relative } from "node:path";
import { parseArgs } from "node:util";
import { KTCTL, KUBECONFIG, REPO, inLaptop, kubectl, kubectlJson, kubectlOk, requireCluster, run, runInLaptop, startWatched, ktctlInLaptop, type RunningKtctl } from "../e2e/harness.ts";
import { freshInBatches } from "./fresh-batches.ts";
import { cpuDuring, keepingOutputOnFailure, rssKbOf as rssKb, shadowPidIn } from "./processes.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    mib: { type: "string", default: "64" },
    requests: { type: "string", default: "300" },
    keep: { type: "boolean", default: false },
    variant: { type: "string", multiple: true, default: [] },
    batches: { type: "string", default: "12" },
  },
});
const rounds = Number(values.rounds);
const mib = Number(values.mib);
const requests = Number(values.requests);
const CLIENT = `${REPO}/test/bench/load-client.ts`;
const NS = "ktctl-bench";
const POD = "echo";
const ECHO_IMAGE = "ktctl.local/echo:1";

await requireCluster();

/** The bench's own namespace and echo pod (HTTP on 8080, TCP echo on 9090); reused when present. */
async function ensurePod(): Promise<void> {
  const manifest = {
    apiVersion: "v1",
    kind: "List",
    items: [
      { apiVersion: "v1", kind: "Namespace", metadata: { name: NS } },
      {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: POD, namespace: NS, labels: { app: "bench-echo" } },
        spec: {
          terminationGracePeriodSeconds: 1,
          containers: [
            {
              name: "echo",
              image: ECHO_IMAGE,
              imagePullPolicy: "Never",
              env: [
                { name: "ECHO_NAME", value: "bench-echo" },
                { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
                { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
              ],
              ports: [{ containerPort: 8080 }, { containerPort: 9090 }],
              readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1 },
            },
          ],
        },
      },
    ],
  };
  // Create what is missing; a pod left by an earlier run is reused as it is (pods are immutable).
  const existing = await kubectl(["-n", NS, "get", "pod", POD, "-o", "name"]);
  if (existing.code !== 0) await kubectlOk(["apply", "-f", "-"], { stdin: JSON.stringify(manifest) });
  await kubectlOk(["-n", NS, "wait", `pod/${POD}`, "--for=condition=Ready", "--timeout=90s"], { timeoutMs: 100_000 });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function client(mode: string, port: number, amount: number): Promise<any> {
  const r = await run(inLaptop(["bun", CLIENT, mode, String(port), String(amount)]), { timeoutMs: 300_000 });
  if (r.code !== 0) throw new Error(`load client ${mode} on ${port}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

/**
 * Two ports nobody uses in the laptop namespace (other tests listen on fixed ports there), below
 * the ephemeral range, where outgoing connections would collide with a listener.
 */
async function freePorts(): Promise<[number, number]> {
  const taken = new Set(
    [...(await runInLaptop(["ss", "-Htan"])).stdout.matchAll(/:(\d+)\s/g)].map((m) => Number(m[1])),
  );
  for (;;) {
    const base = 20000 + 2 * Math.floor(Math.random() * 6000);
    if (!taken.has(base) && !taken.has(base + 1)) return [base, base + 1];
  }
}

interface Running {
  stop(): Promise<void>;
  /** What it printed so far (ktctl only), kept when a load fails. */
  output?(): string;
  pid: number;
  httpPort: number;
  tcpPort: number;
}

interface Forwarder {
  name: string;
  /** Resolves once the forwarder says it forwards both ports (picked here unless given). */
  start(ports?: [number, number]): Promise<Running>;
  /** Its shadow's pid on this machine, when it has one. */
  shadowPid?(): Promise<number | undefined>;
}

const kubectlForwarder: Forwarder = {
  name: "kubectl port-forward",
  async start(ports) {
    const [httpPort, tcpPort] = ports ?? (await freePorts());
    const proc = Bun.spawn(
      inLaptop(["kubectl", "--kubeconfig", KUBECONFIG, "-n", NS, "port-forward", `pod/${POD}`, `${httpPort}:8080`, `${tcpPort}:9090`]),
      { stdout: "pipe", stderr: "pipe" },
    );
    const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
    let seen = "";
    while ((seen.match(/Forwarding from/g) ?? []).length < 2) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`kubectl port-forward exited: ${await new Response(proc.stderr).text()}`);
      seen += new TextDecoder().decode(value);
    }
    // Keep draining its "Handling connection" lines, or a full pipe would stall it.
    void (async () => {
      for (;;) if ((await reader.read()).done) break;
    })();
    return { pid: proc.pid, httpPort, tcpPort, stop: async () => void (proc.kill(), await proc.exited) };
  },
};

function ktctlForwarder(name: string, env: Record<string, string>): Forwarder {
  return {
    name,
    async start(ports) {
      const [httpPort, tcpPort] = ports ?? (await freePorts());
      const { BIN: binary, ARGS: extra, ...environment } = env;
      const args = ["-n", NS, "forward", `pod/${POD}`, `${httpPort}:8080`, `${tcpPort}:9090`, ...(extra ? extra.split(" ") : [])];
      const argv = binary ? inLaptop([binary, "--kubeconfig", KUBECONFIG, ...args]) : ktctlInLaptop(args);
      const ktctl: RunningKtctl = startWatched(argv, environment);
      await ktctl.waitForOutput(new RegExp(`Forwarding 127\\.0\\.0\\.1:${tcpPort}`));
      return { pid: ktctl.proc.pid, httpPort, tcpPort, output: () => ktctl.output(), stop: async () => void (await ktctl.stop("SIGINT")) };
    },
    shadowPid,
  };
}

const shadowPid = () => shadowPidIn(NS);

async function pidOf(name: string): Promise<number | undefined> {
  return Number((await run(["pgrep", "-x", name])).stdout.trim().split("\n")[0]) || undefined;
}

/**
 * Time from spawning the forwarder to the first HTTP answer through it: a client polls the port
 * from the spawn on, since a port may answer before the forwarder says it is ready.
 */
async function firstAnswer(forwarder: Forwarder): Promise<number> {
  const ports = await freePorts();
  const started = performance.now();
  const answeredAt = client("first", ports[0], 60_000).then(() => performance.now());
  const running = await forwarder.start(ports);
  const elapsed = (await answeredAt) - started;
  await running.stop();
  return elapsed;
}

const variants: Forwarder[] = [ktctlForwarder("ktctl forward", {})];
for (const spec of values.variant as string[]) {
  // NAME=ENV=VALUE[,ENV=VALUE]: the name, then the environment that variant runs with.
  const name = spec.slice(0, spec.indexOf("="));
  const env = Object.fromEntries(
    spec
      .slice(spec.indexOf("=") + 1)
      .split(",")
      .filter((kv) => kv.includes("="))
      .map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]),
  );
  variants.push(ktctlForwarder(`ktctl forward (${name})`, env));
}
const forwarders = [kubectlForwarder, ...variants];

await ensurePod();
const system = { containerd: await pidOf("containerd"), kubelet: await pidOf("kubelet"), "kube-apiserver": await pidOf("kube-apiserver") };

const results: Record<string, Record<string, number[]>> = {};
const record = (who: string, metric: string, value: number) => ((results[who] ??= {})[metric] ??= []).push(value);
const memory: Record<string, { rss: number; peak: number }> = {};

try {
  for (let round = 1; round <= rounds; round++) {
    // Rotate the order every round so no forwarder always runs first (or last) on a busy machine.
    const order = forwarders.map((_, i) => forwarders[(i + round - 1) % forwarders.length]!);
    for (const forwarder of order) {
      console.error(`round ${round}: ${forwarder.name}`);
      record(forwarder.name, "firstAnswerMs", await firstAnswer(forwarder));
      const running = await forwarder.start();
      try {
        await keepingOutputOnFailure(forwarder.name, running.output, async () => {
          // Warm-up, the same for every forwarder: a JIT (ktctl's and the shadow's) has to see a
          // code path before it runs fast, and the figures are for a forward in use, not its first
          // seconds (those are the "start to first answer" row).
          await client("bulk", running.tcpPort, 4);
          await client("keepalive", running.httpPort, 50);
          await client("fresh", running.httpPort, 30);
          const processes: Record<string, number | undefined> = { forwarder: running.pid, shadow: await forwarder.shadowPid?.(), ...system };
          const bulk = await cpuDuring(processes, () => client("bulk", running.tcpPort, mib));
          record(forwarder.name, "bulkMBps", bulk.result.mbPerSecond);
          for (const [k, ms] of Object.entries(bulk.cpuMs)) record(forwarder.name, `cpu:${k}`, ms / mib);
          const keep = await client("keepalive", running.httpPort, requests);
          record(forwarder.name, "keepaliveP50ms", keep.p50ms);
          record(forwarder.name, "keepaliveP99ms", keep.p99ms);
          // What a new connection costs the path, message by message through every hop: sequential,
          // so the processes' CPU meanwhile is theirs (the machine's background included, alike for all).
          const fresh = await cpuDuring(processes, () => client("fresh", running.httpPort, requests));
          for (const [k, ms] of Object.entries(fresh.cpuMs)) record(forwarder.name, `cpuFresh:${k}`, ms / requests);
          if (round === rounds) {
            const own = rssKb(running.pid);
            if (own) memory[forwarder.name] = own;
            const shadow = processes.shadow ? rssKb(processes.shadow) : undefined;
            if (shadow) memory[`${forwarder.name}: shadow pod`] = shadow;
          }
        });
      } finally {
        await running.stop();
      }
    }
  }
  // New connections: every forwarder up at once, their batches interleaved.
  const all = await Promise.all(forwarders.map((forwarder) => forwarder.start()));
  try {
    const paths = all.map((running, i) => [forwarders[i]!.name, String(running.httpPort)] as const);
    await freshInBatches(paths, Number(values.batches), (target, count) => client("fresh", Number(target), count), record);
  } finally {
    await Promise.all(all.map((running) => running.stop()));
  }
} finally {
  if (!values.keep) await kubectl(["delete", "namespace", NS, "--wait=false"]);
}

// `--help` of the compiled binary, the way a user starts it.
const binary = process.env.KTCTL_E2E_BIN ?? `${REPO}/dist/ktctl-linux-x64`;
const helpTimes: number[] = [];
if (existsSync(binary)) {
  for (let i = 0; i < 15; i++) {
    const t = performance.now();
    await run([binary, "--help"]);
    helpTimes.push(performance.now() - t);
  }
}

const k = results[kubectlForwarder.name]!;
const m = (r: Record<string, number[]>, key: string) => median(r[key] ?? [NaN]);
const rows: [string, string, boolean][] = [
  ["bulk echo throughput (MB/s, higher is better)", "bulkMBps", true],
  ["request on one connection, p50 (ms)", "keepaliveP50ms", false],
  ["request on one connection, p99 (ms)", "keepaliveP99ms", false],
  ["new connection per request, p50 (ms; median of interleaved batches)", "freshP50ms", false],
  ["new connection per request, p99 (ms; median of interleaved batches)", "freshP99ms", false],
  ["start to first answer (ms)", "firstAnswerMs", false],
];
const ratio = (key: string, higherIsBetter: boolean, r: Record<string, number[]>) =>
  (higherIsBetter ? m(r, key) / m(k, key) : m(k, key) / m(r, key)).toFixed(2);

console.log(`\n${rounds} rounds, ${mib} MiB bulk, ${requests} requests, ${values.batches} interleaved batches of 50 new connections, pod ${NS}/${POD}; medians over rounds; ktctl: ${KTCTL.map((part) => (part.startsWith(REPO + "/") ? relative(REPO, part) : part)).join(" ")}`);
console.log(`| metric | kubectl port-forward | ${variants.map((v) => `${v.name} | advantage (x)`).join(" | ")} |`);
console.log(`|---|---|${variants.map(() => "---|---|").join("")}`);
for (const [label, key, higher] of rows) {
  console.log(`| ${label} | ${m(k, key).toFixed(2)} | ${variants.map((v) => `${m(results[v.name]!, key).toFixed(2)} | ${ratio(key, higher, results[v.name]!)}`).join(" | ")} |`);
}

const cpuKeys = ["forwarder", "shadow", "containerd", "kubelet", "kube-apiserver"];
/** One CPU table: `prefix` picks the figures (cpu: per MiB of bulk, cpuFresh: per new connection). */
function cpuTable(title: string, prefix: string, digits: number): void {
  console.log(`\n${title}`);
  console.log(`| process | kubectl port-forward | ${variants.map((v) => v.name).join(" | ")} |`);
  console.log(`|---|---|${variants.map(() => "---|").join("")}`);
  for (const key of cpuKeys) {
    const cell = (r: Record<string, number[]>) => (r[`${prefix}${key}`] ? m(r, `${prefix}${key}`).toFixed(digits) : "-");
    console.log(`| ${key} | ${cell(k)} | ${variants.map((v) => cell(results[v.name]!)).join(" | ")} |`);
  }
  const total = (r: Record<string, number[]>) => cpuKeys.reduce((sum, key) => sum + (r[`${prefix}${key}`] ? m(r, `${prefix}${key}`) : 0), 0);
  console.log(`| total | ${total(k).toFixed(digits)} | ${variants.map((v) => total(results[v.name]!).toFixed(digits)).join(" | ")} |`);
}
cpuTable("CPU per MiB echoed during the bulk run (ms, median over rounds; the load client not counted)", "cpu:", 1);
cpuTable(`CPU per new connection, ${requests} sequential requests (ms, median over rounds; the load client not counted)`, "cpuFresh:", 3);

console.log("\n| process | RSS (MiB) | peak RSS (MiB) |\n|---|---|---|");
for (const [name, mem] of Object.entries(memory)) console.log(`| ${name} | ${(mem.rss / 1024).toFixed(1)} | ${(mem.peak / 1024).toFixed(1)} |`);
if (helpTimes.length) console.log(`\ncompiled \`ktctl --help\`: median ${median(helpTimes).toFixed(1)} ms, min ${Math.min(...helpTimes).toFixed(1)} ms over ${helpTimes.length} runs`);
console.log(JSON.stringify({ results, memory, helpTimes, ktctl: KTCTL.join(" ") }));
