// Compiles the shadow (the in-cluster agent) for Linux and packs it as an OCI image tarball:
// the binary, the glibc pieces it links (and nothing else), a non-root user, /tmp.
// The musl Bun targets were measured and rejected: their binaries need musl's libstdc++ as well,
// which no Debian package provides, while the glibc build needs only glibc (about 3 MiB).
//
// CLI: bun build/shadow.ts [--arch amd64|arm64]... [--entry shadow/main.ts] [--out-dir dist]
//        [--image NAME] [--sysroot-arm64 DIR] [--no-startup-check]

import { generateKeyPairSync } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { SHADOW_ENV } from "../core/protocol/tunnel.ts";
import { compileBinary, type CompileResult } from "./compile.ts";
import { displayPath, mib, seconds } from "./format.ts";
import { checkImageStarts, type StartupCheck, type StartupResult } from "./image-check.ts";
import { sharedLibraries, type SharedLibrary } from "./libs.ts";
import { ARCHES, type Arch, type OciImageInfo, type RootfsEntry, sourceDateEpoch, writeOciImage } from "./oci.ts";
import { buildDefines, DEFAULT_SHADOW_IMAGE, VERSION } from "../core/protocol/version.ts";

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
  /** Start the image once in a chroot of its rootfs (host arch, root only); false skips it. */
  startupCheck?: StartupCheck | false;
  log?: (line: string) => void;
};

export type ShadowBuildResult = {
  arch: Arch;
  binary: CompileResult;
  image?: OciImageInfo & { file: string; milliseconds: number };
  /** Why no image was written for this arch. */
  skipped?: string;
  startup?: StartupResult;
};

/** The shadow's root filesystem: everything it needs to start as user 65532, nothing else. */
export function shadowRootfs(binary: string, libraries: readonly SharedLibrary[]): RootfsEntry[] {
  return [
    { type: "file", from: binary, path: SHADOW_BINARY_PATH, mode: 0o755 },
    ...libraries.map((library): RootfsEntry => ({ type: "file", from: library.source, path: library.path, mode: 0o755 })),
    { type: "file", path: "/etc/passwd", content: `root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:${SHADOW_UID}:${SHADOW_UID}:nonroot:${SHADOW_HOME}:/sbin/nologin\n` },
    { type: "file", path: "/etc/group", content: `root:x:0:\nnonroot:x:${SHADOW_UID}:\n` },
    // Spelled out instead of left to glibc's compiled-in order, which asks DNS before /etc/hosts
    // (the file the kubelet writes, hostAliases included).
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
    log(`shadow ${arch}: ${displayPath(outfile)} ${mib(binary.bytes)} in ${seconds(binary.milliseconds)}`);

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
    log(`shadow ${arch}: ${displayPath(file)} ${info.name} ${mib(info.archiveSize)} (${mib(info.layerUncompressedSize)} unpacked) in ${seconds(milliseconds)}`);
    const result: ShadowBuildResult = { arch, binary, image: { ...info, file, milliseconds } };

    if (options.startupCheck !== false) {
      const startup = await checkImageStarts(file, options.startupCheck ?? shadowStartupCheck());
      result.startup = startup;
      if ("skipped" in startup) log(`shadow ${arch}: start-up check skipped: ${startup.skipped}`);
      else log(`shadow ${arch}: started in its own rootfs as ${SHADOW_UID}, without network${startup.emulated ? ", under qemu" : ""}, ready after ${startup.milliseconds} ms`);
    }
    results.push(result);
  }
  return results;
}

/** An OpenSSH public key line for a key nobody keeps: the shadow refuses to start without one. */
export function throwawaySshKey(): string {
  const jwk = generateKeyPairSync("ed25519").publicKey.export({ format: "jwk" });
  const raw = Buffer.from(jwk.x!, "base64url");
  const field = (bytes: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, bytes.length]), bytes]);
  return `ssh-ed25519 ${Buffer.concat([field(Buffer.from("ssh-ed25519")), field(raw)]).toString("base64")} ktctl-build`;
}

/** The shadow as a session starts it (tunnel role), on any free port, until it logs that it is ready. */
export function shadowStartupCheck(): StartupCheck {
  return {
    args: [],
    env: { [SHADOW_ENV.roles]: "tunnel", [SHADOW_ENV.tunnelPort]: "0", [SHADOW_ENV.authorizedKey]: throwawaySshKey() },
    ready: /\bshadow\.ready\b/,
  };
}

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
      "no-startup-check": { type: "boolean", default: false },
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
      startupCheck: values["no-startup-check"] ? false : undefined,
    });
  } catch (error) {
    console.error(`shadow: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  }
}
