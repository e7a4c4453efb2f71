// Compiles the shadow (the in-cluster agent) for Linux and packs it as an OCI image tarball:
// the binary, the glibc pieces it links (and nothing else), a non-root user, /tmp.
// The musl Bun targets were measured and rejected: their binaries need musl's libstdc++ as well,
// which no Debian package provides, while the glibc build needs only glibc (about 3 MiB).
//
// CLI: bun build/shadow.ts [--arch amd64|arm64]... [--entry shadow/main.ts] [--out-dir dist]
//        [--image NAME] [--sysroot-arm64 DIR] [--no-smoke]

import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { compileBinary, type CompileResult } from "./compile.ts";
import { sharedLibraries, type SharedLibrary } from "./libs.ts";
import { ARCHES, type Arch, type OciImageInfo, type RootfsEntry, sourceDateEpoch, writeOciImage } from "./oci.ts";
import { readTar } from "./tar.ts";
import { buildDefines, DEFAULT_SHADOW_IMAGE, VERSION } from "./version.ts";

export const SHADOW_BINARY_PATH = "/usr/local/bin/ktctl-shadow";
export const SHADOW_UID = 65532;
const SHADOW_HOME = "/home/nonroot";

// x64 uses Bun's baseline build: cluster nodes are often VMs whose CPU model hides AVX2, where the
// default build dies with SIGILL before printing anything.
const BUN_TARGET: Record<Arch, string> = { amd64: "bun-linux-x64-baseline", arm64: "bun-linux-arm64" };
const DEFAULT_SYSROOT: Record<Arch, string> = { amd64: "/usr/x86_64-linux-gnu", arm64: "/usr/aarch64-linux-gnu" };

export const hostImageArch = (): Arch | undefined =>
  process.platform !== "linux" ? undefined : process.arch === "x64" ? "amd64" : process.arch === "arm64" ? "arm64" : undefined;

export const shadowBinaryName = (arch: Arch) => `ktctl-shadow-linux-${arch}`;
export const shadowImageFileName = (version: string, arch: Arch) => `shadow-image-${version}-${arch}.tar`;

export type ShadowBuildOptions = {
  entry: string;
  outDir: string;
  arches: readonly Arch[];
  version?: string;
  image?: string;
  /** Where a foreign architecture's glibc lives; the host's own libraries are found with ldd. */
  sysroots?: Partial<Record<Arch, string>>;
  /** Run the image's entrypoint once in a chroot of its rootfs (host arch, root only). */
  smokeArgs?: string[] | false;
  log?: (line: string) => void;
};

export type ShadowBuildResult = {
  arch: Arch;
  binary: CompileResult;
  image?: OciImageInfo & { file: string; milliseconds: number };
  /** Why no image was written for this arch. */
  skipped?: string;
  smoke?: { output: string; milliseconds: number } | { skipped: string };
};

/** The shadow's root filesystem: everything it needs to start as user 65532, nothing else. */
export function shadowRootfs(binary: string, libraries: readonly SharedLibrary[]): RootfsEntry[] {
  return [
    { type: "file", from: binary, path: SHADOW_BINARY_PATH, mode: 0o755 },
    ...libraries.map((library): RootfsEntry => ({ type: "file", from: library.source, path: library.path, mode: 0o755 })),
    { type: "file", path: "/etc/passwd", content: `root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:${SHADOW_UID}:${SHADOW_UID}:nonroot:${SHADOW_HOME}:/sbin/nologin\n` },
    { type: "file", path: "/etc/group", content: `root:x:0:\nnonroot:x:${SHADOW_UID}:\n` },
    // glibc's built-in default would also try NIS-era sources; say plainly: files, then DNS.
    { type: "file", path: "/etc/nsswitch.conf", content: "passwd: files\ngroup: files\nhosts: files dns\n" },
    { type: "dir", path: "/tmp", mode: 0o1777 },
    { type: "dir", path: SHADOW_HOME, mode: 0o700, uid: SHADOW_UID, gid: SHADOW_UID },
  ];
}

