// What the full build needs from Debian beyond what the machine may have: an arm64 C library (for
// the arm64 shadow image and for running arm64 binaries) and qemu-user (to run them). Each is
// installed only when the file that proves it is missing, so a prepared machine pays nothing.

import { existsSync } from "node:fs";

export type DebianNeed = { package: string; provides: string; why: string };

export const ARM64_SYSROOT = "/usr/aarch64-linux-gnu";
export const ARM64_LIBC: DebianNeed = { package: "libc6-arm64-cross", provides: `${ARM64_SYSROOT}/lib/libc.so.6`, why: "the arm64 shadow image carries its C library" };
export const QEMU_AARCH64: DebianNeed = { package: "qemu-user", provides: "/usr/bin/qemu-aarch64", why: "the linux-arm64 binaries are started once under emulation" };

async function aptGet(args: string[]): Promise<{ ok: boolean; output: string }> {
  const proc = Bun.spawn(["apt-get", ...args], { env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" }, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { ok: code === 0, output: `${stdout}${stderr}`.trim() };
}

/** Installs the needs whose files are missing (Debian, as root); otherwise says what to install. */
export async function ensureDebianPackages(needs: readonly DebianNeed[], log: (line: string) => void): Promise<void> {
  const missing = needs.filter((need) => !existsSync(need.provides));
  if (missing.length === 0) return;
  const names = missing.map((need) => need.package);
  const reasons = missing.map((need) => `${need.package}: ${need.why}`).join("; ");
  if (process.platform !== "linux" || !Bun.which("apt-get") || process.getuid?.() !== 0) {
    throw new Error(`missing ${names.join(", ")} (${reasons}); install them (Debian/Ubuntu: apt-get install ${names.join(" ")})`);
  }
  log(`installing ${names.join(", ")} with apt-get (${reasons})`);
  const install = ["install", "-y", "--no-install-recommends", ...names];
  let result = await aptGet(install);
  if (!result.ok) {
    // A fresh machine has no package lists yet.
    const update = await aptGet(["update"]);
    if (!update.ok) throw new Error(`apt-get update failed:\n${update.output}`);
    result = await aptGet(install);
  }
  if (!result.ok) throw new Error(`apt-get install ${names.join(" ")} failed:\n${result.output}`);
  const still = missing.filter((need) => !existsSync(need.provides));
  if (still.length > 0) throw new Error(`${still.map((n) => n.provides).join(", ")} still missing after installing ${names.join(", ")}`);
}
