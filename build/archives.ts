// One archive per platform, the form each OS unpacks without extra tools: tar.gz for Linux and
// macOS (the binary as `ktctl`, and `kubectl-ktctl` linked to it so the kubectl plugin route needs
// no copy), zip for Windows (`ktctl.exe`). Each archive is read back before the build goes on.

import { join } from "node:path";
import { concatChunks, readTar, writeTar } from "./tar.ts";
import { executableName, isWindows, type KtctlTarget } from "./targets.ts";
import { writeZip } from "./zip.ts";

export const KUBECTL_PLUGIN_NAME = "kubectl-ktctl";

export const archiveName = (version: string, target: KtctlTarget) =>
  `ktctl-${version}-${target.id}.${isWindows(target) ? "zip" : "tar.gz"}`;

export type Archive = { file: string; bytes: number; sha256: string };

const sha256 = (bytes: Uint8Array) => new Bun.CryptoHasher("sha256").update(bytes).digest("hex");

export async function writeArchive(binary: string, target: KtctlTarget, version: string, outDir: string): Promise<Archive> {
  const data = await Bun.file(binary).bytes();
  const file = join(outDir, archiveName(version, target));
  const mtime = Number(process.env.SOURCE_DATE_EPOCH ?? 0) || 0;
  const archive = isWindows(target)
    ? writeZip([{ path: executableName(target), data, mode: 0o755 }])
    : Bun.gzipSync(
        concatChunks(
          writeTar([
            { type: "file", path: "ktctl", data, mode: 0o755, mtime },
            { type: "symlink", path: KUBECTL_PLUGIN_NAME, target: "ktctl", mtime },
          ]),
        ),
        { level: 9 },
      );
  await Bun.write(file, archive);
  await checkArchive(file, target, sha256(data));
  return { file, bytes: archive.length, sha256: sha256(archive) };
}

/** Reads an archive back: it must hold the binary byte for byte (and the plugin link on Unix). */
export async function checkArchive(file: string, target: KtctlTarget, binarySha256: string): Promise<void> {
  if (isWindows(target)) {
    const unzip = Bun.which("unzip");
    if (!unzip) return; // the zip writer's unit test checks its output with unzip and python
    const test = Bun.spawnSync([unzip, "-tq", file], { stdout: "pipe", stderr: "pipe" });
    if (test.exitCode !== 0) throw new Error(`${file}: unzip -t failed: ${test.stdout.toString()}${test.stderr.toString()}`);
    const extracted = Bun.spawnSync([unzip, "-p", file, executableName(target)], { stdout: "pipe", maxBuffer: 1 << 30 });
    if (sha256(extracted.stdout) !== binarySha256) throw new Error(`${file}: ${executableName(target)} differs from the binary`);
    return;
  }
  const records = readTar(Bun.gunzipSync(await Bun.file(file).bytes()));
  const binary = records.find((r) => r.path === "ktctl" && r.type === "file");
  if (!binary || sha256(binary.data) !== binarySha256 || (binary.mode & 0o111) === 0) throw new Error(`${file}: ktctl is missing, not executable or differs from the binary`);
  if (!records.some((r) => r.path === KUBECTL_PLUGIN_NAME && r.type === "symlink" && r.target === "ktctl")) throw new Error(`${file}: ${KUBECTL_PLUGIN_NAME} -> ktctl is missing`);
}
