// The platforms ktctl ships for, with each platform's name in every vocabulary the distribution
// speaks: Bun's compile target, Node's process.platform/arch (npm's os/cpu fields), krew's os/arch.

export type KtctlTarget = {
  id: string;
  bunTarget: string;
  /** The binary's name in dist/. */
  file: string;
  /** Node's names: npm's `os` and `cpu` fields. */
  platform: "linux" | "darwin" | "win32";
  cpu: "x64" | "arm64";
};

export const KTCTL_TARGETS: readonly KtctlTarget[] = [
  { id: "linux-x64", bunTarget: "bun-linux-x64", file: "ktctl-linux-x64", platform: "linux", cpu: "x64" },
  { id: "linux-arm64", bunTarget: "bun-linux-arm64", file: "ktctl-linux-arm64", platform: "linux", cpu: "arm64" },
  { id: "darwin-x64", bunTarget: "bun-darwin-x64", file: "ktctl-darwin-x64", platform: "darwin", cpu: "x64" },
  { id: "darwin-arm64", bunTarget: "bun-darwin-arm64", file: "ktctl-darwin-arm64", platform: "darwin", cpu: "arm64" },
  { id: "windows-x64", bunTarget: "bun-windows-x64", file: "ktctl-windows-x64.exe", platform: "win32", cpu: "x64" },
];

export const isWindows = (target: KtctlTarget) => target.platform === "win32";
export const isDarwin = (target: KtctlTarget) => target.platform === "darwin";

/** The executable's name once installed: what a user types. */
export const executableName = (target: KtctlTarget, name = "ktctl") => (isWindows(target) ? `${name}.exe` : name);

/** The npm package holding this platform's binary, e.g. @ktctl/win32-x64 (esbuild's naming). */
export const npmPlatformPackage = (target: KtctlTarget) => `@ktctl/${target.platform}-${target.cpu}`;

export const krewPlatform = (target: KtctlTarget) => ({
  os: target.platform === "win32" ? "windows" : target.platform,
  arch: target.cpu === "x64" ? "amd64" : "arm64",
});

export function hostTarget(platform: string = process.platform, arch: string = process.arch): KtctlTarget | undefined {
  return KTCTL_TARGETS.find((target) => target.platform === platform && target.cpu === arch);
}
