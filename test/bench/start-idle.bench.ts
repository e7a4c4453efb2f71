// Start time and idle memory of two ktctl builds side by side in one run (a change against its base),
// from the laptop namespace against the test cluster:
//   - connect (system mode, a new shadow, its image present): from spawning ktctl to the first answer
//     by name (curl in a loop, one process per attempt), and the time ktctl itself reports;
//   - forward: from spawning ktctl to the first answer on the forwarded local port;
//   - once connect has been idle for --idle seconds: the resident memory of ktctl, of its watchdog and
//     of its shadow (from /proc: the node is this machine), split into anonymous and file-backed pages.
// The two builds take turns, the order alternating every round. Each needs its own shadow image
// (a side build: `bun build/build.ts --host-only --version V` and its image imported).
//   KTCTL_E2E_BIN=NEW KTCTL_BENCH_BASE_BIN=BASE bun test/bench/start-idle.bench.ts [--rounds 5] [--idle 15]
// Prints Markdown tables and a JSON line. Everything it creates lives in one namespace of its own,
// deleted at the end.

import { mkdtemp, rm } from "node:fs/promises";
import { readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { KUBECONFIG, REPO, inLaptop, kubectl, kubectlOk, podsOf, requireCluster, run, startWatched, type RunningKtctl } from "../e2e/harness.ts";
import { deployWorkspace } from "../e2e/reliability-harness.ts";
import { shadowPidIn } from "./processes.ts";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "5" }, idle: { type: "string", default: "15" } } });
const rounds = Number(values.rounds);
const idleSeconds = Number(values.idle);
const NEW = process.env.KTCTL_E2E_BIN;
const BASE = process.env.KTCTL_BENCH_BASE_BIN;
if (!NEW || !BASE) {
  console.error("set KTCTL_E2E_BIN (the change) and KTCTL_BENCH_BASE_BIN (its base): two compiled ktctl binaries");
  process.exit(2);
}
const BUILDS = { base: BASE, new: NEW } as const;
type Build = keyof typeof BUILDS;

const NS = "ktctl-bench-idle";
const CLIENT = `${REPO}/test/bench/load-client.ts`;
const FORWARD_PORT = 28390;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const spread = (xs: number[]) => (xs.length ? `${(median(xs) / 1000).toFixed(2)} s (${(Math.min(...xs) / 1000).toFixed(2)}-${(Math.max(...xs) / 1000).toFixed(2)})` : "-");

