import { describe, expect, test } from "bun:test";
import { mkdtemp, readFile, readlink, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { concatChunks, normalizeTarPath, readTar, type TarEntry, writeTar } from "../../build/tar.ts";

const text = (value: string) => new TextEncoder().encode(value);

async function withTempDir<T>(run: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "ktctl-tar-test-"));
  try {
    return await run(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function systemTar(args: string[], stdin?: Uint8Array): Promise<string> {
  const proc = Bun.spawn(["tar", ...args], { stdin: stdin ?? "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, LC_ALL: "C", TZ: "UTC" } });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`tar ${args.join(" ")}: ${err}`);
  return out;
}

describe("normalizeTarPath", () => {
  test("drops leading slashes and dots, marks directories", () => {
    expect(normalizeTarPath("/usr/local/bin/x", false)).toBe("usr/local/bin/x");
    expect(normalizeTarPath("./etc//passwd", false)).toBe("etc/passwd");
    expect(normalizeTarPath("/tmp", true)).toBe("tmp/");
  });
  test("refuses paths that escape or are empty", () => {
    expect(() => normalizeTarPath("../etc/passwd", false)).toThrow(/escapes/);
    expect(() => normalizeTarPath("/", true)).toThrow(/empty/);
  });
});

describe("writeTar", () => {
  const longDir = `${"d".repeat(60)}/${"e".repeat(60)}/${"f".repeat(60)}`;
  const veryLong = `${"x".repeat(120)}/${"y".repeat(120)}/${"z".repeat(120)}`;
  const entries: TarEntry[] = [
    { type: "dir", path: "tmp", mode: 0o1777, mtime: 1_700_000_000 },
    { type: "dir", path: "home/nonroot", mode: 0o700, uid: 65532, gid: 65532 },
    { type: "file", path: "bin/tool", data: text("#!/bin/sh\necho hi\n"), mode: 0o755 },
    { type: "file", path: "empty", data: new Uint8Array(0), mode: 0o644 },
    { type: "file", path: `${longDir}/ustar-prefix.txt`, data: text("split into prefix and name"), mode: 0o600 },
    { type: "file", path: `${veryLong}/pax.txt`, data: text("needs a pax header"), mode: 0o644 },
    { type: "symlink", path: "bin/alias", target: "/bin/tool" },
    { type: "symlink", path: "long-link", target: `/${veryLong}/pax.txt` },
    { type: "file", path: "block", data: new Uint8Array(512).fill(7), mode: 0o644 },
  ];
  const archive = concatChunks(writeTar(entries));

  test("is a whole number of 512-byte blocks ending in two zero blocks", () => {
    expect(archive.length % 512).toBe(0);
    expect(archive.subarray(archive.length - 1024).every((byte) => byte === 0)).toBe(true);
  });

  test("reads back exactly what was written", () => {
    const records = readTar(archive);
    expect(records.map((r) => [r.type, r.path])).toEqual([
      ["dir", "tmp/"],
      ["dir", "home/nonroot/"],
      ["file", "bin/tool"],
      ["file", "empty"],
      ["file", `${longDir}/ustar-prefix.txt`],
      ["file", `${veryLong}/pax.txt`],
      ["symlink", "bin/alias"],
      ["symlink", "long-link"],
      ["file", "block"],
    ]);
    const byPath = new Map(records.map((r) => [r.path, r]));
    expect(byPath.get("tmp/")!.mode).toBe(0o1777);
    expect(byPath.get("tmp/")!.mtime).toBe(1_700_000_000);
    expect(byPath.get("home/nonroot/")).toMatchObject({ uid: 65532, gid: 65532, mode: 0o700 });
    expect(new TextDecoder().decode(byPath.get("bin/tool")!.data)).toBe("#!/bin/sh\necho hi\n");
    expect(byPath.get("long-link")!.target).toBe(`/${veryLong}/pax.txt`);
    expect(byPath.get("block")!.data).toEqual(new Uint8Array(512).fill(7));
  });

  test("GNU tar lists and extracts it with the same names, modes, owners and contents", async () => {
    const listing = await systemTar(["-tv", "--numeric-owner", "-f", "-"], archive);
    const lines = listing.trim().split("\n");
    expect(lines[0]).toMatch(/^drwxrwxrwt 0\/0 +0 2023-11-14 22:13 tmp\/$/);
    expect(lines[1]).toMatch(/^drwx------ 65532\/65532 +0 1970-01-01 00:00 home\/nonroot\/$/);
    expect(lines[2]).toMatch(/^-rwxr-xr-x 0\/0 +18 1970-01-01 00:00 bin\/tool$/);
    expect(lines[6]).toMatch(/^lrwxrwxrwx 0\/0 +0 1970-01-01 00:00 bin\/alias -> \/bin\/tool$/);
    expect(lines).toHaveLength(entries.length);

    await withTempDir(async (dir) => {
      await systemTar(["-x", "-f", "-", "-C", dir], archive);
      expect(await readFile(join(dir, veryLong, "pax.txt"), "utf8")).toBe("needs a pax header");
      expect(await readFile(join(dir, longDir, "ustar-prefix.txt"), "utf8")).toBe("split into prefix and name");
      expect(await readlink(join(dir, "long-link"))).toBe(`/${veryLong}/pax.txt`);
      expect((await stat(join(dir, "bin/tool"))).mode & 0o777).toBe(0o755);
    });
  });

  test("reads archives GNU tar wrote", async () => {
    await withTempDir(async (dir) => {
      await Bun.write(join(dir, "src", `${"n".repeat(150)}.txt`), "from gnu tar");
      const proc = Bun.spawn(["tar", "--format=pax", "-c", "-C", join(dir, "src"), "."], { stdout: "pipe" });
      const bytes = new Uint8Array(await new Response(proc.stdout).arrayBuffer());
      expect(await proc.exited).toBe(0);
      const file = readTar(bytes).find((r) => r.type === "file");
      expect(file?.path).toBe(`./${"n".repeat(150)}.txt`);
      expect(new TextDecoder().decode(file!.data)).toBe("from gnu tar");
    });
  });

  test("a corrupted header is detected", () => {
    const broken = archive.slice();
    broken[0] = broken[0]! ^ 0xff;
    expect(() => readTar(broken)).toThrow(/checksum/);
  });
});
