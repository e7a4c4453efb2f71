// Where an exchanged request's CPU goes, on the whole machine (which is also the cluster's node):
// `ktctl exchange svc/echo` in the laptop namespace, a laptop server answering, and busybox `wget`s
// from the toolbox pod, `--parallel` loops at a time, a new connection each, to the exchanged
// service and then to a service of the bench's own over echo's original pods, in turns. For each
// target: requests/s by the pod's clock, and the CPU time of every process of the machine between
// the start and the end of the load (from /proc: user and system, children reaped included),
// summed by command name, per request. What the exchange adds over the original pods is the
// difference; the `wget` processes themselves (under the containerd shim) cost the same on both.
//   bun test/bench/exchange-cpu.bench.ts [--requests 1600] [--parallel 8] [--turns 2]
// KTCTL_E2E_BIN names the ktctl to run (default: from source). Needs the test cluster.

import { readFileSync, readdirSync } from "node:fs";
import { parseArgs } from "node:util";
import { DEMO_NS, clusterIpOf, kubectl, requireCluster, run, runInPod } from "../e2e/harness.ts";
import { startKtctl, startLaptopServer, tempHome } from "../e2e/exchange-harness.ts";

const { values } = parseArgs({
  options: {
    requests: { type: "string", default: "1600" },
    parallel: { type: "string", default: "8" },
    turns: { type: "string", default: "2" },
  },
});
const requests = Number(values.requests);
const parallel = Number(values.parallel);
const turns = Number(values.turns);
const LAPTOP_PORT = 28190;
const ORIGINAL = "echo-cpu-bench-original";
const TICK_MS = 10; // /proc/[pid]/stat counts clock ticks of 10 ms
const SHOWN = 8;

/** CPU ticks so far of every process, by "pid:command" (a pid reused meanwhile is another key). */
function processTicks(): Map<string, number> {
  const ticks = new Map<string, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const command = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // utime, stime, and what reaped children used (the wget processes count for their shell)
      ticks.set(`${entry}:${command}`, Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]));
    } catch {
      // gone meanwhile
    }
  }
  return ticks;
}

/** Busy ticks of the whole machine so far (all CPUs, idle and iowait left out). */
function machineTicks(): number {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  return fields.reduce((a, b) => a + b, 0) - fields[3]! - fields[4]!;
}

interface Turn {
  rps: number;
  failures: number;
  machineMs: number;
  byCommand: Map<string, number>;
}

async function load(url: string): Promise<Turn> {
  // Earlier turns' connections to this address (some toward pods since deleted) must not catch this one's.
  await run(["conntrack", "-D", "-p", "tcp", "--orig-dst", new URL(url).hostname], { timeoutMs: 10_000 });
  const each = Math.ceil(requests / parallel);
  const script = `
    one() { i=0; f=0; while [ $i -lt ${each} ]; do wget -qO- ${url} >/dev/null 2>&1 || f=$((f+1)); i=$((i+1)); done; echo $f; }
    start=$(cut -d' ' -f1 /proc/uptime)
    for p in $(seq ${parallel}); do one > /tmp/ktctl-cpu-bench-$p & done; wait
    end=$(cut -d' ' -f1 /proc/uptime)
    echo "$start $end $(cat /tmp/ktctl-cpu-bench-* | awk '{s+=$1} END {print s}')"; rm -f /tmp/ktctl-cpu-bench-*`;
  const before = processTicks();
  const machineBefore = machineTicks();
  const r = await runInPod(["sh", "-c", script], "toolbox", DEMO_NS, { timeoutMs: 600_000 });
  const machineAfter = machineTicks();
  const after = processTicks();
  const [start, end, failures] = r.stdout.trim().split(/\s+/).map(Number) as [number, number, number];
  const done = each * parallel;
  const byCommand = new Map<string, number>();
  for (const [key, ticks] of after) {
    const spent = ticks - (before.get(key) ?? 0);
    if (spent <= 0) continue;
    const command = key.slice(key.indexOf(":") + 1);
    byCommand.set(command, (byCommand.get(command) ?? 0) + (spent * TICK_MS) / done);
  }
  return { rps: done / (end - start), failures, machineMs: ((machineAfter - machineBefore) * TICK_MS) / done, byCommand };
}

