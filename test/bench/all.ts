// Every benchmark in one go, from the compiled binary: forward, connect, exchange and mesh (each
// side by side with kubectl port-forward or the direct path, as the scripts already measure), and
// the peers (kt-connect v0.3.7 and kubefwd, built from their public source by
// test/bench/anchors/build.sh into KTCTL_BENCH_ANCHORS; skipped with a message when absent).
// Writes one Markdown table and one JSON file with both sides, the ratio and the goal of issue 11
// for every row, plus each script's own output (its fuller tables) beside them.
//   bun test/bench/all.ts [--quick] [--out dist/bench] [--only forward,connect,...] [--bin PATH]
//   bun test/bench/all.ts --from dist/bench/results.json   the table again from a run's figures
//                                                          (after a change to report.ts), no run
// --quick: one round each and smaller loads (about 10 minutes). Needs the test cluster
// (test/cluster/up) and `bun run build --host-only` (dist/ktctl-linux-x64). Not a test: nothing
// here is part of test/run. Ratios from one run count; absolute figures are noisy on a shared
// machine.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { BENCH_LAPTOP_NS, anchorsDir } from "./anchors/paths.ts";
import { GOALS, rowsOf, type BenchOutputs, type Row } from "./report.ts";

const REPO = resolve(import.meta.dir, "../..");
const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    out: { type: "string", default: join(REPO, "dist/bench") },
    only: { type: "string" },
    bin: { type: "string", default: process.env.KTCTL_E2E_BIN ?? join(REPO, "dist/ktctl-linux-x64") },
    from: { type: "string" },
  },
});
const out = resolve(values.out);
mkdirSync(out, { recursive: true });

/** Each benchmark script and its arguments, full and quick. */
const BENCHES: { name: keyof BenchOutputs; script: string; full: string[]; quick: string[] }[] = [
  { name: "forward", script: "forward.bench.ts", full: ["--rounds", "3", "--variant", "shadow=ARGS=--via shadow"], quick: ["--rounds", "1", "--mib", "32", "--requests", "200", "--batches", "4"] },
  {
    name: "connect",
    script: "connect.bench.ts",
    full: ["--rounds", "3"],
    quick: ["--rounds", "1", "--mib", "32", "--requests", "200", "--batches", "4", "--services", "500", "--endpoints", "500", "--concurrency", "100"],
  },
  { name: "exchange", script: "exchange.bench.ts", full: ["--rounds", "3"], quick: ["--rounds", "1", "--loadRounds", "1", "--requests", "200"] },
  { name: "mesh", script: "mesh.bench.ts", full: ["--rounds", "3"], quick: ["--rounds", "1", "--seconds", "3"] },
  { name: "peers", script: "peers.bench.ts", full: ["--rounds", "3"], quick: ["--rounds", "1", "--mib", "32", "--requests", "200", "--seconds", "3"] },
];

/** What one run of the benchmarks gave: the table is made from this, then or later (--from). */
interface RunRecord {
  started: string;
  minutes: number;
  quick: boolean;
  binary: string;
  anchors: boolean;
  skipped: Record<string, string>;
  timings: Record<string, number>;
  outputs: BenchOutputs;
}

