import { describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeChecksums } from "../../build/build.ts";
import { KTCTL_TARGETS } from "../../build/targets.ts";
import { compileArgs } from "../../build/compile.ts";
import { buildDefines, DEFAULT_SHADOW_IMAGE, SHADOW_REPOSITORY, VERSION } from "../../core/protocol/version.ts";
import packageJson from "../../package.json" with { type: "json" };

describe("version", () => {
  test("under bun run, the version is package.json's and the image tag is that version", () => {
    expect(VERSION).toBe(packageJson.version);
    expect(DEFAULT_SHADOW_IMAGE).toBe(`${SHADOW_REPOSITORY}:${packageJson.version}`);
  });
  test("the defines are JSON string literals, as --define wants them", () => {
    const defines = buildDefines("1.2.3", "docker.io/ktctl/shadow:1.2.3");
    expect(JSON.parse(defines.KTCTL_BUILD_VERSION!)).toBe("1.2.3");
    expect(JSON.parse(defines.KTCTL_BUILD_SHADOW_IMAGE!)).toBe("docker.io/ktctl/shadow:1.2.3");
  });
});

describe("compileArgs", () => {
  test("bytecode always travels with ESM and the autoload guards", () => {
    const args = compileArgs({ entry: "core/cli/main.ts", target: "bun-windows-x64", outfile: "dist/ktctl.exe", defines: { A: '"x"' } });
    for (const flag of ["--compile", "--minify", "--bytecode", "--format=esm", "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig"]) {
      expect(args).toContain(flag);
    }
    expect(args).toContain("--target=bun-windows-x64");
    expect(args.slice(args.indexOf("--define"), args.indexOf("--define") + 2)).toEqual(["--define", 'A="x"']);
    expect(args.slice(-3)).toEqual(["core/cli/main.ts", "--outfile", "dist/ktctl.exe"]);
  });
  test("every OS target is built, Windows with .exe", () => {
    expect(KTCTL_TARGETS.map((t) => t.id)).toEqual(["linux-x64", "linux-arm64", "darwin-x64", "darwin-arm64", "windows-x64"]);
    expect(KTCTL_TARGETS.find((t) => t.id === "windows-x64")!.file).toEndWith(".exe");
  });
});

describe("writeChecksums", () => {
  test("writes lines that sha256sum -c accepts, sorted, without itself, partial or hidden scratch files", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ktctl-sums-test-"));
    try {
      await Bun.write(join(dir, "b-binary"), new Uint8Array(3_000_000).fill(9));
      await Bun.write(join(dir, "a.tar"), "image");
      await Bun.write(join(dir, "c.tar.partial"), "half");
      await Bun.write(join(dir, ".0123-00000000.bun-build"), "compiler scratch");
      await Bun.write(join(dir, "SHA256SUMS"), "stale");
      const sums = await Bun.file(await writeChecksums(dir)).text();
      expect(sums.split("\n").filter(Boolean).map((line) => line.split("  ")[1])).toEqual(["a.tar", "b-binary"]);
      expect(sums).toContain(`${new Bun.CryptoHasher("sha256").update("image").digest("hex")}  a.tar\n`);
      const check = Bun.spawnSync(["sha256sum", "-c", "SHA256SUMS"], { cwd: dir });
      expect(check.exitCode).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
