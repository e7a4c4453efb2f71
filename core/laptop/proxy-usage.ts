// How programs are pointed at ktctl's SOCKS5/HTTP proxy: the environment variables most tools read,
// the JVM's system properties, and the shell lines a user can paste.

import type { ProxyUsage } from "../plugin-api.ts";

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