async function runAll(quick: boolean, binary: string): Promise<RunRecord> {
  if (!existsSync(binary)) {
    console.error(`no compiled ktctl at ${binary}: run \`bun run build --host-only\` first (or pass --bin)`);
    process.exit(2);
  }
  const only = values.only ? new Set(values.only.split(",")) : undefined;

  // The scripts choose ktctl through the harnesses: KTCTL_E2E_BIN (harness.ts) and
  // KTCTL_E2E_SCENARIO_ARGV (exchange-harness.ts); both name the compiled binary here.
  // Every script runs its laptop side in the benchmarks' own network namespace (anchors/netns.sh),
  // built like ktctl-laptop: tests running meanwhile there (another connect owning resolv.conf, routes
  // left by a killed run) cannot fail a benchmark or share its figures.
  const netnsScript = join(REPO, "test/bench/anchors/netns.sh");
  const netns = Bun.spawnSync([netnsScript, "up"], { stderr: "pipe" });
  if (netns.exitCode !== 0) {
    console.error(`${netnsScript} up failed: ${netns.stderr.toString()}`);
    process.exit(2);
  }
  const env = { ...process.env, KTCTL_E2E_BIN: binary, KTCTL_E2E_SCENARIO_ARGV: JSON.stringify([binary]), KTCTL_E2E_LAPTOP_NS: BENCH_LAPTOP_NS };

  const outputs: BenchOutputs = {};
  const skipped: Record<string, string> = {};
  const timings: Record<string, number> = {};
  const started = Date.now();
  for (const bench of BENCHES) {
    if (only && !only.has(bench.name)) continue;
    const args = quick ? bench.quick : bench.full;
    console.error(`== ${bench.name}: bun test/bench/${bench.script} ${args.join(" ")}`);
    const t0 = Date.now();
    const proc = Bun.spawn(["bun", join(REPO, "test/bench", bench.script), ...args], { cwd: REPO, env, stdout: "pipe", stderr: "pipe" });
    // Progress goes to our stderr as it comes and into the log file.
    const errChunks: string[] = [];
    const errPump = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of proc.stderr as ReadableStream<Uint8Array>) {
        const text = decoder.decode(chunk);
        errChunks.push(text);
        process.stderr.write(text.replace(/^(?=.)/gm, `  [${bench.name}] `));
      }
    })();
    const stdout = await new Response(proc.stdout).text();
    const code = await proc.exited;
    await errPump;
    timings[bench.name] = (Date.now() - t0) / 1000;
    writeFileSync(join(out, `${bench.name}.md`), stdout);
    writeFileSync(join(out, `${bench.name}.log`), errChunks.join(""));
    const lastLine = stdout.trim().split("\n").pop() ?? "";
    if (code === 3) {
      skipped[bench.name] = lastLine;
      console.error(`   skipped: ${lastLine}`);
      continue;
    }
    if (code !== 0) {
      skipped[bench.name] = `failed (exit ${code}); see ${bench.name}.log: ${errChunks.join("").trim().split("\n").slice(-3).join(" / ")}`;
      console.error(`   ${skipped[bench.name]}`);
      continue;
    }
    try {
      (outputs as Record<string, unknown>)[bench.name] = JSON.parse(lastLine);
    } catch {
      skipped[bench.name] = "no JSON line in its output";
    }
    console.error(`   done in ${timings[bench.name]!.toFixed(0)} s`);
  }

  Bun.spawnSync([netnsScript, "down"]);
  return {
    started: new Date(started).toISOString(),
    minutes: (Date.now() - started) / 60000,
    quick,
    binary: relative(REPO, binary),
    anchors: Boolean(anchorsDir()),
    skipped,
    timings,
    outputs,
  };
}

const run: RunRecord = values.from ? recordFrom(values.from) : await runAll(values.quick, resolve(values.bin));

/** A run's record from its results.json (files written before --from existed lack minutes and anchors). */
function recordFrom(file: string): RunRecord {
  const saved = JSON.parse(readFileSync(file, "utf8")) as Partial<RunRecord> & Pick<RunRecord, "started" | "outputs" | "timings" | "skipped">;
  return {
    ...saved,
    quick: saved.quick ?? false,
    binary: relative(REPO, resolve(REPO, saved.binary ?? "dist/ktctl-linux-x64")),
    minutes: saved.minutes ?? Object.values(saved.timings).reduce((sum, seconds) => sum + seconds, 0) / 60,
    anchors: saved.anchors ?? Boolean(saved.outputs.peers),
  };
}
const { outputs, skipped, timings, quick } = run;

const rows: Row[] = rowsOf(outputs);
const fmt = (v: number | undefined, digits = 2) => (v === undefined || !Number.isFinite(v) ? "-" : v.toFixed(digits));
const lines = [
  `# ktctl benchmarks${quick ? " (--quick)" : ""}`,
  "",
  `Run ${run.started}, ${run.minutes.toFixed(1)} min; ktctl: ${run.binary}; anchors: ${run.anchors ? "built (KTCTL_BENCH_ANCHORS)" : "none (KTCTL_BENCH_ANCHORS unset)"}.`,
  "Ratio: how many times better ktctl is than the other side (> 1: ktctl better), whichever way the metric runs;",
  "for an added-time goal the column holds the difference in ms. Absolute figures are noisy (2 shared cores); ratios within one run count.",
  "",
  "| area | metric | ktctl | other side | other | ratio / diff | goal | met |",
  "|---|---|---|---|---|---|---|---|",
  ...rows.map(
    (r) =>
      `| ${r.area} | ${r.metric} | ${fmt(r.ktctl)} | ${r.otherName} | ${fmt(r.other)} | ${r.kind === "diff" ? `${fmt(r.value, 2)} ms` : r.kind === "ratio" ? `${fmt(r.value)}x` : ""} | ${r.goal ?? ""} | ${r.met === undefined ? "" : r.met ? "yes" : "**no**"} |`,
  ),
  "",
  ...Object.entries(skipped).map(([name, why]) => `- ${name}: ${why}`),
  "",
  `Per-script tables: ${Object.keys(timings).map((n) => `${n}.md`).join(", ")} (same directory). Times: ${Object.entries(timings).map(([n, s]) => `${n} ${s.toFixed(0)} s`).join(", ")}.`,
  "",
];
writeFileSync(join(out, "results.md"), lines.join("\n"));
writeFileSync(join(out, "results.json"), JSON.stringify({ ...run, goals: GOALS, rows }, null, 2));
console.log(lines.join("\n"));
console.error(`wrote ${join(out, "results.md")} and results.json`);
