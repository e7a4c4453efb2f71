// Writes a one-layer OCI image layout as a tar file, without Docker or a registry, in a form that
// `ctr -n k8s.io images import` takes as is. Output is reproducible: entries sorted, owners and
// mtimes fixed (SOURCE_DATE_EPOCH or 0), and no host names, users or times leak into it.
//
// CLI: bun build/oci.ts --name NAME --out FILE.tar [--file SRC:DST[:MODE[:UID:GID]]]...
//        [--symlink TARGET:LINK]... [--dir PATH[:MODE[:UID:GID]]]... [--entrypoint JSON] [--cmd JSON]
//        [--env K=V]... [--user U] [--workdir D] [--expose PORT[/PROTO]]... [--label K=V]... [--arch amd64]

import { rename, stat } from "node:fs/promises";
import { parseArgs } from "node:util";
import { concatChunks, normalizeTarPath, type TarEntry, writeTar } from "./tar.ts";

export type Arch = "amd64" | "arm64";
export const ARCHES: readonly Arch[] = ["amd64", "arm64"];

type Owner = { uid?: number; gid?: number };
export type RootfsEntry =
  | ({ type: "file"; path: string; from: string; mode?: number } & Owner)
  | ({ type: "file"; path: string; content: string | Uint8Array; mode?: number } & Owner)
  | ({ type: "dir"; path: string; mode?: number } & Owner)
  | ({ type: "symlink"; path: string; target: string } & Owner);

export type ImageConfig = {
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
  user?: string;
  workingDir?: string;
  exposedPorts?: string[];
  labels?: Record<string, string>;
};

export type ImageSpec = {
  name: string;
  arch: Arch;
  entries: readonly RootfsEntry[];
  config?: ImageConfig;
  /** Seconds since the epoch, used for every mtime and the config's `created`. */
  created?: number;
};

export type ImageRef = { domain: string; repository: string; tag: string; fullName: string };

export type OciImageInfo = {
  name: string;
  tag: string;
  manifestDigest: string;
  configDigest: string;
  layerDigest: string;
  diffId: string;
  layerSize: number;
  layerUncompressedSize: number;
  archiveSize: number;
};

export const MEDIA_TYPES = {
  index: "application/vnd.oci.image.index.v1+json",
  manifest: "application/vnd.oci.image.manifest.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
  layerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
} as const;

const TAG_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const REPOSITORY_PATTERN = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;

/** Normalizes a reference the way containerd names images: `ktctl/shadow:1` -> `docker.io/ktctl/shadow:1`. */
export function parseImageName(name: string): ImageRef {
  if (name.includes("@")) throw new Error(`image name "${name}": digest references cannot name a new image`);
  const lastSlash = name.lastIndexOf("/");
  const colon = name.lastIndexOf(":");
  const hasTag = colon > lastSlash;
  const tag = hasTag ? name.slice(colon + 1) : "latest";
  const withoutTag = hasTag ? name.slice(0, colon) : name;
  const slash = withoutTag.indexOf("/");
  const first = slash < 0 ? "" : withoutTag.slice(0, slash);
  const hasDomain = first !== "" && (first.includes(".") || first.includes(":") || first === "localhost");
  const domain = hasDomain ? first : "docker.io";
  let repository = hasDomain ? withoutTag.slice(slash + 1) : withoutTag;
  if (domain === "docker.io" && !repository.includes("/")) repository = `library/${repository}`;
  if (!TAG_PATTERN.test(tag)) throw new Error(`image name "${name}": bad tag "${tag}"`);
  if (!REPOSITORY_PATTERN.test(repository)) throw new Error(`image name "${name}": bad repository "${repository}"`);
  return { domain, repository, tag, fullName: `${domain}/${repository}:${tag}` };
}

