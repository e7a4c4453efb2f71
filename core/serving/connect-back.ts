// `--connect`: the local process reaches the cluster through the SAME session (kt-connect #216:
// exchange there was one-way unless `connect` also ran). A SOCKS5/HTTP proxy on loopback carries
// each connection through the shadow's tunnel; names resolve inside the cluster. It listens before
// the shadow exists (connections wait for it), so its address can go into an env file up front.

import type { Duplex } from "node:stream";
import { errorText } from "../kube/objects.ts";
import type { ConnectBack, PluginApi, Shadow } from "../plugin-api.ts";

export async function startConnectBack(api: Pick<PluginApi, "logger" | "proxy">, port: number): Promise<ConnectBack> {
  let attach!: (shadow: Shadow) => void;
  let fail!: (error: unknown) => void;
  const shadowReady = new Promise<Shadow>((resolve, reject) => {
    attach = resolve;
    fail = reject;
  });
  shadowReady.catch(() => undefined);
  const proxy = await api.proxy.start({
    host: "127.0.0.1",
    port,
    openStream: async (host: string, targetPort: number): Promise<Duplex> => (await shadowReady).tunnel.openStream(host, targetPort),
    onError: (error, target) => api.logger.debug(`proxy: ${target}: ${errorText(error)}`),
  });
  const usage = api.proxy.usage(proxy.host, proxy.port);
  const env = Object.entries(usage.env).flatMap(([k, v]): [string, string][] => [
    [k, v],
    [k.toLowerCase(), v],
  ]);
  return { proxy, env, instructions: api.proxy.instructions(proxy.host, proxy.port), attach, fail, close: () => proxy.close() };
}
