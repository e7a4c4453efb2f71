// `--connect`: the local process reaches the cluster through the SAME session (kt-connect #216:
// exchange there was one-way unless `connect` also ran). A SOCKS5/HTTP proxy on loopback carries
// each connection through the shadow's tunnel; names resolve inside the cluster. It listens before
// the shadow exists (connections wait for it), so its address can go into --envFile up front.

import type { Duplex } from "node:stream";
import { startProxyServer, type ProxyServer } from "../../core/laptop/proxy-server.ts";
import { proxyInstructions, proxyUsage } from "../../core/laptop/proxy-usage.ts";
import type { PluginApi, Shadow } from "../../core/plugin-api.ts";
import { errorText } from "./lifecycle.ts";

export interface ConnectBack {
  proxy: ProxyServer;
  /** HTTP_PROXY, ALL_PROXY, ... (and their lower-case twins) for the local process. */
  env: [string, string][];
  /** Lines to print: exports and JVM flags. */
  instructions: string[];
  /** Hands the shadow over once it runs; until then connections wait. */
  attach(shadow: Shadow): void;
  /** The session could not start: waiting connections fail. */
  fail(error: unknown): void;
  close(): Promise<void>;
}

export async function startConnectBack(api: Pick<PluginApi, "logger">, port: number): Promise<ConnectBack> {
  let attach!: (shadow: Shadow) => void;
  let fail!: (error: unknown) => void;
  const shadowReady = new Promise<Shadow>((resolve, reject) => {
    attach = resolve;
    fail = reject;
  });
  shadowReady.catch(() => undefined);
  const proxy = await startProxyServer({
    host: "127.0.0.1",
    port,
    openStream: async (host: string, targetPort: number): Promise<Duplex> => (await shadowReady).tunnel.openStream(host, targetPort),
    onError: (error, target) => api.logger.debug(`proxy: ${target}: ${errorText(error)}`),
  });
  const usage = proxyUsage(proxy.host, proxy.port);
  const env = Object.entries(usage.env).flatMap(([k, v]): [string, string][] => [
    [k, v],
    [k.toLowerCase(), v],
  ]);
  return { proxy, env, instructions: proxyInstructions(proxy.host, proxy.port), attach, fail, close: () => proxy.close() };
}