export function sourceDateEpoch(env: Record<string, string | undefined> = process.env): number {
  const raw = env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw === "") return 0;
  const seconds = Number(raw);
  if (!Number.isInteger(seconds) || seconds < 0) throw new Error(`SOURCE_DATE_EPOCH="${raw}" is not a whole number of seconds`);
  return seconds;
}

/** The uncompressed layer: every parent directory present, entries sorted by path. */
export async function buildLayerTar(entries: readonly RootfsEntry[], mtime = 0): Promise<Uint8Array<ArrayBuffer>> {
  const byPath = new Map<string, TarEntry>();
  for (const entry of entries) {
    const tarEntry = await toTarEntry(entry, mtime);
    const key = tarEntry.path.replace(/\/$/, "");
    if (byPath.has(key)) throw new Error(`rootfs: "${entry.path}" is listed twice`);
    byPath.set(key, tarEntry);
  }
  for (const key of [...byPath.keys()]) {
    const parts = key.split("/");
    for (let depth = 1; depth < parts.length; depth++) {
      const parent = parts.slice(0, depth).join("/");
      const existing = byPath.get(parent);
      if (existing === undefined) byPath.set(parent, { type: "dir", path: `${parent}/`, mode: 0o755, mtime });
      else if (existing.type !== "dir") throw new Error(`rootfs: "${parent}" is a ${existing.type} but holds "${key}"`);
    }
  }
  const sorted = [...byPath.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, entry]) => entry);
  return concatChunks(writeTar(sorted));
}

async function toTarEntry(entry: RootfsEntry, mtime: number): Promise<TarEntry> {
  const owner = { uid: entry.uid ?? 0, gid: entry.gid ?? 0, mtime };
  switch (entry.type) {
    case "dir":
      return { type: "dir", path: normalizeTarPath(entry.path, true), mode: entry.mode ?? 0o755, ...owner };
    case "symlink":
      return { type: "symlink", path: normalizeTarPath(entry.path, false), target: entry.target, ...owner };
    case "file": {
      const path = normalizeTarPath(entry.path, false);
      if ("content" in entry) {
        const data = typeof entry.content === "string" ? new TextEncoder().encode(entry.content) : entry.content;
        return { type: "file", path, data, mode: entry.mode ?? 0o644, ...owner };
      }
      const info = await stat(entry.from).catch(() => undefined);
      if (!info?.isFile()) throw new Error(`rootfs: source "${entry.from}" for "${entry.path}" is not a readable file`);
      // Only the executable bit is taken from the host, so the host's umask cannot change the image.
      const mode = entry.mode ?? (info.mode & 0o111 ? 0o755 : 0o644);
      return { type: "file", path, data: await Bun.file(entry.from).bytes(), mode, ...owner };
    }
  }
}

export function sha256(data: Uint8Array): string {
  return `sha256:${new Bun.CryptoHasher("sha256").update(data).digest("hex")}`;
}

/** Gzip with a fixed header (no name, mtime 0, OS "unknown"), so equal input gives equal bytes on every host. */
export function gzipLayer(data: Uint8Array<ArrayBuffer>): Uint8Array {
  return Bun.gzipSync(data, { level: 6, library: "libdeflate" });
}

