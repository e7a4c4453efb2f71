// Which driver a connect uses: chosen by --mode and by the OS. Every driver is compiled into every
// binary, so a plan for another OS can be printed and tested anywhere.

import type { PluginApi } from "../../../../core/plugin-api.ts";
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

/** What the drivers take from the plugin API: its errors, and the proxy's usage lines. */
export type DriverApi = Pick<PluginApi, "errors"> & { proxy: Pick<PluginApi["proxy"], "instructions"> };

export function selectDriver(choice: DriverChoice, api: DriverApi): NetDriver {
  const { errors } = api;
  if (choice.mode === "proxy") return createProxyDriver(api.proxy.instructions);
  switch (choice.platform) {
    case "linux":
      return createLinuxDriver({ variant: choice.mode, dnsMode: choice.dnsMode, errors });
    case "darwin":
      if (choice.mode === "hosts") {
        throw new errors.KtctlError("--mode hosts is not available on macOS", errors.ExitCode.usage, "use --mode system (pf and /etc/resolver) or --mode proxy");
      }
      return createDarwinDriver({ errors });
    case "win32":
      // On Windows, system mode IS the hosts file with per-service loopback addresses.
      return createWindowsDriver({ errors });
    default:
      throw new errors.KtctlError(`--mode ${choice.mode} is not available on ${choice.platform}`, errors.ExitCode.usage, "use --mode proxy");
  }
}
