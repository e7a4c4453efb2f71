import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmod, mkdtemp, rm, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  buildLayerTar,
  MEDIA_TYPES,
  type ImageSpec,
  parseCli,
  parseImageName,
  sha256,
  sourceDateEpoch,
  writeOciImage,
} from "../../build/oci.ts";
import { readTar, type TarRecord } from "../../build/tar.ts";

const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
let dir: string;
let hostFile: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ktctl-oci-test-"));
  hostFile = join(dir, "agent");
  await Bun.write(hostFile, "#!/bin/sh\nexec echo agent\n");
  await chmod(hostFile, 0o700);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const spec = (): ImageSpec => ({
  name: "docker.io/ktctl/shadow:0.1.0",
  arch: "amd64",
  created: 1_700_000_000,
  entries: [
    { type: "file", from: hostFile, path: "/usr/local/bin/agent" },
    { type: "file", path: "/etc/passwd", content: "nonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n" },
    { type: "dir", path: "/tmp", mode: 0o1777 },
    { type: "dir", path: "/home/nonroot", mode: 0o700, uid: 65532, gid: 65532 },
    { type: "symlink", path: "/bin/agent", target: "/usr/local/bin/agent" },
  ],
  config: {
    entrypoint: ["/usr/local/bin/agent"],
    cmd: ["serve"],
    env: ["PATH=/usr/local/bin:/bin", "HOME=/home/nonroot"],
    user: "65532:65532",
    workingDir: "/home/nonroot",
    exposedPorts: ["8080", "53/udp"],
    labels: { "org.opencontainers.image.version": "0.1.0" },
  },
});

/** Opens an image layout tarball the way an importer does: index -> manifest -> config and layer. */
function openLayout(archive: Uint8Array<ArrayBuffer>) {
  const records = readTar(archive);
  const byPath = new Map<string, TarRecord>(records.map((r) => [r.path, r]));
  const blob = (digest: string) => {
    const record = byPath.get(`blobs/sha256/${digest.slice("sha256:".length)}`);
    if (!record) throw new Error(`missing blob ${digest}`);
    return record.data;
  };
  const index = JSON.parse(decode(byPath.get("index.json")!.data));
  const manifest = JSON.parse(decode(blob(index.manifests[0].digest)));
  const config = JSON.parse(decode(blob(manifest.config.digest)));
  const layer = blob(manifest.layers[0].digest);
  return { records, byPath, index, manifest, config, layer, blob };
}

describe("parseImageName", () => {
  test("normalizes the way containerd names images", () => {
    expect(parseImageName("docker.io/ktctl/shadow:0.1.0")).toEqual({ domain: "docker.io", repository: "ktctl/shadow", tag: "0.1.0", fullName: "docker.io/ktctl/shadow:0.1.0" });
    expect(parseImageName("ktctl/shadow:0.1.0").fullName).toBe("docker.io/ktctl/shadow:0.1.0");
    expect(parseImageName("busybox").fullName).toBe("docker.io/library/busybox:latest");
    expect(parseImageName("localhost:5000/team/agent:dev").fullName).toBe("localhost:5000/team/agent:dev");
    expect(parseImageName("registry.example/a/b/c:1.2-rc.1")).toMatchObject({ domain: "registry.example", repository: "a/b/c", tag: "1.2-rc.1" });
  });
  test("refuses digests and malformed names", () => {
    expect(() => parseImageName("ktctl/shadow@sha256:abcd")).toThrow(/digest/);
    expect(() => parseImageName("Ktctl/Shadow:1")).toThrow(/repository/);
    expect(() => parseImageName("ktctl/shadow:bad tag")).toThrow(/tag/);
  });
});

describe("sourceDateEpoch", () => {
  test("reads SOURCE_DATE_EPOCH, defaults to 0, refuses garbage", () => {
    expect(sourceDateEpoch({})).toBe(0);
    expect(sourceDateEpoch({ SOURCE_DATE_EPOCH: "1700000000" })).toBe(1_700_000_000);
    expect(() => sourceDateEpoch({ SOURCE_DATE_EPOCH: "yesterday" })).toThrow(/SOURCE_DATE_EPOCH/);
  });
});

