// The npm package set, in the layout esbuild and biome use: `ktctl` holds a small launcher and lists
// one optional dependency per platform; each @ktctl/<platform>-<cpu> package holds that platform's
// binary and declares `os` and `cpu`, so npm installs only the one that fits. All share ktctl's
// version. Packed with `npm pack`, then installed from the tarballs (offline) and run.

import { chmod, copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { KUBECTL_PLUGIN_NAME } from "./archives.ts";
import { executableName, KTCTL_TARGETS, npmPlatformPackage, type KtctlTarget } from "./targets.ts";

const LAUNCHER_SOURCE = join(import.meta.dir, "npm", "launch.cjs");
const DESCRIPTION = "Run one service on your laptop as if it were inside a Kubernetes namespace";

export type NpmPackages = { main: string; platforms: { target: KtctlTarget; tarball: string }[] };

/** Runs npm quietly; its own chatter is only shown when it fails. */
export async function npm(args: string[], cwd: string, env: Record<string, string> = {}): Promise<string> {
  const executable = Bun.which("npm");
  if (!executable) throw new Error("npm is not on PATH: the npm packages are packed and checked with it");
  const proc = Bun.spawn([executable, ...args], {
    cwd,
    env: { ...process.env, npm_config_update_notifier: "false", npm_config_fund: "false", npm_config_audit: "false", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`npm ${args.join(" ")} failed (exit ${code}):\n${`${stdout}${stderr}`.trim()}`);
  return stdout;
}

async function pack(dir: string, outDir: string): Promise<string> {
  const [result] = JSON.parse(await npm(["pack", "--json", "--pack-destination", outDir], dir)) as { filename: string }[];
  return join(outDir, result!.filename);
}

export function mainManifest(version: string): Record<string, unknown> {
  return {
    name: "ktctl",
    version,
    description: DESCRIPTION,
    bin: { ktctl: "bin/ktctl.js", [KUBECTL_PLUGIN_NAME]: `bin/${KUBECTL_PLUGIN_NAME}.js` },
    files: ["bin", "lib"],
    optionalDependencies: Object.fromEntries(KTCTL_TARGETS.map((target) => [npmPlatformPackage(target), version])),
    engines: { node: ">=16" },
  };
}

export function platformManifest(version: string, target: KtctlTarget): Record<string, unknown> {
  return {
    name: npmPlatformPackage(target),
    version,
    description: `ktctl's binary for ${target.platform}-${target.cpu}`,
    os: [target.platform],
    cpu: [target.cpu],
    files: [`bin/${executableName(target)}`],
    preferUnplugged: true, // Yarn PnP: a binary must sit on disk to be executed
  };
}

/** Writes and packs `ktctl` and one platform package per binary given; tarballs land in outDir. */
export async function packNpmPackages(version: string, binaries: { target: KtctlTarget; file: string }[], outDir: string): Promise<NpmPackages> {
  await mkdir(outDir, { recursive: true });
  const stage = await mkdtemp(join(tmpdir(), "ktctl-npm-"));
  try {
    const mainDir = join(stage, "ktctl");
    await mkdir(join(mainDir, "bin"), { recursive: true });
    await mkdir(join(mainDir, "lib"), { recursive: true });
    await Bun.write(join(mainDir, "package.json"), `${JSON.stringify(mainManifest(version), null, 2)}\n`);
    await copyFile(LAUNCHER_SOURCE, join(mainDir, "lib", "launch.js"));
    for (const program of ["ktctl", KUBECTL_PLUGIN_NAME]) {
      const bin = join(mainDir, "bin", `${program}.js`);
      await Bun.write(bin, `#!/usr/bin/env node\nrequire("../lib/launch.js").launch(${JSON.stringify(program)});\n`);
      await chmod(bin, 0o755);
    }
    await Bun.write(join(mainDir, "README.md"), `# ktctl\n\n${DESCRIPTION}.\n\n    npm i -g ktctl    # or: npx ktctl, bunx ktctl\n\nThe binary comes from the optional dependency that matches your OS and CPU (@ktctl/<os>-<cpu>).\n`);
    const main = await pack(mainDir, outDir);

    const platforms: NpmPackages["platforms"] = [];
    for (const { target, file } of binaries) {
      const dir = join(stage, target.id);
      await mkdir(join(dir, "bin"), { recursive: true });
      await Bun.write(join(dir, "package.json"), `${JSON.stringify(platformManifest(version, target), null, 2)}\n`);
      const binary = join(dir, "bin", executableName(target));
      await copyFile(file, binary);
      await chmod(binary, 0o755); // npm keeps the mode it packs
      platforms.push({ target, tarball: await pack(dir, outDir) });
    }
    return { main, platforms };
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

export type InstalledNpm = { prefix: string; bin: (program: string) => string; remove: () => Promise<void> };

/**
 * `npm install -g` of the given tarballs into a fresh prefix, offline: nothing may come from a
 * registry (the other platforms' optional packages are skipped, as npm skips any that do not fit).
 */
export async function installFromTarballs(tarballs: string[]): Promise<InstalledNpm> {
  const prefix = await mkdtemp(join(tmpdir(), "ktctl-npm-prefix-"));
  const cache = join(prefix, ".npm-cache");
  await npm(["install", "--global", "--prefix", prefix, "--offline", "--no-audit", "--no-fund", "--loglevel=error", ...tarballs.map((t) => resolve(t))], prefix, {
    npm_config_cache: cache,
  });
  return {
    prefix,
    bin: (program) => (process.platform === "win32" ? join(prefix, `${program}.cmd`) : join(prefix, "bin", program)),
    remove: () => rm(prefix, { recursive: true, force: true }),
  };
}
