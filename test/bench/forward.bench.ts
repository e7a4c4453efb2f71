// ktctl forward against kubectl port-forward to the SAME pod, side by side in one run, both from
// the laptop namespace: bulk throughput, request latency on one connection and with a new
// connection per request, time from start to first answer; plus shadow and ktctl memory and the
// compiled binary's `--help` start-up. Prints a Markdown table and a JSON line.
//   bun test/bench/forward.bench.ts [--rounds 3] [--mib 64] [--requests 300]
// Needs the test cluster (test/cluster/up) and, for the start-up figure, `bun run build --host-only`.

import { existsSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { DEMO_NS, KTCTL, KUBECONFIG, REPO, inLaptop, kubectlJson, podsOf, requireCluster, run, startKtctl, type RunningKtctl } from "../e2e/harness.ts";

const { values } = parseArgs({
  options: { rounds: { type: "string", default: "3" }, mib: { type: "string", default: "64" }, requests: { type: "string", default: "300" } },
});
const rounds = Number(values.rounds);
const mib = Number(values.mib);
const requests = Number(values.requests);
const CLIENT = `${REPO}/test/bench/load-client.ts`;

await requireCluster();
const [pod] = await podsOf("echo");
if (!pod) throw new Error("no echo pod");

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function client(mode: string, port: number, amount: number): Promise<any> {
  const r = await run(inLaptop(["bun", CLIENT, mode, String(port), String(amount)]), { timeoutMs: 300_000 });
  if (r.code !== 0) throw new Error(`load client ${mode} on ${port}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

interface Forwarder {
  name: string;
  httpPort: number;
  tcpPort: number;
  start(): Promise<{ stop(): Promise<void>; pid: number }>;
}

const kubectlForwarder: Forwarder = {
  name: "kubectl port-forward",
  httpPort: 28080,
  tcpPort: 29090,
  async start() {
    const proc = Bun.spawn(
      inLaptop(["kubectl", "--kubeconfig", KUBECONFIG, "-n", DEMO_NS, "port-forward", `pod/${pod.name}`, "28080:8080", "29090:9090"]),
      { stdout: "pipe", stderr: "pipe" },
    );
    const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
    let seen = "";
    while ((seen.match(/Forwarding from/g) ?? []).length < 2) {
      const { value, done } = await reader.read();
      if (done) throw new Error("kubectl port-forward exited");
      seen += new TextDecoder().decode(value);
    }
    return { pid: proc.pid, stop: async () => void (proc.kill(), await proc.exited) };
  },
};

const ktctlForwarder: Forwarder = {
  name: "ktctl forward",
  httpPort: 28081,
  tcpPort: 29091,
  async start() {
    const ktctl: RunningKtctl = startKtctl(["-n", DEMO_NS, "forward", `pod/${pod.name}`, "28081:8080", "29091:9090"]);
    await ktctl.waitForOutput(/Forwarding 127\.0\.0\.1:29091/);
    return { pid: ktctl.proc.pid, stop: async () => void (await ktctl.stop("SIGINT")) };
  },
};

/** Time from spawning the forwarder to the first HTTP answer through it (a client polls meanwhile). */
async function firstAnswer(forwarder: Forwarder): Promise<number> {
  const probe = client("first", forwarder.httpPort, 60_000);
  const started = performance.now();
  const running = forwarder.start();
  await probe;
  const elapsed = performance.now() - started;
  await (await running).stop();
  return elapsed;
}

/** Resident memory of a process (kB), read from the host's /proc: the test cluster is this machine. */
function rssKb(pid: number): { rss: number; peak: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    return { rss: Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]), peak: Number(/VmHWM:\s+(\d+)/.exec(status)?.[1]) };
  } catch {
    return undefined;
  }
}

/** The shadow's process on this machine (the node), found through its container's cgroup. */
async function shadowPid(): Promise<number | undefined> {
  const pods = await kubectlJson<any>(["-n", DEMO_NS, "get", "pods", "-l", "ktctl.io/managed-by=ktctl"]);
  const id = pods.items[0]?.status?.containerStatuses?.[0]?.containerID?.replace(/^containerd:\/\//, "");
  if (!id) return undefined;
  const dir = (await run(["find", "/sys/fs/cgroup/pids", "-type", "d", "-name", id])).stdout.trim().split("\n")[0];
  if (!dir) return undefined;
  return Number(readFileSync(`${dir}/cgroup.procs`, "utf8").split("\n")[0]);
}

const results: Record<string, Record<string, number[]>> = {};
const record = (who: string, metric: string, value: number) => ((results[who] ??= {})[metric] ??= []).push(value);
const memory: Record<string, { rss: number; peak: number }> = {};

for (let round = 1; round <= rounds; round++) {
  for (const forwarder of round % 2 ? [kubectlForwarder, ktctlForwarder] : [ktctlForwarder, kubectlForwarder]) {
    console.error(`round ${round}: ${forwarder.name}`);
    record(forwarder.name, "firstAnswerMs", await firstAnswer(forwarder));
    const running = await forwarder.start();
    try {
      record(forwarder.name, "bulkMBps", (await client("bulk", forwarder.tcpPort, mib)).mbPerSecond);
      const keep = await client("keepalive", forwarder.httpPort, requests);
      record(forwarder.name, "keepaliveP50ms", keep.p50ms);
      record(forwarder.name, "keepaliveP99ms", keep.p99ms);
      const fresh = await client("fresh", forwarder.httpPort, Math.min(requests, 100));
      record(forwarder.name, "freshP50ms", fresh.p50ms);
      record(forwarder.name, "freshP99ms", fresh.p99ms);
      if (forwarder === ktctlForwarder && round === rounds) {
        const own = rssKb(running.pid);
        if (own) memory["ktctl (laptop)"] = own;
        const shadow = await shadowPid();
        const shadowMem = shadow ? rssKb(shadow) : undefined;
        if (shadowMem) memory["shadow pod"] = shadowMem;
      }
      if (forwarder === kubectlForwarder && round === rounds) {
        const own = rssKb(running.pid);
        if (own) memory["kubectl port-forward"] = own;
      }
    } finally {
      await running.stop();
    }
  }
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
const t = results[ktctlForwarder.name]!;
const rows: [string, string, number, number, string][] = [
  ["bulk echo throughput (MB/s, higher is better)", "bulkMBps", median(k.bulkMBps!), median(t.bulkMBps!), (median(t.bulkMBps!) / median(k.bulkMBps!)).toFixed(2)],
  ["request on one connection, p50 (ms)", "keepaliveP50ms", median(k.keepaliveP50ms!), median(t.keepaliveP50ms!), (median(k.keepaliveP50ms!) / median(t.keepaliveP50ms!)).toFixed(2)],
  ["request on one connection, p99 (ms)", "keepaliveP99ms", median(k.keepaliveP99ms!), median(t.keepaliveP99ms!), (median(k.keepaliveP99ms!) / median(t.keepaliveP99ms!)).toFixed(2)],
  ["new connection per request, p50 (ms)", "freshP50ms", median(k.freshP50ms!), median(t.freshP50ms!), (median(k.freshP50ms!) / median(t.freshP50ms!)).toFixed(2)],
  ["new connection per request, p99 (ms)", "freshP99ms", median(k.freshP99ms!), median(t.freshP99ms!), (median(k.freshP99ms!) / median(t.freshP99ms!)).toFixed(2)],
  ["start to first answer (ms)", "firstAnswerMs", median(k.firstAnswerMs!), median(t.firstAnswerMs!), (median(k.firstAnswerMs!) / median(t.firstAnswerMs!)).toFixed(2)],
];
console.log(`\n${rounds} rounds, ${mib} MiB bulk, ${requests} requests, pod ${pod.name}; medians over rounds`);
console.log("| metric | kubectl port-forward | ktctl forward | ktctl advantage (x) |\n|---|---|---|---|");
for (const [label, , kv, tv, ratio] of rows) console.log(`| ${label} | ${kv.toFixed(2)} | ${tv.toFixed(2)} | ${ratio} |`);
console.log("\n| process | RSS (MiB) | peak RSS (MiB) |\n|---|---|---|");
for (const [name, m] of Object.entries(memory)) console.log(`| ${name} | ${(m.rss / 1024).toFixed(1)} | ${(m.peak / 1024).toFixed(1)} |`);
if (helpTimes.length) console.log(`\ncompiled \`ktctl --help\`: median ${median(helpTimes).toFixed(1)} ms, min ${Math.min(...helpTimes).toFixed(1)} ms over ${helpTimes.length} runs`);
console.log(JSON.stringify({ results, memory, helpTimes, ktctl: KTCTL.join(" ") }));