describe("writeOciImage", () => {
  test("writes an OCI layout whose every blob matches its digest and size", async () => {
    const out = join(dir, "image.tar");
    const info = await writeOciImage(spec(), out);
    const archive = await Bun.file(out).bytes();
    expect(info.archiveSize).toBe(archive.length);
    const { records, byPath, index, manifest, config, layer } = openLayout(archive);

    expect(records.map((r) => r.path)).toEqual([
      "blobs/",
      "blobs/sha256/",
      ...[info.layerDigest, info.configDigest, info.manifestDigest].map((d) => `blobs/sha256/${d.slice(7)}`).sort(),
      "index.json",
      "oci-layout",
    ]);
    for (const record of records.filter((r) => r.type === "file" && r.path.startsWith("blobs/"))) {
      expect(sha256(record.data)).toBe(`sha256:${record.path.slice("blobs/sha256/".length)}`);
    }
    expect(JSON.parse(decode(byPath.get("oci-layout")!.data))).toEqual({ imageLayoutVersion: "1.0.0" });

    expect(index.mediaType).toBe(MEDIA_TYPES.index);
    expect(index.manifests).toHaveLength(1);
    expect(index.manifests[0]).toMatchObject({
      mediaType: MEDIA_TYPES.manifest,
      digest: info.manifestDigest,
      platform: { architecture: "amd64", os: "linux" },
      annotations: { "io.containerd.image.name": "docker.io/ktctl/shadow:0.1.0", "org.opencontainers.image.ref.name": "0.1.0" },
    });
    expect(index.manifests[0].size).toBe(byPath.get(`blobs/sha256/${info.manifestDigest.slice(7)}`)!.data.length);
    expect(manifest).toMatchObject({ schemaVersion: 2, mediaType: MEDIA_TYPES.manifest });
    expect(manifest.config).toMatchObject({ mediaType: MEDIA_TYPES.config, digest: info.configDigest });
    expect(manifest.layers).toEqual([{ mediaType: MEDIA_TYPES.layerGzip, digest: info.layerDigest, size: layer.length }]);

    const layerTar = Bun.gunzipSync(layer);
    expect(config.rootfs).toEqual({ type: "layers", diff_ids: [sha256(layerTar)] });
    expect(config).toMatchObject({ architecture: "amd64", os: "linux", created: "2023-11-14T22:13:20Z" });
    expect(config.config).toEqual({
      User: "65532:65532",
      ExposedPorts: { "8080/tcp": {}, "53/udp": {} },
      Env: ["PATH=/usr/local/bin:/bin", "HOME=/home/nonroot"],
      Entrypoint: ["/usr/local/bin/agent"],
      Cmd: ["serve"],
      WorkingDir: "/home/nonroot",
      Labels: { "org.opencontainers.image.version": "0.1.0" },
    });
  });

  test("the layer holds every parent directory, sorted, with fixed owners, modes and times", async () => {
    const out = join(dir, "layer.tar");
    await writeOciImage(spec(), out);
    const { layer } = openLayout(await Bun.file(out).bytes());
    const entries = readTar(Bun.gunzipSync(layer));
    expect(entries.map((e) => e.path)).toEqual([
      "bin/",
      "bin/agent",
      "etc/",
      "etc/passwd",
      "home/",
      "home/nonroot/",
      "tmp/",
      "usr/",
      "usr/local/",
      "usr/local/bin/",
      "usr/local/bin/agent",
    ]);
    const byPath = new Map(entries.map((e) => [e.path, e]));
    expect(entries.every((e) => e.mtime === 1_700_000_000)).toBe(true);
    expect(byPath.get("usr/local/bin/agent")).toMatchObject({ type: "file", mode: 0o755, uid: 0, gid: 0 });
    expect(decode(byPath.get("usr/local/bin/agent")!.data)).toBe("#!/bin/sh\nexec echo agent\n");
    expect(byPath.get("etc/passwd")).toMatchObject({ mode: 0o644 });
    expect(byPath.get("tmp/")).toMatchObject({ type: "dir", mode: 0o1777 });
    expect(byPath.get("home/nonroot/")).toMatchObject({ mode: 0o700, uid: 65532, gid: 65532 });
    expect(byPath.get("usr/local/")).toMatchObject({ type: "dir", mode: 0o755, uid: 0 });
    expect(byPath.get("bin/agent")).toMatchObject({ type: "symlink", target: "/usr/local/bin/agent" });
  });

  test("is reproducible: same input gives the same bytes, whatever the source file's mtime or mode bits", async () => {
    const first = join(dir, "first.tar");
    const second = join(dir, "second.tar");
    await writeOciImage(spec(), first);
    await utimes(hostFile, new Date(), new Date(Date.now() - 86_400_000));
    await chmod(hostFile, 0o751);
    await writeOciImage(spec(), second);
    expect(Bun.hash(await Bun.file(first).bytes())).toBe(Bun.hash(await Bun.file(second).bytes()));
    expect(await Bun.file(`${second}.partial`).exists()).toBe(false);
  });

  test("the tag only names the image; the arch changes the config, not the layer", async () => {
    const base = await writeOciImage(spec(), join(dir, "base.tar"));
    const arm = await writeOciImage({ ...spec(), arch: "arm64" }, join(dir, "arm.tar"));
    const retagged = await writeOciImage({ ...spec(), name: "ktctl/shadow:0.2.0" }, join(dir, "tag.tar"));
    expect(arm.layerDigest).toBe(base.layerDigest);
    expect(arm.configDigest).not.toBe(base.configDigest);
    expect(retagged.manifestDigest).toBe(base.manifestDigest);
    expect(retagged.name).toBe("docker.io/ktctl/shadow:0.2.0");
    const { index, config } = openLayout(await Bun.file(join(dir, "arm.tar")).bytes());
    expect(index.manifests[0].platform).toEqual({ architecture: "arm64", os: "linux", variant: "v8" });
    expect(config.architecture).toBe("arm64");
  });
});

