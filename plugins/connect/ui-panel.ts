// connect's panel in `ktctl ui`: the names and addresses this laptop now reaches, and how many
// connections went to each. Counting is one map update per connection (never per byte); the panel
// is built only while a ui is open.

import type { OpenStream, PluginApi, Session } from "../../core/plugin-api.ts";
import type { ClusterIndex } from "./net/cluster-index.ts";

const REFRESH_MS = 2000;

export interface ConnectionCounter {
  /** `cluster`, counting each stream opened by the address it goes to. */
  open: OpenStream;
  byAddress(): Map<string, number>;
}

export function countConnections(cluster: OpenStream): ConnectionCounter {
  const counts = new Map<string, number>();
  return {
    open: (host, port) => {
      counts.set(host, (counts.get(host) ?? 0) + 1);
      return cluster(host, port);
    },
    byAddress: () => counts,
  };
}

export function publishConnectPanel(
  api: Pick<PluginApi, "ui">,
  ctx: { session: Session; index: ClusterIndex; domain: string; counter: ConnectionCounter; proxy?: string },
): void {
  const { session, index, domain, counter } = ctx;
  const refresh = () => {
    if (!api.ui.watching) return;
    const counts = counter.byAddress();
    const known = new Set<string>();
    const rows: string[][] = [];
    for (const service of index.services()) {
      const names = [service.name, `${service.name}.${service.namespace}`, `${service.name}.${service.namespace}.svc.${domain}`];
      if (service.namespace !== session.namespace) names.shift();
      const connections = service.clusterIPs.reduce((sum, ip) => sum + (counts.get(ip) ?? 0), 0) + names.reduce((sum, n) => sum + (counts.get(n) ?? 0), 0);
      for (const key of [...service.clusterIPs, ...names]) known.add(key);
      rows.push([
        `${service.namespace}/${service.name}`,
        names.join(" "),
        service.externalName ?? (service.headless ? "headless (pod IPs)" : service.clusterIPs.join(" ")),
        service.ports.map((p) => `${p.port}/${p.protocol}`).join(" "),
        String(connections),
      ]);
    }
    for (const [address, count] of counts) if (!known.has(address)) rows.push(["", "", address, "", String(count)]);
    api.ui.panel({
      id: "connect",
      sessionId: session.id,
      title: `connect: namespace ${session.namespace}`,
      columns: ["service", "names", "address", "ports", "connections"],
      rows,
      note: ctx.proxy ? `through the SOCKS5/HTTP proxy on ${ctx.proxy}` : undefined,
    });
  };
  const timer = setInterval(refresh, REFRESH_MS);
  timer.unref();
  void session.ended.then(() => clearInterval(timer));
}