/** Builds every blob and the layout files; returns the archive as chunks plus what was built. */
export async function buildOciArchive(spec: ImageSpec): Promise<{ chunks: Uint8Array[]; info: Omit<OciImageInfo, "archiveSize"> }> {
  const ref = parseImageName(spec.name);
  if (!ARCHES.includes(spec.arch)) throw new Error(`arch "${spec.arch}" is not one of ${ARCHES.join(", ")}`);
  const created = spec.created ?? 0;

  const layerTar = await buildLayerTar(spec.entries, created);
  const layer = gzipLayer(layerTar);
  const diffId = sha256(layerTar);
  const layerDigest = sha256(layer);

  const platform = spec.arch === "arm64" ? { architecture: "arm64", os: "linux", variant: "v8" } : { architecture: spec.arch, os: "linux" };
  const createdAt = new Date(created * 1000).toISOString().replace(/\.000Z$/, "Z");
  const config = json({
    created: createdAt,
    ...platform,
    config: imageConfigJson(spec.config ?? {}),
    rootfs: { type: "layers", diff_ids: [diffId] },
    history: [{ created: createdAt, created_by: "ktctl build/oci.ts" }],
  });
  const configDigest = sha256(config);

  const manifest = json({
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.manifest,
    config: { mediaType: MEDIA_TYPES.config, digest: configDigest, size: config.length },
    layers: [{ mediaType: MEDIA_TYPES.layerGzip, digest: layerDigest, size: layer.length }],
  });
  const manifestDigest = sha256(manifest);

  const index = json({
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.index,
    manifests: [
      {
        mediaType: MEDIA_TYPES.manifest,
        digest: manifestDigest,
        size: manifest.length,
        platform,
        annotations: { "io.containerd.image.name": ref.fullName, "org.opencontainers.image.ref.name": ref.tag },
      },
    ],
  });

  const blobs = new Map<string, Uint8Array>([
    [layerDigest, layer],
    [configDigest, config],
    [manifestDigest, manifest],
  ]);
  const entries: TarEntry[] = [
    { type: "dir", path: "blobs/", mode: 0o755, mtime: created },
    { type: "dir", path: "blobs/sha256/", mode: 0o755, mtime: created },
    ...[...blobs.keys()].sort().map((digest): TarEntry => ({
      type: "file",
      path: `blobs/sha256/${digest.slice("sha256:".length)}`,
      data: blobs.get(digest)!,
      mode: 0o644,
      mtime: created,
    })),
    { type: "file", path: "index.json", data: index, mode: 0o644, mtime: created },
    { type: "file", path: "oci-layout", data: json({ imageLayoutVersion: "1.0.0" }), mode: 0o644, mtime: created },
  ];
  return {
    chunks: writeTar(entries),
    info: {
      name: ref.fullName,
      tag: ref.tag,
      manifestDigest,
      configDigest,
      layerDigest,
      diffId,
      layerSize: layer.length,
      layerUncompressedSize: layerTar.length,
    },
  };
}

/** Writes the image tarball next to `outFile` and renames it into place, so a reader never sees half a file. */
export async function writeOciImage(spec: ImageSpec, outFile: string): Promise<OciImageInfo> {
  const { chunks, info } = await buildOciArchive(spec);
  const partial = `${outFile}.partial`;
  const archiveSize = await Bun.write(partial, new Blob(chunks));
  await rename(partial, outFile);
  return { ...info, archiveSize };
}

function imageConfigJson(config: ImageConfig): Record<string, unknown> {
  const exposed = config.exposedPorts?.length
    ? Object.fromEntries(config.exposedPorts.map((port) => [port.includes("/") ? port : `${port}/tcp`, {}]))
    : undefined;
  return {
    User: config.user,
    ExposedPorts: exposed,
    Env: config.env?.length ? config.env : undefined,
    Entrypoint: config.entrypoint,
    Cmd: config.cmd,
    WorkingDir: config.workingDir,
    Labels: config.labels && Object.keys(config.labels).length ? config.labels : undefined,
  };
}

function json(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}

// ---- command line ---------------------------------------------------------------------------

