// One `bun build --compile` with the flags every ktctl binary needs (see the project's Bun notes):
// --bytecode only works together with --format=esm, and a failed bytecode step still exits 0, so its
// message is treated as the failure it is; the autoload flags stop a binary from reading the
// `.env` and `bunfig.toml` of whatever directory a user runs it in.

import { mkdir, stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";

export type CompileOptions = {
  entry: string;
  /** A Bun compile target, e.g. bun-linux-x64, bun-linux-x64-baseline, bun-windows-x64. */
  target: string;
  outfile: string;
  defines?: Record<string, string>;
  cwd?: string;
};

export type CompileResult = { outfile: string; bytes: number; milliseconds: number };

export const COMPILE_FLAGS = [
  "--compile",
  "--minify",
  "--bytecode",
  "--format=esm",
  "--no-compile-autoload-dotenv",
  "--no-compile-autoload-bunfig",
] as const;

export function compileArgs(options: CompileOptions): string[] {
  const defines = Object.entries(options.defines ?? {}).flatMap(([key, value]) => ["--define", `${key}=${value}`]);
  return ["build", ...COMPILE_FLAGS, `--target=${options.target}`, ...defines, options.entry, "--outfile", options.outfile];
}

export async function compileBinary(options: CompileOptions): Promise<CompileResult> {
  const entry = resolve(options.entry);
  const outfile = resolve(options.outfile);
  if (!(await Bun.file(entry).exists())) throw new Error(`entry ${options.entry} does not exist`);
  await mkdir(dirname(outfile), { recursive: true });
  const started = performance.now();
  // bun writes a temporary ".<hash>.bun-build" file (the size of the binary) into its working
  // directory; run it in the output directory so that file never lands in the source tree.
  const proc = Bun.spawn([process.execPath, ...compileArgs({ ...options, entry, outfile })], {
    cwd: options.cwd ?? dirname(outfile),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  const output = `${stdout}${stderr}`.trim();
  if (code !== 0) throw new Error(`bun build for ${options.target} failed (exit ${code}):\n${output}`);
  if (/failed to generate bytecode/i.test(output)) throw new Error(`bun build for ${options.target} could not generate bytecode:\n${output}`);
  const { size } = await stat(outfile);
  return { outfile, bytes: size, milliseconds: Math.round(performance.now() - started) };
}

/** Runs a freshly built binary once; a binary that cannot start must fail the build, not the user. */
export async function runOnce(binary: string, args: string[], options: { cwd?: string; timeoutMs?: number } = {}): Promise<{ stdout: string; milliseconds: number }> {
  const started = performance.now();
  const proc = Bun.spawn([binary, ...args], { cwd: options.cwd, stdout: "pipe", stderr: "pipe", timeout: options.timeoutMs ?? 30_000 });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) {
    const why = proc.signalCode ? `killed by ${proc.signalCode}` : `exit ${code}`;
    throw new Error(`${binary} ${args.join(" ")} did not run (${why}):\n${`${stdout}${stderr}`.trim()}`);
  }
  return { stdout, milliseconds: Math.round(performance.now() - started) };
}
