// The release's packaging, run by the full `bun run build` after the binaries are compiled: darwin
// binaries re-signed and verified, linux-arm64 started under qemu, one archive per platform, the
// npm package set, and the krew manifest. Every artifact is checked as a user would meet it: the
// npm packages are installed from their tarballs and run, and `kubectl ktctl` runs from the
// unpacked archive through kubectl.

import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { ARM64_SYSROOT, QEMU_AARCH64 } from "./apt.ts";
import { type Archive, KUBECTL_PLUGIN_NAME, writeArchive } from "./archives.ts";
import { runOnce } from "./compile.ts";
import { displayPath, mib } from "./format.ts";
import { krewManifest } from "./krew.ts";
import { signAdHoc, verifySignature } from "./macho-sign.ts";
import { installFromTarballs, packNpmPackages } from "./npm.ts";
import { hostTarget, type KtctlTarget } from "./targets.ts";

type Log = (line: string) => void;
export type BuiltBinary = { target: KtctlTarget; file: string };

/** Replaces Bun's stale signature with an ad hoc one and proves the result verifies. */
export async function signDarwinBinary(file: string, log: Log): Promise<void> {
  const before = verifySignature(await Bun.file(file).bytes(), basename(file));
  const signed = signAdHoc(await Bun.file(file).bytes(), "ktctl", basename(file));
  await Bun.write(file, signed);
  const after = verifyDarwinBinary(signed, file);
  const was = before.problems.length === 0 ? `a valid signature (${before.identifier})` : `a stale signature (${before.problems.join("; ")})`;
  log(`signed ${displayPath(file)} ad hoc as "${after.identifier}": ${after.pages} page hashes verified; it had ${was}`);
}

/** Our own check of a darwin binary's CodeDirectory hashes: a mismatch fails the build. */
export function verifyDarwinBinary(bytes: Uint8Array, file: string) {
  const check = verifySignature(bytes, basename(file));
  if (check.problems.length > 0) throw new Error(`${file}: the code signature does not verify: ${check.problems.join("; ")}`);
  return check;
}

/** A linux-arm64 binary must start: `--help` and `version --client` under qemu-user. */
export async function checkUnderQemu(file: string, version: string, log: Log): Promise<void> {
  const qemu = QEMU_AARCH64.provides;
  const help = await runOnce(qemu, ["-L", ARM64_SYSROOT, file, "--help"], { timeoutMs: 120_000 });
  if (!help.stdout.includes("USAGE ktctl")) throw new Error(`${file} --help under qemu printed no usage:\n${help.stdout}`);
  const { stdout, milliseconds } = await runOnce(qemu, ["-L", ARM64_SYSROOT, file, "version", "--client"], { timeoutMs: 120_000 });
  if (!stdout.includes(version) || !stdout.includes("linux/arm64")) throw new Error(`${file} version under qemu printed "${stdout.trim()}"`);
  log(`ktctl linux-arm64: --help and version run under qemu-aarch64 (${milliseconds} ms)`);
}

export type Distribution = { archives: (Archive & { target: KtctlTarget })[]; npmTarballs: string[]; krew: string };

export async function packageDistribution(options: { version: string; outDir: string; binaries: BuiltBinary[]; releaseUrl: string; log: Log }): Promise<Distribution> {
  const { version, outDir, binaries, log } = options;
  const archives: Distribution["archives"] = [];
  for (const { target, file } of binaries) {
    const archive = await writeArchive(file, target, version, outDir);
    archives.push({ ...archive, target });
    log(`archive ${target.id}: ${displayPath(archive.file)} ${mib(archive.bytes)}`);
  }

  const npmDir = join(outDir, "npm");
  const packages = await packNpmPackages(version, binaries, npmDir);
  log(`npm: ${[packages.main, ...packages.platforms.map((p) => p.tarball)].map((t) => basename(t)).join(", ")} in ${displayPath(npmDir)}/`);
  const host = hostTarget();
  const hostPackage = packages.platforms.find((p) => p.target === host);
  if (hostPackage && host?.platform !== "win32") await checkNpmInstall(packages.main, hostPackage.tarball, version, log);

  const krewDir = join(outDir, "krew");
  await mkdir(krewDir, { recursive: true });
  const krew = join(krewDir, "ktctl.yaml");
  await Bun.write(krew, krewManifest(version, archives, options.releaseUrl));
  log(`krew: ${displayPath(krew)} (${archives.length} platforms, archives under ${options.releaseUrl.replaceAll("{version}", version)})`);
  const hostArchive = archives.find((a) => a.target === host);
  if (hostArchive && host?.platform !== "win32") await checkKubectlPlugin(hostArchive.file, version, log);

  return { archives, npmTarballs: [packages.main, ...packages.platforms.map((p) => p.tarball)], krew };
}

/** `npm i -g` of ktctl and this platform's package from their tarballs, then both bins run. */
async function checkNpmInstall(main: string, platform: string, version: string, log: Log): Promise<void> {
  const installed = await installFromTarballs([main, platform]);
  try {
    const { stdout } = await runOnce(installed.bin("ktctl"), ["version", "--client"]);
    if (!stdout.includes(version)) throw new Error(`ktctl installed from the npm tarballs printed "${stdout.trim()}"`);
    const help = await runOnce(installed.bin(KUBECTL_PLUGIN_NAME), ["--help"]);
    if (!help.stdout.includes("USAGE kubectl ktctl")) throw new Error(`${KUBECTL_PLUGIN_NAME} from npm does not call itself "kubectl ktctl":\n${help.stdout}`);
    log(`npm: installed from the tarballs (offline); ktctl and ${KUBECTL_PLUGIN_NAME} run`);
  } finally {
    await installed.remove();
  }
}

/** Unpacks the archive as a user would and runs `kubectl ktctl version` with it on PATH. */
async function checkKubectlPlugin(archive: string, version: string, log: Log): Promise<void> {
  const kubectl = Bun.which("kubectl");
  if (!kubectl) {
    log("kubectl plugin: not checked through kubectl (no kubectl on PATH)");
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), "ktctl-plugin-"));
  try {
    const untar = Bun.spawnSync(["tar", "-xzf", resolve(archive), "-C", dir], { stderr: "pipe" });
    if (untar.exitCode !== 0) throw new Error(`tar could not unpack ${archive}: ${untar.stderr.toString()}`);
    const proc = Bun.spawnSync([kubectl, "ktctl", "version", "--client"], {
      env: { ...process.env, PATH: `${dir}:${process.env.PATH}`, NO_COLOR: "1" },
      stdout: "pipe",
      stderr: "pipe",
      timeout: 30_000,
    });
    const out = proc.stdout.toString();
    if (proc.exitCode !== 0 || !out.includes(version)) throw new Error(`kubectl ktctl version (from ${basename(archive)}) failed:\n${out}${proc.stderr.toString()}`);
    const help = Bun.spawnSync([kubectl, "ktctl", "connect", "--help"], { env: { ...process.env, PATH: `${dir}:${process.env.PATH}`, NO_COLOR: "1" }, stdout: "pipe" });
    if (!help.stdout.toString().includes("kubectl ktctl connect")) throw new Error(`kubectl ktctl connect --help does not name itself "kubectl ktctl connect"`);
    log(`kubectl plugin: \`kubectl ktctl version\` runs from ${basename(archive)}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