/** Parses `a:b[:MODE[:UID:GID]]`; paths with ":" in them are not supported by this syntax. */
function parsePathSpec(flag: string, spec: string, minParts: number): { parts: string[]; mode?: number; uid?: number; gid?: number } {
  const fields = spec.split(":");
  const extra = fields.slice(minParts);
  if (fields.length < minParts || fields.slice(0, minParts).some((f) => f === "") || (extra.length !== 0 && extra.length !== 1 && extra.length !== 3)) {
    throw new UsageError(`--${flag} "${spec}": expected ${flag === "dir" ? "PATH" : "SRC:DST"}[:MODE[:UID:GID]]`);
  }
  const number = (text: string, radix: number, what: string) => {
    const value = parseInt(text, radix);
    if (!/^[0-9]+$/.test(text) || Number.isNaN(value)) throw new UsageError(`--${flag} "${spec}": bad ${what} "${text}"`);
    return value;
  };
  return {
    parts: fields.slice(0, minParts),
    mode: extra[0] !== undefined ? number(extra[0], 8, "mode") : undefined,
    uid: extra[1] !== undefined ? number(extra[1], 10, "uid") : undefined,
    gid: extra[2] !== undefined ? number(extra[2], 10, "gid") : undefined,
  };
}

function parseJsonArgv(flag: string, text: string | undefined): string[] | undefined {
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new UsageError(`--${flag}: not JSON: ${text}`);
  }
  if (!Array.isArray(value) || !value.every((item) => typeof item === "string")) throw new UsageError(`--${flag}: expected a JSON array of strings`);
  return value;
}

class UsageError extends Error {}

export function parseCli(argv: string[]): { spec: ImageSpec; out: string } {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      name: { type: "string" },
      out: { type: "string" },
      file: { type: "string", multiple: true, default: [] },
      symlink: { type: "string", multiple: true, default: [] },
      dir: { type: "string", multiple: true, default: [] },
      entrypoint: { type: "string" },
      cmd: { type: "string" },
      env: { type: "string", multiple: true, default: [] },
      user: { type: "string" },
      workdir: { type: "string" },
      expose: { type: "string", multiple: true, default: [] },
      label: { type: "string", multiple: true, default: [] },
      arch: { type: "string", default: "amd64" },
    },
  });
  if (!values.name) throw new UsageError("--name is required");
  if (!values.out) throw new UsageError("--out is required");
  if (!ARCHES.includes(values.arch as Arch)) throw new UsageError(`--arch must be one of ${ARCHES.join(", ")}`);
  for (const env of values.env) if (!/^[^=]+=/.test(env)) throw new UsageError(`--env "${env}": expected K=V`);

  const entries: RootfsEntry[] = [];
  for (const spec of values.file) {
    const { parts, mode, uid, gid } = parsePathSpec("file", spec, 2);
    entries.push({ type: "file", from: parts[0]!, path: parts[1]!, mode, uid, gid });
  }
  for (const spec of values.dir) {
    const { parts, mode, uid, gid } = parsePathSpec("dir", spec, 1);
    entries.push({ type: "dir", path: parts[0]!, mode, uid, gid });
  }
  for (const spec of values.symlink) {
    const { parts } = parsePathSpec("symlink", spec, 2);
    entries.push({ type: "symlink", target: parts[0]!, path: parts[1]! });
  }
  const labels: Record<string, string> = {};
  for (const label of values.label) {
    const equals = label.indexOf("=");
    if (equals <= 0) throw new UsageError(`--label "${label}": expected K=V`);
    labels[label.slice(0, equals)] = label.slice(equals + 1);
  }
  return {
    out: values.out,
    spec: {
      name: values.name,
      arch: values.arch as Arch,
      entries,
      created: sourceDateEpoch(),
      config: {
        entrypoint: parseJsonArgv("entrypoint", values.entrypoint),
        cmd: parseJsonArgv("cmd", values.cmd),
        env: values.env,
        user: values.user,
        workingDir: values.workdir,
        exposedPorts: values.expose,
        labels,
      },
    },
  };
}

if (import.meta.main) {
  try {
    const { spec, out } = parseCli(process.argv.slice(2));
    const info = await writeOciImage(spec, out);
    console.log(`${out}: ${info.name} ${info.manifestDigest} (${(info.archiveSize / 1048576).toFixed(1)} MiB)`);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    console.error(`oci: ${message}`);
    process.exit(error instanceof UsageError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS") ? 2 : 1);
  }
}
