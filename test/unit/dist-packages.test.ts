// The distribution's packaging, with a stand-in binary (a shell script) so it runs in a second:
// archives read back by the system's tools, the npm packages installed from their tarballs and run.
// `bun run build` runs the same checks on the real binaries.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { archiveName, writeArchive } from "../../build/archives.ts";
import { installFromTarballs, mainManifest, npm, packNpmPackages, platformManifest, type NpmPackages } from "../../build/npm.ts";
import { hostTarget, KTCTL_TARGETS } from "../../build/targets.ts";
import { writeZip } from "../../build/zip.ts";

const VERSION = "9.8.7";
const host = hostTarget()!;
const target = (id: string) => KTCTL_TARGETS.find((t) => t.id === id)!;
const run = (command: string[], cwd?: string, env: Record<string, string> = {}) => {
  const result = Bun.spawnSync(command, { cwd, stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  return { code: result.exitCode, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
};

let dir: string;
let stub: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ktctl-dist-test-"));
  stub = join(dir, "ktctl-stub");
  await Bun.write(stub, `#!/bin/sh\necho "ktctl ${VERSION} args: $*"\nexit \${STUB_EXIT:-0}\n`);
  await chmod(stub, 0o755);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe("archives", () => {
  test("tar.gz for Linux and macOS: ktctl, executable, and kubectl-ktctl linked to it", async () => {
    const archive = await writeArchive(stub, target("darwin-arm64"), VERSION, dir);
    expect(archive.file).toEndWith(`ktctl-${VERSION}-darwin-arm64.tar.gz`);
    const listing = run(["tar", "-tvzf", archive.file]).stdout;
    expect(listing).toMatch(/^-rwxr-xr-x .* ktctl$/m);
    expect(listing).toMatch(/^lrwxrwxrwx .* kubectl-ktctl -> ktctl$/m);
    const unpacked = join(dir, "unpacked");
    await Bun.$`mkdir -p ${unpacked} && tar -xzf ${archive.file} -C ${unpacked}`.quiet();
    expect(run([join(unpacked, "kubectl-ktctl"), "version"]).stdout).toBe(`ktctl ${VERSION} args: version\n`);
    expect(archive.sha256).toBe(new Bun.CryptoHasher("sha256").update(await Bun.file(archive.file).bytes()).digest("hex"));
  });

  test("zip for Windows holds ktctl.exe; unzip and python's zipfile accept it", async () => {
    const archive = await writeArchive(stub, target("windows-x64"), VERSION, dir);
    expect(archive.file).toEndWith(archiveName(VERSION, target("windows-x64")));
    expect(archive.file).toEndWith(".zip");
    if (Bun.which("unzip")) {
      expect(run(["unzip", "-t", archive.file]).stdout).toContain("No errors detected");
      expect(run(["unzip", "-Z1", archive.file]).stdout).toBe("ktctl.exe\n");
    }
    const python = Bun.which("python3");
    if (python) {
      const script = "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nassert z.testzip() is None\ni = z.getinfo('ktctl.exe')\nprint(oct(i.external_attr >> 16), z.read('ktctl.exe').decode(), end='')";
      expect(run([python, "-c", script, archive.file]).stdout).toBe(`0o100755 ${await Bun.file(stub).text()}`);
    }
  });

  test("the zip writer is deterministic and stores several entries", () => {
    const entries = [
      { path: "a.txt", data: new TextEncoder().encode("hello ".repeat(1000)) },
      { path: "dir/b.bin", data: new Uint8Array(70_000).map((_, i) => (i * 31) & 0xff), mode: 0o755 },
    ];
    const zip = writeZip(entries);
    expect(Buffer.from(writeZip(entries)).equals(Buffer.from(zip))).toBe(true);
    expect(zip.length).toBeLessThan(entries[0]!.data.length + entries[1]!.data.length);
  });
});

describe("npm packages", () => {
  let packages: NpmPackages;
  beforeAll(async () => {
    packages = await packNpmPackages(VERSION, [{ target: host, file: stub }], join(dir, "npm"));
  });

  test("manifests: one optional dependency per platform, each with os and cpu, one version", () => {
    const main = mainManifest(VERSION) as { optionalDependencies: Record<string, string>; bin: Record<string, string> };
    expect(main.optionalDependencies).toEqual({
      "@ktctl/linux-x64": VERSION,
      "@ktctl/linux-arm64": VERSION,
      "@ktctl/darwin-x64": VERSION,
      "@ktctl/darwin-arm64": VERSION,
      "@ktctl/win32-x64": VERSION,
    });
    expect(Object.keys(main.bin)).toEqual(["ktctl", "kubectl-ktctl"]);
    expect(platformManifest(VERSION, target("windows-x64"))).toMatchObject({ name: "@ktctl/win32-x64", os: ["win32"], cpu: ["x64"], files: ["bin/ktctl.exe"] });
    expect(packages.main).toEndWith(`ktctl-${VERSION}.tgz`);
    expect(packages.platforms[0]!.tarball).toEndWith(`ktctl-${host.id.replace("windows", "win32")}-${VERSION}.tgz`);
  });

  test("npm i -g from the tarballs (offline) puts ktctl and kubectl-ktctl on the prefix's bin", async () => {
    const installed = await installFromTarballs([packages.main, packages.platforms[0]!.tarball]);
    try {
      expect(run([installed.bin("ktctl"), "version"]).stdout).toBe(`ktctl ${VERSION} args: version\n`);
      const plugin = run([installed.bin("kubectl-ktctl"), "connect", "--help"]);
      expect(plugin.stdout).toBe(`ktctl ${VERSION} args: connect --help\n`);
      // The exit status comes through the launcher.
      expect(run([installed.bin("ktctl"), "version"], undefined, { STUB_EXIT: "7" }).code).toBe(7);
    } finally {
      await installed.remove();
    }
  });

  test("npx ktctl in a project that installed the tarballs", async () => {
    const project = join(dir, "project");
    await Bun.write(join(project, "package.json"), '{ "private": true }\n');
    await npm(["install", "--offline", "--no-audit", "--no-fund", "--loglevel=error", packages.main, packages.platforms[0]!.tarball], project, { npm_config_cache: join(dir, "cache") });
    expect((await npm(["exec", "--offline", "--", "ktctl", "version"], project, { npm_config_cache: join(dir, "cache") }))).toBe(`ktctl ${VERSION} args: version\n`);
    expect(run(["node", join(project, "node_modules/ktctl/bin/ktctl.js"), "x", "y"]).stdout).toBe(`ktctl ${VERSION} args: x y\n`);
  });

  test("without the platform package the launcher says, in one line, which package is missing", async () => {
    const installed = await installFromTarballs([packages.main]);
    try {
      const result = run([installed.bin("ktctl"), "version"]);
      expect(result.code).toBe(1);
      expect(result.stderr.trim().split("\n")).toHaveLength(1);
      expect(result.stderr).toContain(`the package @ktctl/${host.platform}-${host.cpu} that holds ktctl's binary for this platform is not installed`);
    } finally {
      await installed.remove();
    }
  });
});