await requireCluster();
const { home, remove } = tempHome("cpu-bench");
const server = await startLaptopServer(LAPTOP_PORT);
const session = startKtctl(["exchange", "svc/echo", "--expose", `${LAPTOP_PORT}:80`], home);
const results: { exchanged: Turn[]; original: Turn[] } = { exchanged: [], original: [] };
try {
  await session.waitFor(/exchanged \S+ in/, 120_000);
  const service = { apiVersion: "v1", kind: "Service", metadata: { name: ORIGINAL, namespace: DEMO_NS }, spec: { selector: { app: "echo" }, ports: [{ port: 80, targetPort: 8080 }] } };
  const applied = await kubectl(["apply", "-f", "-"], { stdin: JSON.stringify(service) });
  if (applied.code !== 0) throw new Error(`creating service ${ORIGINAL}: ${applied.stderr}`);
  const exchanged = `http://${await clusterIpOf("echo")}/`;
  const original = `http://${await clusterIpOf(ORIGINAL)}/`;
  // kube-proxy follows the switch a moment after ktctl says "exchanged": wait for the laptop's answer.
  for (let i = 0; !(await runInPod(["sh", "-c", `wget -qO- ${exchanged}`])).stdout.includes("laptop"); i++) {
    if (i >= 100) throw new Error("the exchanged service never answered from the laptop");
  }
  for (let turn = 0; turn < turns; turn++) {
    results.exchanged.push(await load(exchanged));
    results.original.push(await load(original));
  }
} finally {
  session.proc.kill("SIGINT");
  await session.exited;
  await kubectl(["-n", DEMO_NS, "delete", "service", ORIGINAL, "--ignore-not-found"]);
  await server.stop();
  remove();
}

const range = (xs: number[], digits = 2) => {
  const low = Math.min(...xs).toFixed(digits);
  const high = Math.max(...xs).toFixed(digits);
  return low === high ? low : `${low}-${high}`;
};
const commands = [...new Set(results.exchanged.flatMap((t) => [...t.byCommand.keys()]))]
  .map((command) => ({ command, ms: results.exchanged.reduce((sum, t) => sum + (t.byCommand.get(command) ?? 0), 0) / turns }))
  .sort((a, b) => b.ms - a.ms)
  .slice(0, SHOWN);
const perCommand = (side: Turn[], command: string) => range(side.map((t) => t.byCommand.get(command) ?? 0), 3);
console.log(`| ${requests} wgets, ${parallel} in parallel, ${turns} turns each (range over turns) | exchanged (pod -> shadow -> ktctl -> laptop) | original pods |`);
console.log("|---|---|---|");
console.log(`| requests/s | ${range(results.exchanged.map((t) => t.rps), 0)} | ${range(results.original.map((t) => t.rps), 0)} |`);
console.log(`| failed requests | ${results.exchanged.reduce((s, t) => s + t.failures, 0)} | ${results.original.reduce((s, t) => s + t.failures, 0)} |`);
console.log(`| CPU of the whole machine per request (ms) | ${range(results.exchanged.map((t) => t.machineMs))} | ${range(results.original.map((t) => t.machineMs))} |`);
for (const { command } of commands) console.log(`| of it: ${command} (ms) | ${perCommand(results.exchanged, command)} | ${perCommand(results.original, command)} |`);
console.log(
  JSON.stringify({
    requests,
    parallel,
    turns: Object.fromEntries(Object.entries(results).map(([side, list]) => [side, list.map((t) => ({ ...t, byCommand: Object.fromEntries(t.byCommand) }))])),
  }),
);
