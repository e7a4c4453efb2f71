// Proxy mode, any OS, no root: nothing on the laptop changes. The SOCKS5/HTTP proxy carries what
// programs send it; this driver only says how to point programs at it.

import type { NetDriver } from "../driver.ts";

export interface ProxyUsage {
  env: Record<string, string>;
  jvmFlags: string[];
}

export function proxyUsage(host: string, port: number): ProxyUsage {
  const http = `http://${host}:${port}`;
  return {
    env: {
      HTTP_PROXY: http,
      HTTPS_PROXY: http,
      ALL_PROXY: `socks5h://${host}:${port}`,
      NO_PROXY: "localhost,127.0.0.1,::1",
    },
    jvmFlags: [
      `-DsocksProxyHost=${host}`,
      `-DsocksProxyPort=${port}`,
      `-Dhttp.proxyHost=${host}`,
      `-Dhttp.proxyPort=${port}`,
      `-Dhttps.proxyHost=${host}`,
      `-Dhttps.proxyPort=${port}`,
    ],
  };
}

/** Shell lines a user can paste (POSIX shells; lower-case twins for tools that read only those). */
export function proxyInstructions(host: string, port: number): string[] {
  const usage = proxyUsage(host, port);
  const exports = Object.entries(usage.env).flatMap(([key, value]) => [`export ${key}=${value}`, `export ${key.toLowerCase()}=${value}`]);
  return [...exports, `JVM: java ${usage.jvmFlags.join(" ")} ...`];
}

export function createProxyDriver(): NetDriver {
  return {
    name: "proxy",
    capture: "proxy",
    async probe() {
      return { platform: process.platform, isRoot: false, tools: {} };
    },
    prepare(spec) {
      if (!spec.proxy) throw new Error("proxy driver: the proxy address is missing");
      return { driver: "proxy", actions: [], notes: proxyInstructions(spec.proxy.host, spec.proxy.port) };
    },
    refresh() {
      return [];
    },
  };
}