describe("buildLayerTar refuses inconsistent trees", () => {
  test("the same path twice", async () => {
    await expect(
      buildLayerTar([
        { type: "file", path: "/bin/busybox", content: "x" },
        { type: "symlink", path: "/bin/busybox", target: "/bin/busybox" },
      ]),
    ).rejects.toThrow(/listed twice/);
  });
  test("a file used as a directory", async () => {
    await expect(
      buildLayerTar([
        { type: "file", path: "/etc", content: "x" },
        { type: "file", path: "/etc/passwd", content: "y" },
      ]),
    ).rejects.toThrow(/is a file but holds/);
  });
  test("a missing source file", async () => {
    await expect(buildLayerTar([{ type: "file", path: "/x", from: join(dir, "does-not-exist") }])).rejects.toThrow(/not a readable file/);
  });
});

describe("parseCli", () => {
  test("maps every flag onto the image spec", () => {
    const { spec: parsed, out } = parseCli([
      "--name", "ktctl/echo:1",
      "--out", "echo.tar",
      "--file", "./echo:/echo:0755",
      "--file", "./motd:/etc/motd",
      "--file", "./key:/home/app/key:0600:1000:1000",
      "--dir", "/tmp:1777",
      "--dir", "/data",
      "--symlink", "/bin/busybox:/bin/sh",
      "--entrypoint", '["/echo"]',
      "--cmd", '["--port","8080"]',
      "--env", "A=1", "--env", "B=x=y",
      "--user", "65532:65532",
      "--workdir", "/",
      "--expose", "8080",
      "--label", "team=platform",
      "--arch", "arm64",
    ]);
    expect(out).toBe("echo.tar");
    expect(parsed.name).toBe("ktctl/echo:1");
    expect(parsed.arch).toBe("arm64");
    expect(parsed.entries).toEqual([
      { type: "file", from: "./echo", path: "/echo", mode: 0o755, uid: undefined, gid: undefined },
      { type: "file", from: "./motd", path: "/etc/motd", mode: undefined, uid: undefined, gid: undefined },
      { type: "file", from: "./key", path: "/home/app/key", mode: 0o600, uid: 1000, gid: 1000 },
      { type: "dir", path: "/tmp", mode: 0o1777, uid: undefined, gid: undefined },
      { type: "dir", path: "/data", mode: undefined, uid: undefined, gid: undefined },
      { type: "symlink", target: "/bin/busybox", path: "/bin/sh" },
    ]);
    expect(parsed.config).toMatchObject({
      entrypoint: ["/echo"],
      cmd: ["--port", "8080"],
      env: ["A=1", "B=x=y"],
      user: "65532:65532",
      workingDir: "/",
      exposedPorts: ["8080"],
      labels: { team: "platform" },
    });
  });

  test("rejects what it cannot mean", () => {
    const base = ["--name", "x/y:1", "--out", "o.tar"];
    expect(() => parseCli(["--out", "o.tar"])).toThrow(/--name/);
    expect(() => parseCli([...base, "--file", "only-a-source"])).toThrow(/SRC:DST/);
    expect(() => parseCli([...base, "--file", "a:b:9z"])).toThrow(/mode/);
    expect(() => parseCli([...base, "--dir", "/x:0755:1"])).toThrow(/PATH/);
    expect(() => parseCli([...base, "--entrypoint", "/bin/sh"])).toThrow(/JSON/);
    expect(() => parseCli([...base, "--cmd", '"one"'])).toThrow(/array/);
    expect(() => parseCli([...base, "--env", "NOVALUE"])).toThrow(/K=V/);
    expect(() => parseCli([...base, "--arch", "riscv64"])).toThrow(/arch/);
  });
});
