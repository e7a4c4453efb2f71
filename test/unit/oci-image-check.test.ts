// Builds tiny images from this machine's own programs and starts them the way the shadow build
// does: proves that the OCI writer, the library finder and the start-up check fit together.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkImageStarts } from "../../build/image-check.ts";
import { sharedLibrariesByLdd } from "../../build/libs.ts";
import { type RootfsEntry, writeOciImage } from "../../build/oci.ts";

const envBinary = Bun.which("env");
const busybox = Bun.which("busybox");
const canRun = process.platform === "linux" && process.getuid?.() === 0 && !!Bun.which("unshare") && !!Bun.which("chroot") && !!envBinary;

describe.if(canRun)("checkImageStarts (root on Linux)", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "ktctl-image-check-test-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const envImage = async (withLibraries: boolean) => {
    const libraries = withLibraries ? await sharedLibrariesByLdd(envBinary!) : [];
    const entries: RootfsEntry[] = [
      { type: "file", from: envBinary!, path: "/bin/env", mode: 0o755 },
      ...libraries.map((l): RootfsEntry => ({ type: "file", from: l.source, path: l.path, mode: 0o755 })),
    ];
    const file = join(dir, `env-${withLibraries}.tar`);
    await writeOciImage({ name: "ktctl/env-test:1", arch: process.arch === "arm64" ? "arm64" : "amd64", entries, config: { entrypoint: ["/bin/env"], env: ["FROM_IMAGE=yes"], user: "65532:65532" } }, file);
    return file;
  };

  test("a dynamically linked program starts when the image carries the libraries ldd found", async () => {
    const result = await checkImageStarts(await envImage(true), { args: [], env: { FROM_CHECK: "1" } });
    if ("skipped" in result) throw new Error(result.skipped);
    // exactly the image's Env plus the check's, nothing of the host's
    expect(result.output.trim().split("\n").sort()).toEqual(["FROM_CHECK=1", "FROM_IMAGE=yes"]);
  });

  test("the same program without its libraries fails the check", async () => {
    await expect(checkImageStarts(await envImage(false), { args: [] })).rejects.toThrow(/failed in its image/);
  });

  test.if(!!busybox)("a server is stopped with SIGTERM once ready, and must then exit 0", async () => {
    const file = join(dir, "server.tar");
    await writeOciImage(
      { name: "ktctl/server-test:1", arch: process.arch === "arm64" ? "arm64" : "amd64", entries: [{ type: "file", from: busybox!, path: "/bin/busybox", mode: 0o755 }], config: { entrypoint: ["/bin/busybox", "sh", "-c"], user: "65532" } },
      file,
    );
    const graceful = 'trap "echo stopping; exit 0" TERM; echo ready as $(/bin/busybox id -u); while :; do /bin/busybox sleep 0.05; done';
    const result = await checkImageStarts(file, { args: [graceful], ready: /ready as 65532/ });
    expect("output" in result && result.output).toContain("stopping");
    await expect(checkImageStarts(file, { args: ["echo starting; exit 0"], ready: /^up$/m })).rejects.toThrow(/never became ready/);
    await expect(checkImageStarts(file, { args: ["exit 3"] })).rejects.toThrow(/exit 3/);
  });
});
