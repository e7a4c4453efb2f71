// Which driver a connect uses: chosen by --mode and by the OS. Every driver is compiled into every
// binary, so a plan for another OS can be printed and tested anywhere.

import { ExitCode, KtctlError } from "../../../../core/errors.ts";
import type { NetDriver } from "../driver.ts";
import { createDarwinDriver } from "./darwin.ts";
import { createLinuxDriver, type LinuxDnsMode } from "./linux.ts";
import { createProxyDriver } from "./proxy.ts";
import { createWindowsDriver } from "./windows.ts";

export type ConnectMode = "system" | "hosts" | "proxy";
export const CONNECT_MODES: readonly ConnectMode[] = ["system", "hosts", "proxy"];
export const DNS_MODES: readonly LinuxDnsMode[] = ["auto", "resolvconf", "resolved", "hosts", "none"];

/** system where it needs no extra privileges we lack (root on Linux), proxy otherwise. */
export function defaultMode(platform: string, isRoot: boolean): ConnectMode {
  return platform === "linux" && isRoot ? "system" : "proxy";
}

export interface DriverChoice {
  mode: ConnectMode;
  platform: string;
  dnsMode?: LinuxDnsMode;
}

export function selectDriver(choice: DriverChoice): NetDriver {
  if (choice.mode === "proxy") return createProxyDriver();
  switch (choice.platform) {
    case "linux":
      return createLinuxDriver({ variant: choice.mode, dnsMode: choice.dnsMode });
    case "darwin":
      if (choice.mode === "hosts") throw new KtctlError("--mode hosts is not available on macOS", ExitCode.usage, "use --mode system (pf and /etc/resolver) or --mode proxy");
      return createDarwinDriver();
    case "win32":
      // On Windows, system mode IS the hosts file with per-service loopback addresses.
      return createWindowsDriver();
    default:
      throw new KtctlError(`--mode ${choice.mode} is not available on ${choice.platform}`, ExitCode.usage, "use --mode proxy");
  }
}
