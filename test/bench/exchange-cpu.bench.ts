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

import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { DEMO_NS, clusterIpOf, kubectl, requireCluster, run, runInPod } from "../e2e/harness.ts";
import { startKtctl, startLaptopServer, tempHome } from "../e2e/exchange-harness.ts";
import { wgetLoad } from "./pod-wget-load.ts";
import { everyProcessStat } from "./processes.ts";

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
  // utime, stime, and what reaped children used (the wget processes count for their shell)
  return new Map(everyProcessStat().map(({ pid, command, fields }) => [`${pid}:${command}`, Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])]));
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
  const before = processTicks();
  const machineBefore = machineTicks();
  const { requests: done, rps, failures } = await wgetLoad(url, requests, parallel);
  const machineAfter = machineTicks();
  const after = processTicks();
  const byCommand = new Map<string, number>();
  for (const [key, ticks] of after) {
    const spent = ticks - (before.get(key) ?? 0);
    if (spent <= 0) continue;
    const command = key.slice(key.indexOf(":") + 1);
    byCommand.set(command, (byCommand.get(command) ?? 0) + (spent * TICK_MS) / done);
  }
  return { rps, failures, machineMs: ((machineAfter - machineBefore) * TICK_MS) / done, byCommand };
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
