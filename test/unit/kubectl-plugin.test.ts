// ktctl as a kubectl plugin: the name it answers to, `kubectl ktctl ...` through the real kubectl,
// and the krew manifest.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { load } from "js-yaml";
import { DEFAULT_RELEASE_URL, krewManifest } from "../../build/krew.ts";
import { KTCTL_TARGETS } from "../../build/targets.ts";
import { VERSION } from "../../core/protocol/version.ts";
import { programName } from "../../core/cli/program.ts";

describe("programName", () => {
  test("kubectl-ktctl (as kubectl, krew or the archive's link start it) is `kubectl ktctl`", () => {
    expect(programName("/home/me/.krew/bin/kubectl-ktctl")).toBe("kubectl ktctl");
    expect(programName("C:\\Users\\me\\.krew\\bin\\kubectl-ktctl.exe")).toBe("kubectl ktctl");
    expect(programName("kubectl-ktctl")).toBe("kubectl ktctl");
  });
  test("anything else is ktctl", () => {
    expect(programName("/usr/local/bin/ktctl")).toBe("ktctl");
    expect(programName("bun")).toBe("ktctl");
    expect(programName("kubectl-ktctl-old")).toBe("ktctl");
  });
});

const kubectl = Bun.which("kubectl");

describe.skipIf(!kubectl)("kubectl ktctl, through kubectl's plugin lookup", () => {
  let bin: string;
  let home: string;
  beforeAll(async () => {
    bin = await mkdtemp(join(tmpdir(), "ktctl-plugin-path-"));
    home = await mkdtemp(join(tmpdir(), "ktctl-plugin-home-"));
    // The plugin on PATH runs ktctl from source under the name kubectl gives it (bash's exec -a
    // sets argv[0], as a link named kubectl-ktctl does for the compiled binary).
    const plugin = join(bin, "kubectl-ktctl");
    await Bun.write(plugin, `#!/usr/bin/env bash\nexec -a kubectl-ktctl ${JSON.stringify(process.execPath)} ${JSON.stringify(resolve(import.meta.dir, "../../core/cli/main.ts"))} "$@"\n`);
    await chmod(plugin, 0o755);
  });
  afterAll(async () => {
    await rm(bin, { recursive: true, force: true });
    await rm(home, { recursive: true, force: true });
  });
  const kubectlKtctl = (...args: string[]) => {
    const result = Bun.spawnSync([kubectl!, "ktctl", ...args], {
      env: { PATH: `${bin}:${process.env.PATH}`, HOME: home, KUBECONFIG: join(home, "none"), NO_COLOR: "1" },
      stdout: "pipe",
      stderr: "pipe",
    });
    return { code: result.exitCode, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
  };

  test("kubectl ktctl version", () => {
    const result = kubectlKtctl("version");
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`^ktctl\\s+${VERSION.replaceAll(".", "\\.")}$`, "m"));
  });

  test("usage and hints name the command as typed: kubectl ktctl", () => {
    expect(kubectlKtctl("connect", "--help").stdout).toContain("kubectl ktctl connect");
    const typo = kubectlKtctl("conect");
    expect(typo.code).not.toBe(0);
    expect(typo.stderr).toContain('did you mean "kubectl ktctl connect"?');
  });
});

describe("krew manifest", () => {
  const archives = KTCTL_TARGETS.map((target, i) => ({ target, sha256: String(i).repeat(64) }));

  test("one platform per archive: selector, uri under the release URL, sha256, bin", () => {
    const manifest = load(krewManifest("1.2.3", archives)) as any;
    expect(manifest).toMatchObject({ apiVersion: "krew.googlecontainertools.github.com/v1alpha2", kind: "Plugin", metadata: { name: "ktctl" } });
    expect(manifest.spec.version).toBe("v1.2.3");
    expect(manifest.spec.shortDescription.length).toBeLessThanOrEqual(60);
    expect(manifest.spec.platforms).toHaveLength(5);
    const base = DEFAULT_RELEASE_URL.replace("{version}", "1.2.3");
    expect(manifest.spec.platforms[0]).toEqual({
      selector: { matchLabels: { os: "linux", arch: "amd64" } },
      uri: `${base}/ktctl-1.2.3-linux-x64.tar.gz`,
      sha256: "0".repeat(64),
      files: [{ from: "ktctl", to: "." }],
      bin: "ktctl",
    });
    expect(manifest.spec.platforms[4]).toMatchObject({
      selector: { matchLabels: { os: "windows", arch: "amd64" } },
      uri: `${base}/ktctl-1.2.3-windows-x64.zip`,
      bin: "ktctl.exe",
    });
    expect(manifest.spec.platforms.map((p: any) => `${p.selector.matchLabels.os}/${p.selector.matchLabels.arch}`)).toEqual([
      "linux/amd64",
      "linux/arm64",
      "darwin/amd64",
      "darwin/arm64",
      "windows/amd64",
    ]);
  });

  test("the release URL is configurable", () => {
    const manifest = load(krewManifest("1.2.3", archives.slice(0, 1), "https://downloads.example.com/ktctl/{version}/")) as any;
    expect(manifest.spec.platforms[0].uri).toBe("https://downloads.example.com/ktctl/1.2.3/ktctl-1.2.3-linux-x64.tar.gz");
  });
});
