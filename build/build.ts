// `bun run build`: ktctl for every OS, the shadow binaries and images (amd64 and arm64), the
// release's packaging (per-OS archives, the npm package set, the krew manifest: see
// build/distribution.ts and docs/distribution.md) and dist/SHA256SUMS. Every binary that can run
// here is run once (the host's natively, linux-arm64 under qemu) and every darwin binary's
// signature is verified before the build counts as done. What the machine lacks for that (an arm64
// C library, qemu-user) is installed with apt-get, only when missing.
//
//   bun build/build.ts [--host-only] [--shadow-only | --no-shadow] [--out-dir dist]
//                      [--entry core/cli/main.ts] [--shadow-entry shadow/main.ts]
//                      [--release-url URL]   (where the krew manifest points; {version} is replaced)
//                      [--version V]         (default: package.json's; a side build whose shadow image
//                                             must not replace the one a cluster already runs)
//
// --host-only builds the ktctl binary and the shadow image for this machine only, and no packaging
// (what test/run needs, in seconds; the packaging code is covered by unit tests).

import { readdir, rm } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { compileBinary, runOnce } from "./compile.ts";
import type { Arch } from "./oci.ts";
import { displayPath, mib, seconds } from "./format.ts";
import { ARM64_LIBC, ensureDebianPackages, QEMU_AARCH64, type DebianNeed } from "./apt.ts";
import { archiveName } from "./archives.ts";
import { checkUnderQemu, packageDistribution, signDarwinBinary, type BuiltBinary } from "./distribution.ts";
import { DEFAULT_RELEASE_URL } from "./krew.ts";
import { buildShadow, hostImageArch, shadowBinaryName, shadowImageFileName } from "./shadow.ts";
import { hostTarget, isDarwin, KTCTL_TARGETS } from "./targets.ts";
import { buildDefines, DEFAULT_SHADOW_IMAGE, shadowImageFor, VERSION } from "../core/protocol/version.ts";

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
  releaseUrl: string;
  version: string;
};

export async function build(flags: BuildFlags): Promise<void> {
  const started = performance.now();
  const version = flags.version;
  const image = version === VERSION ? DEFAULT_SHADOW_IMAGE : shadowImageFor(version);
  const defines = buildDefines(version, image);
  const host = hostTarget();
  const hostArch = hostImageArch();
  console.log(`ktctl ${version}, shadow image ${image}, into ${displayPath(flags.outDir)}/`);

  // A run removes what it is about to produce, so SHA256SUMS never vouches for a stale file.
  const ktctlTargets = flags.shadowOnly ? [] : flags.hostOnly ? (host ? [host] : []) : [...KTCTL_TARGETS];
  if (!flags.shadowOnly && flags.hostOnly && !host) throw new Error(`no ktctl target matches this machine (${process.platform}-${process.arch})`);
  const shadowArches: Arch[] = flags.noShadow ? [] : flags.hostOnly ? (hostArch ? [hostArch] : []) : ["amd64", "arm64"];
  if (!flags.noShadow && shadowArches.length === 0) throw new Error("the shadow image is built on Linux (amd64 or arm64) only; pass --no-shadow");
  const packaging = !flags.hostOnly && !flags.shadowOnly;
  const produced = [
    ...ktctlTargets.map((t) => t.file),
    ...shadowArches.flatMap((arch) => [shadowBinaryName(arch), shadowImageFileName(version, arch)]),
    ...(packaging ? [...KTCTL_TARGETS.map((t) => archiveName(version, t)), "npm", "krew"] : []),
  ];
  await Promise.all(produced.map((name) => rm(join(flags.outDir, name), { force: true, recursive: true })));

  // Foreign linux-arm64 binaries are run under qemu and the arm64 image carries an arm64 libc.
  const needs: DebianNeed[] = [];
  if (shadowArches.includes("arm64") && hostArch !== "arm64") needs.push(ARM64_LIBC);
  if (ktctlTargets.some((t) => t.id === "linux-arm64") && host?.id !== "linux-arm64") needs.push(ARM64_LIBC, QEMU_AARCH64);
  await ensureDebianPackages([...new Set(needs)], (line) => console.log(line));

  const built: BuiltBinary[] = [];
  for (const target of ktctlTargets) {
    const result = await compileBinary({ entry: flags.entry, target: target.bunTarget, outfile: join(flags.outDir, target.file), defines });
    console.log(`ktctl ${target.id}: ${displayPath(result.outfile)} ${mib(result.bytes)} in ${seconds(result.milliseconds)}`);
    if (target === host) {
      // Run from the repository root on purpose: its bunfig.toml must not leak into the binary.
      const { stdout, milliseconds } = await runOnce(result.outfile, ["version", "--client"], { cwd: resolve(import.meta.dir, "..") });
      if (!stdout.includes(version)) throw new Error(`${result.outfile} version printed "${stdout.trim()}", which lacks ${version}`);
      console.log(`ktctl ${target.id}: \`${basename(result.outfile)} version\` -> ${stdout.trim().split("\n")[0]!.replace(/\s+/g, " ")} (${milliseconds} ms)`);
    } else if (target.id === "linux-arm64") {
      await checkUnderQemu(result.outfile, version, (line) => console.log(line));
    }
    if (isDarwin(target)) await signDarwinBinary(result.outfile, (line) => console.log(`ktctl ${target.id}: ${line}`));
    built.push({ target, file: result.outfile });
  }

  if (shadowArches.length > 0) {
    const results = await buildShadow({ entry: flags.shadowEntry, outDir: flags.outDir, arches: shadowArches, version, image });
    const skipped = results.find((r) => r.skipped && (r.arch === hostArch || !flags.hostOnly));
    if (skipped) throw new Error(`shadow image for ${skipped.arch} was not built: ${skipped.skipped}`);
  }

  if (packaging) await packageDistribution({ version, outDir: flags.outDir, binaries: built, releaseUrl: flags.releaseUrl, log: (line) => console.log(line) });

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
      "release-url": { type: "string", default: process.env.KTCTL_RELEASE_URL ?? DEFAULT_RELEASE_URL },
      version: { type: "string", default: VERSION },
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
      releaseUrl: values["release-url"],
      version: values.version,
    });
  } catch (error) {
    console.error(`build: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  }
}
