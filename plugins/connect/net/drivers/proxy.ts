// Proxy mode, any OS, no root: nothing on the laptop changes. The SOCKS5/HTTP proxy carries what
// programs send it; this driver only says how to point programs at it.

import type { ProxyApi } from "../../../../core/plugin-api.ts";
import type { NetDriver } from "../driver.ts";

/** `instructions`: the core's proxy usage lines (api.proxy.instructions). */
export function createProxyDriver(instructions: ProxyApi["instructions"]): NetDriver {
  return {
    name: "proxy",
    capture: "proxy",
    async probe() {
      return { platform: process.platform, isRoot: false, tools: {} };
    },
    prepare(spec) {
      if (!spec.proxy) throw new Error("proxy driver: the proxy address is missing");
      return { driver: "proxy", actions: [], notes: instructions(spec.proxy.host, spec.proxy.port) };
    },
    refresh() {
      return [];
    },
  };
}