export async function buildShadow(options: ShadowBuildOptions): Promise<ShadowBuildResult[]> {
  const log = options.log ?? ((line: string) => console.log(line));
  const version = options.version ?? VERSION;
  const image = options.image ?? DEFAULT_SHADOW_IMAGE;
  const created = sourceDateEpoch();
  await mkdir(options.outDir, { recursive: true });
  const results: ShadowBuildResult[] = [];

  for (const arch of options.arches) {
    const outfile = join(options.outDir, shadowBinaryName(arch));
    const binary = await compileBinary({ entry: options.entry, target: BUN_TARGET[arch], outfile, defines: buildDefines(version, image) });
    log(`shadow ${arch}: ${outfile} ${mib(binary.bytes)} in ${seconds(binary.milliseconds)}`);

    const foreign = arch !== hostImageArch();
    const sysroot = options.sysroots?.[arch] ?? (foreign ? DEFAULT_SYSROOT[arch] : undefined);
    if (sysroot !== undefined && !existsSync(sysroot)) {
      const skipped = `no ${arch} glibc under ${sysroot} (Debian: apt-get install libc6-${arch}-cross, or pass --sysroot-${arch} DIR)`;
      log(`shadow ${arch}: image skipped: ${skipped}`);
      results.push({ arch, binary, skipped });
      continue;
    }
    const libraries = await sharedLibraries(outfile, { sysroot });
    const started = performance.now();
    const file = join(options.outDir, shadowImageFileName(version, arch));
    const info = await writeOciImage(
      {
        name: image,
        arch,
        created,
        entries: shadowRootfs(outfile, libraries),
        config: {
          entrypoint: [SHADOW_BINARY_PATH],
          user: `${SHADOW_UID}:${SHADOW_UID}`,
          env: ["PATH=/usr/local/bin:/usr/bin:/bin", `HOME=${SHADOW_HOME}`],
          workingDir: SHADOW_HOME,
          labels: {
            "org.opencontainers.image.title": "ktctl-shadow",
            "org.opencontainers.image.description": "ktctl in-cluster agent",
            "org.opencontainers.image.version": version,
          },
        },
      },
      file,
    );
    const milliseconds = Math.round(performance.now() - started);
    log(`shadow ${arch}: ${file} ${info.name} ${mib(info.archiveSize)} (${mib(info.layerUncompressedSize)} unpacked) in ${seconds(milliseconds)}`);
    const result: ShadowBuildResult = { arch, binary, image: { ...info, file, milliseconds } };

    if (options.smokeArgs !== false) {
      result.smoke = await smokeTestImage(file, arch, options.smokeArgs ?? ["version"]);
      if ("output" in result.smoke) log(`shadow ${arch}: ran in its own rootfs as ${SHADOW_UID}: ${result.smoke.output.trim().split("\n")[0]} (${result.smoke.milliseconds} ms)`);
      else log(`shadow ${arch}: start-up check skipped: ${result.smoke.skipped}`);
    }
    results.push(result);
  }
  return results;
}

/**
 * Unpacks the image's layer with the system tar and runs the entrypoint in a chroot of it, as the
 * image's user, with a private /proc (a compiled Bun binary reads itself through /proc/self/exe).
 * This proves the layer holds every library the binary needs, without a container runtime.
 */
export async function smokeTestImage(imageTar: string, arch: Arch, args: string[]): Promise<{ output: string; milliseconds: number } | { skipped: string }> {
  if (arch !== hostImageArch()) return { skipped: `${arch} binaries do not run on this machine` };
  if (process.getuid?.() !== 0) return { skipped: "chroot needs root" };
  if (!Bun.which("unshare") || !Bun.which("chroot") || !Bun.which("tar")) return { skipped: "unshare, chroot or tar is missing" };

  const records = readTar(await Bun.file(imageTar).bytes());
  const blob = (digest: string) => {
    const record = records.find((r) => r.path === `blobs/sha256/${digest.replace(/^sha256:/, "")}`);
    if (!record) throw new Error(`${imageTar}: blob ${digest} is missing`);
    return record.data;
  };
  const index = JSON.parse(new TextDecoder().decode(records.find((r) => r.path === "index.json")!.data));
  const manifest = JSON.parse(new TextDecoder().decode(blob(index.manifests[0].digest)));
  const root = await mkdtemp(join(tmpdir(), "ktctl-shadow-rootfs-"));
  try {
    await chmod(root, 0o755); // a container's "/" is world-readable; mkdtemp's 0700 would lock the user out
    const untar = Bun.spawn(["tar", "-xz", "-C", root], { stdin: blob(manifest.layers[0].digest), stderr: "pipe" });
    if ((await untar.exited) !== 0) throw new Error(`tar could not unpack the layer of ${imageTar}: ${await new Response(untar.stderr).text()}`);
    await mkdir(join(root, "proc"));
    const script = 'root="$1"; shift; mount -t proc proc "$root/proc" && exec chroot --userspec=65532:65532 "$root" "$@"';
    const started = performance.now();
    const proc = Bun.spawn(["unshare", "--mount", "--pid", "--fork", "--kill-child", "sh", "-c", script, "sh", root, SHADOW_BINARY_PATH, ...args], {
      stdout: "pipe",
      stderr: "pipe",
      timeout: 30_000,
    });
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    if (code !== 0) throw new Error(`the shadow image's entrypoint did not run (${SHADOW_BINARY_PATH} ${args.join(" ")}, exit ${code}):\n${`${stdout}${stderr}`.trim()}`);
    return { output: stdout, milliseconds: Math.round(performance.now() - started) };
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

export const mib = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MiB`;
export const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

if (import.meta.main) {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      arch: { type: "string", multiple: true },
      entry: { type: "string", default: "shadow/main.ts" },
      "out-dir": { type: "string", default: "dist" },
      image: { type: "string" },
      "sysroot-amd64": { type: "string" },
      "sysroot-arm64": { type: "string" },
      "no-smoke": { type: "boolean", default: false },
    },
  });
  const arches = (values.arch ?? [hostImageArch() ?? "amd64"]) as Arch[];
  for (const arch of arches) {
    if (!ARCHES.includes(arch)) {
      console.error(`shadow: --arch must be one of ${ARCHES.join(", ")}`);
      process.exit(2);
    }
  }
  try {
    await buildShadow({
      entry: resolve(values.entry),
      outDir: resolve(values["out-dir"]),
      arches,
      image: values.image,
      sysroots: { amd64: values["sysroot-amd64"], arm64: values["sysroot-arm64"] },
      smokeArgs: values["no-smoke"] ? false : undefined,
    });
  } catch (error) {
    console.error(`shadow: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  }
}