async function client(mode: string, target: string, timeoutMs: number): Promise<{ firstAnswerMs: number | null }> {
  const r = await run(inLaptop(["bun", CLIENT, mode, target, String(timeoutMs)]), { timeoutMs: timeoutMs + 30_000 });
  if (r.code !== 0) throw new Error(`load client ${mode} ${target}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

/** Resident memory of a process (MiB): all, anonymous, file-backed. */
function residentOf(pid: number | undefined): { rss: number; anon: number; file: number } | undefined {
  if (!pid) return undefined;
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const field = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1]) / 1024;
    return { rss: field("VmRSS"), anon: field("RssAnon"), file: field("RssFile") };
  } catch {
    return undefined;
  }
}

/** The watchdog of a session: the process whose command line is `<binary> __watchdog <id>`. */
function watchdogPid(binary: string, sessionId: string): number | undefined {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      if (argv[0] === binary && argv[1] === "__watchdog" && argv[2] === sessionId) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

let home = "";
const running = new Set<RunningKtctl>();
const startKtctl = (build: Build, args: string[]) => {
  // --debug: a round that fails shows where that start stood (its output is in the error).
  const ktctl = startWatched(inLaptop([BUILDS[build], "--kubeconfig", KUBECONFIG, "--debug", ...args]), { KTCTL_HOME: home, NO_COLOR: "1" });
  running.add(ktctl);
  return ktctl;
};
const stop = async (ktctl: RunningKtctl) => {
  await ktctl.stop("SIGINT");
  running.delete(ktctl);
};

type Figures = {
  connectMs: number[];
  reportedMs: number[];
  forwardMs: number[];
  memory: Record<string, { rss: number; anon: number; file: number }[]>;
  /** Rounds that did not come to an answer, with the reason (the cluster's fault injection, a crash). */
  failures: string[];
};
const figures: Record<Build, Figures> = {
  base: { connectMs: [], reportedMs: [], forwardMs: [], memory: {}, failures: [] },
  new: { connectMs: [], reportedMs: [], forwardMs: [], memory: {}, failures: [] },
};
/** Runs one round; a failure is counted and shown, and the run goes on with the next. */
async function counted(build: Build, what: string, round: () => Promise<void>) {
  try {
    await round();
  } catch (error) {
    const text = error instanceof Error ? error.message : String(error);
    figures[build].failures.push(`${new Date().toISOString()} ${what}: ${text.split("\n")[0]}`);
    console.error(`${build} ${what} failed: ${text.slice(-3000)}`);
  }
}
const remember = (build: Build, what: string, value: { rss: number; anon: number; file: number } | undefined) => {
  if (value) (figures[build].memory[what] ??= []).push(value);
};

async function connectRound(build: Build) {
  const probe = client("firstcurl", "http://echo/", 90_000).then((answer) => ({ answer, at: performance.now() }));
  const t0 = performance.now();
  const ktctl = startKtctl(build, ["-n", NS, "connect", "--mode", "system"]);
  try {
    const line = await ktctl.waitForOutput(/Connected to namespace \S+ in [\d.]+s \(session (\w+)/, 120_000);
    const { answer, at } = await probe;
    if (answer.firstAnswerMs === null) throw new Error("connect: no answer by name");
    figures[build].connectMs.push(at - t0);
    figures[build].reportedMs.push(Number(/in ([\d.]+)s/.exec(line)![1]) * 1000);
    const sessionId = /\(session (\w+)/.exec(line)![1]!;
    // Idle: nothing asked of it but its own lease renewals and liveness pings.
    await Bun.sleep(idleSeconds * 1000);
    remember(build, "ktctl connect", residentOf(ktctl.proc.pid));
    remember(build, "its watchdog", residentOf(watchdogPid(BUILDS[build], sessionId)));
    remember(build, "its shadow", residentOf(await shadowPidIn(NS)));
  } finally {
    await stop(ktctl);
  }
}

async function forwardRound(build: Build, pod: string) {
  const port = FORWARD_PORT;
  const probe = client("first", String(port), 60_000).then((answer) => ({ answer, at: performance.now() }));
  const t0 = performance.now();
  const ktctl = startKtctl(build, ["-n", NS, "forward", `pod/${pod}`, `${port}:8080`]);
  try {
    const { answer, at } = await probe;
    if (answer.firstAnswerMs === null) throw new Error("forward: no answer");
    figures[build].forwardMs.push(at - t0);
  } finally {
    await stop(ktctl);
  }
}

/** Waits until no shadow of an earlier round is left, so each round starts a new one. */
async function noShadowLeft() {
  for (let i = 0; i < 300; i++) {
    const out = await kubectlOk(["-n", NS, "get", "pods", "-l", "ktctl.io/managed-by=ktctl", "-o", "name"]);
    if (!out.trim()) return;
    await Bun.sleep(200);
  }
  throw new Error("a shadow of an earlier round is still there after 60 s");
}

await requireCluster();
home = await mkdtemp(join(tmpdir(), "ktctl-bench-idle-"));
const started = Date.now();
try {
  await deployWorkspace(NS);
  const pod = (await podsOf("echo", NS))[0]!.name;
  for (let round = 1; round <= rounds; round++) {
    const order: Build[] = round % 2 ? ["base", "new"] : ["new", "base"];
    for (const build of order) {
      console.error(`round ${round}: ${build} connect`);
      await noShadowLeft();
      await counted(build, "connect", () => connectRound(build));
    }
    for (const build of order) {
      console.error(`round ${round}: ${build} forward`);
      await noShadowLeft();
      await counted(build, "forward", () => forwardRound(build, pod));
    }
  }
} finally {
  for (const ktctl of running) await ktctl.stop("SIGINT").catch(() => undefined);
  await kubectl(["delete", "namespace", NS, "--wait=false"]);
  await rm(home, { recursive: true, force: true });
}

const ratio = (base: number, next: number) => (next ? (base / next).toFixed(2) : "-");
console.log(`${rounds} rounds, idle ${idleSeconds} s; base: ${BASE}; new: ${NEW}; ${((Date.now() - started) / 60_000).toFixed(1)} min\n`);
console.log("| start to first answer, median (min-max) | base | new | base/new |");
console.log("|---|---|---|---|");
const timeRows: [string, keyof Figures][] = [
  ["ktctl connect, new shadow, by name (curl http://echo/)", "connectMs"],
  ["- as ktctl reports it (\"Connected ... in\")", "reportedMs"],
  ["ktctl forward, to the local port", "forwardMs"],
];
for (const [label, key] of timeRows) {
  const base = figures.base[key] as number[];
  const next = figures.new[key] as number[];
  console.log(`| ${label} | ${spread(base)} | ${spread(next)} | ${base.length && next.length ? ratio(median(base), median(next)) : "-"}x |`);
}
console.log(`\n| resident memory after ${idleSeconds} s idle, median (MiB): all (anonymous + file-backed) | base | new |`);
console.log("|---|---|---|");
for (const what of ["ktctl connect", "its watchdog", "its shadow"]) {
  const show = (build: Build) => {
    const samples = figures[build].memory[what] ?? [];
    if (!samples.length) return "-";
    const m = (f: "rss" | "anon" | "file") => median(samples.map((s) => s[f])).toFixed(1);
    return `${m("rss")} (${m("anon")} + ${m("file")})`;
  };
  console.log(`| ${what} | ${show("base")} | ${show("new")} |`);
}
for (const build of ["base", "new"] as const) {
  if (figures[build].failures.length) console.log(`\n${build}: ${figures[build].failures.length} round(s) failed: ${figures[build].failures.join("; ")}`);
}
console.log(JSON.stringify({ rounds, idleSeconds, figures }));
