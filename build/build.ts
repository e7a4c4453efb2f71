// `bun run build`: ktctl for every OS, the shadow binary and image, and dist/SHA256SUMS.
// The host's binary is run once before the build counts as done.
//
//   bun build/build.ts [--host-only] [--shadow-only | --no-shadow] [--out-dir dist]
//                      [--entry core/cli/main.ts] [--shadow-entry shadow/main.ts]
//
// --host-only builds the ktctl binary and the shadow image for this machine only (fast CI).

import { readdir, rm } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { compileBinary, runOnce } from "./compile.ts";
import type { Arch } from "./oci.ts";
import { displayPath, mib, seconds } from "./format.ts";
import { buildShadow, hostImageArch, shadowBinaryName, shadowImageFileName } from "./shadow.ts";
import { hostTarget, KTCTL_TARGETS } from "./targets.ts";
import { buildDefines, DEFAULT_SHADOW_IMAGE, VERSION } from "./version.ts";

/** `sha256sum`-compatible lines for every file in `dir` except the sums file itself. */
export async function writeChecksums(dir: string): Promise<string> {
  const names = (await readdir(dir, { withFileTypes: true }))
    .filter((entry) => entry.isFile() && entry.name !== "SHA256SUMS" && !entry.name.startsWith(".") && !entry.name.endsWith(".partial"))
    .map((entry) => entry.name)
    .sort();
  const lines: string[] = [];
  for (const name of names) {
    const hasher = new Bun.CryptoHasher("sha256");
    for await (const chunk of Bun.file(join(dir, name)).stream()) hasher.update(chunk);
    lines.push(`${hasher.digest("hex")}  ${name}\n`);
  }
  const file = join(dir, "SHA256SUMS");
  await Bun.write(file, lines.join(""));
  return file;
}

type BuildFlags = {
  hostOnly: boolean;
  shadowOnly: boolean;
  noShadow: boolean;
  outDir: string;
  entry: string;
  shadowEntry: string;
};

export async function build(flags: BuildFlags): Promise<void> {
  const started = performance.now();
  const defines = buildDefines(VERSION, DEFAULT_SHADOW_IMAGE);
  const host = hostTarget();
  const hostArch = hostImageArch();
  console.log(`ktctl ${VERSION}, shadow image ${DEFAULT_SHADOW_IMAGE}, into ${displayPath(flags.outDir)}/`);

  // A run removes what it is about to produce, so SHA256SUMS never vouches for a stale file.
  const ktctlTargets = flags.shadowOnly ? [] : flags.hostOnly ? (host ? [host] : []) : [...KTCTL_TARGETS];
  if (!flags.shadowOnly && flags.hostOnly && !host) throw new Error(`no ktctl target matches this machine (${process.platform}-${process.arch})`);
  const shadowArches: Arch[] = flags.noShadow ? [] : flags.hostOnly ? (hostArch ? [hostArch] : []) : ["amd64", "arm64"];
  if (!flags.noShadow && shadowArches.length === 0) throw new Error("the shadow image is built on Linux (amd64 or arm64) only; pass --no-shadow");
  const produced = [
    ...ktctlTargets.map((t) => t.file),
    ...shadowArches.flatMap((arch) => [shadowBinaryName(arch), shadowImageFileName(VERSION, arch)]),
  ];
  await Promise.all(produced.map((name) => rm(join(flags.outDir, name), { force: true })));

  for (const target of ktctlTargets) {
    const result = await compileBinary({ entry: flags.entry, target: target.bunTarget, outfile: join(flags.outDir, target.file), defines });
    console.log(`ktctl ${target.id}: ${displayPath(result.outfile)} ${mib(result.bytes)} in ${seconds(result.milliseconds)}`);
    if (target === host) {
      // Run from the repository root on purpose: its bunfig.toml must not leak into the binary.
      const { stdout, milliseconds } = await runOnce(result.outfile, ["version"], { cwd: resolve(import.meta.dir, "..") });
      if (!stdout.includes(VERSION)) throw new Error(`${result.outfile} version printed "${stdout.trim()}", which lacks ${VERSION}`);
      console.log(`ktctl ${target.id}: \`${basename(result.outfile)} version\` -> ${stdout.trim().split("\n")[0]!.replace(/\s+/g, " ")} (${milliseconds} ms)`);
    }
  }

  if (shadowArches.length > 0) {
    const results = await buildShadow({ entry: flags.shadowEntry, outDir: flags.outDir, arches: shadowArches, version: VERSION, image: DEFAULT_SHADOW_IMAGE });
    const skippedHost = results.find((r) => r.arch === hostArch && r.skipped);
    if (skippedHost) throw new Error(`shadow image for ${hostArch} was not built: ${skippedHost.skipped}`);
  }

  const sums = await writeChecksums(flags.outDir);
  console.log(`${displayPath(sums)} written; build took ${seconds(performance.now() - started)}`);
}

if (import.meta.main) {
  const root = resolve(import.meta.dir, "..");
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      "host-only": { type: "boolean", default: false },
      "shadow-only": { type: "boolean", default: false },
      "no-shadow": { type: "boolean", default: false },
      "out-dir": { type: "string", default: join(root, "dist") },
      entry: { type: "string", default: join(root, "core/cli/main.ts") },
      "shadow-entry": { type: "string", default: join(root, "shadow/main.ts") },
    },
  });
  if (values["shadow-only"] && values["no-shadow"]) {
    console.error("build: --shadow-only and --no-shadow exclude each other");
    process.exit(2);
  }
  try {
    await build({
      hostOnly: values["host-only"],
      shadowOnly: values["shadow-only"],
      noShadow: values["no-shadow"],
      outDir: resolve(values["out-dir"]),
      entry: resolve(values.entry),
      shadowEntry: resolve(values["shadow-entry"]),
    });
  } catch (error) {
    console.error(`build: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  }
}
