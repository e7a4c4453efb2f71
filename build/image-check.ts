// Starts an image's entrypoint without a container runtime: the layer is unpacked with the
// system tar, and the entrypoint runs chrooted into it as the image's user, in private mount and
// network namespaces with its own /proc (a compiled Bun binary reads itself via /proc/self/exe).
// It proves the layer carries everything the binary needs to start; it needs root on Linux, and
// qemu-user for an image of another architecture.

import { chmod, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readTar } from "./tar.ts";

export type StartupCheck = {
  /** Appended to the image's Entrypoint (the image's Cmd is not used). */
  args: string[];
  /** Added to the image's Env. */
  env?: Record<string, string>;
  /**
   * When set, the program counts as started once its output matches; it is then sent SIGTERM
   * and must exit 0. Without it the program must exit 0 by itself.
   */
  ready?: RegExp;
  timeoutMs?: number;
};

export type StartupResult = { output: string; milliseconds: number; emulated: boolean } | { skipped: string };

const QEMU_ARCH: Record<string, string> = { amd64: "x86_64", arm64: "aarch64" };

type ImageView = { layer: Uint8Array<ArrayBuffer>; entrypoint: string[]; env: string[]; user: string; arch: string };

function openImage(archive: Uint8Array<ArrayBuffer>, source: string): ImageView {
  const records = readTar(archive);
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  const blob = (digest: string) => {
    const record = records.find((r) => r.path === `blobs/sha256/${digest.replace(/^sha256:/, "")}`);
    if (!record) throw new Error(`${source}: blob ${digest} is missing`);
    return record.data;
  };
  const indexRecord = records.find((r) => r.path === "index.json");
  if (!indexRecord) throw new Error(`${source}: no index.json`);
  const index = JSON.parse(text(indexRecord.data));
  const manifest = JSON.parse(text(blob(index.manifests[0].digest)));
  const config = JSON.parse(text(blob(manifest.config.digest)));
  if (manifest.layers.length !== 1) throw new Error(`${source}: expected one layer, found ${manifest.layers.length}`);
  return {
    layer: blob(manifest.layers[0].digest),
    entrypoint: config.config?.Entrypoint ?? [],
    env: config.config?.Env ?? [],
    user: config.config?.User ?? "0:0",
    arch: config.architecture,
  };
}

export async function checkImageStarts(imageTar: string, check: StartupCheck): Promise<StartupResult> {
  const hostArch = process.arch === "x64" ? "amd64" : process.arch;
  if (process.platform !== "linux") return { skipped: "needs Linux" };
  if (process.getuid?.() !== 0) return { skipped: "chroot needs root" };
  const tools = { unshare: Bun.which("unshare"), sh: Bun.which("sh"), mount: Bun.which("mount"), env: Bun.which("env"), chroot: Bun.which("chroot"), tar: Bun.which("tar") };
  const missing = Object.entries(tools).filter(([, path]) => !path).map(([name]) => name);
  if (missing.length > 0) return { skipped: `missing ${missing.join(", ")}` };

  const image = openImage(await Bun.file(imageTar).bytes(), imageTar);
  // A foreign image runs under qemu's user-mode emulator, whose -L makes the loader and every
  // library lookup land in the image's rootfs, not the host's.
  const emulator = image.arch === hostArch ? undefined : Bun.which(`qemu-${QEMU_ARCH[image.arch] ?? image.arch}`);
  if (image.arch !== hostArch && !emulator) return { skipped: `${image.arch} binaries do not run here (install qemu-user to check them)` };
  if (image.entrypoint.length === 0) throw new Error(`${imageTar}: the image has no Entrypoint`);
  if (!/^\d+(:\d+)?$/.test(image.user)) throw new Error(`${imageTar}: User "${image.user}" must be numeric for this check`);
  const userspec = image.user.includes(":") ? image.user : `${image.user}:${image.user}`;

  const root = await mkdtemp(join(tmpdir(), "ktctl-image-rootfs-"));
  try {
    await chmod(root, 0o755); // a container's "/" is world-readable; mkdtemp's 0700 would lock the user out
    const untar = Bun.spawn([tools.tar!, "-xz", "-C", root], { stdin: image.layer, stderr: "pipe" });
    if ((await untar.exited) !== 0) throw new Error(`tar could not unpack the layer of ${imageTar}: ${await new Response(untar.stderr).text()}`);
    await mkdir(join(root, "proc"), { recursive: true });

    // Without --fork, unshare, sh, env and chroot all exec in turn: the spawned pid ends up being the
    // entrypoint itself, so a signal to it reaches the program under test.
    // `env -i` hands the program exactly the image's Env plus the check's: nothing of the host's
    // (not even the PWD that sh exports). Host tools are called by absolute path.
    const env = [...image.env, ...Object.entries(check.env ?? {}).map(([key, value]) => `${key}=${value}`)];
    const script = 'mount="$1" root="$2"; shift 2; "$mount" -t proc proc "$root/proc" && exec "$@"';
    const program = emulator
      ? [tools.chroot!, `--userspec=${userspec}`, "/", emulator, "-L", root, join(root, image.entrypoint[0]!), ...image.entrypoint.slice(1)]
      : [tools.chroot!, `--userspec=${userspec}`, root, ...image.entrypoint];
    const command = [tools.env!, "-i", ...env, ...program, ...check.args];
    const started = performance.now();
    const proc = Bun.spawn([tools.unshare!, "--mount", "--net", tools.sh!, "-c", script, "sh", tools.mount!, root, ...command], {
      env: {},
      stdout: "pipe",
      stderr: "pipe",
    });
    const deadline = setTimeout(() => proc.kill("SIGKILL"), check.timeoutMs ?? (emulator ? 120_000 : 30_000));
    let output = "";
    let readyAt: number | undefined;
    const collect = async (stream: ReadableStream<Uint8Array>) => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) {
        output += decoder.decode(chunk, { stream: true });
        if (check.ready && readyAt === undefined && check.ready.test(output)) {
          readyAt = performance.now();
          proc.kill("SIGTERM");
        }
      }
    };
    const [, , code] = await Promise.all([collect(proc.stdout), collect(proc.stderr), proc.exited]);
    clearTimeout(deadline);
    const what = [...image.entrypoint, ...check.args].join(" ");
    if (check.ready && readyAt === undefined) throw new Error(`${what} never became ready in its image (exit ${code}${proc.signalCode ? `, ${proc.signalCode}` : ""}):\n${output.trim()}`);
    if (code !== 0) throw new Error(`${what} failed in its image (exit ${code}${proc.signalCode ? `, ${proc.signalCode}` : ""}):\n${output.trim()}`);
    return { output, milliseconds: Math.round((readyAt ?? performance.now()) - started), emulated: emulator !== undefined };
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
