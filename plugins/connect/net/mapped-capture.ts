// Capture by mapping, for systems that cannot tell a listener a connection's original destination
// (macOS pf, Windows): one loopback listener per cluster target, kept in step with the index.

import type { OpenStream } from "../../../core/plugin-api.ts";
import type { ClusterIndex } from "./cluster-index.ts";
import { serviceNameForms, type NamingContext } from "./cluster-names.ts";
import type { PortMapping } from "./driver.ts";
import type { HostsEntry } from "./hosts-file.ts";
import { startRelayListener, type RelayApi, type RelayListener } from "./relay-listener.ts";

export interface DesiredMapping {
  /** Stable identity: the same key keeps its listener (and port) across syncs. */
  key: string;
  target: { host: string; port: number };
  /** Port 0 picks a free one. */
  listen: { host: string; port: number };
}

/** macOS: every ClusterIP:port and every endpoint IP:port of the indexed namespaces, on 127.0.0.1. */
export function addressTargets(index: Pick<ClusterIndex, "services" | "endpointTargets">): DesiredMapping[] {
  const targets: DesiredMapping[] = [];
  for (const service of index.services()) {
    for (const ip of service.clusterIPs) {
      for (const port of service.ports.filter((p) => p.protocol === "TCP")) {
        targets.push({ key: `${ip}:${port.port}`, target: { host: ip, port: port.port }, listen: { host: "127.0.0.1", port: 0 } });
      }
    }
  }
  for (const endpoint of index.endpointTargets()) {
    const key = `${endpoint.host}:${endpoint.port}`;
    if (!targets.some((t) => t.key === key)) targets.push({ key, target: endpoint, listen: { host: "127.0.0.1", port: 0 } });
  }
  return targets;
}

/** 127.20.0.1, 127.20.0.2, ... : loopback addresses Windows (and Linux) answer on without configuration. */
export function loopbackAlias(n: number): string {
  if (n < 1 || n > 0xfffe) throw new Error(`loopback alias ${n} out of range`);
  return `127.20.${n >> 8}.${n & 255}`;
}

/**
 * Windows: each service keeps one loopback address for the whole session; its ports are listened
 * on there with the service's own numbers, and the hosts file maps its names to that address.
 * The target is the service's name, resolved by the cluster, so headless services work too.
 */
export class AliasLayout {
  private readonly aliases = new Map<string, string>();
  private next = 1;

  layout(index: Pick<ClusterIndex, "services">, context: NamingContext): { mappings: DesiredMapping[]; hosts: HostsEntry[] } {
    const mappings: DesiredMapping[] = [];
    const hosts: HostsEntry[] = [];
    for (const service of index.services()) {
      if (service.externalName) continue;
      const id = `${service.namespace}/${service.name}`;
      let alias = this.aliases.get(id);
      if (!alias) this.aliases.set(id, (alias = loopbackAlias(this.next++)));
      hosts.push({ address: alias, names: serviceNameForms(service, context) });
      const fqdn = `${service.name}.${service.namespace}.svc.${context.domain}`;
      for (const port of service.ports.filter((p) => p.protocol === "TCP")) {
        mappings.push({ key: `${id}:${port.port}`, target: { host: fqdn, port: port.port }, listen: { host: alias, port: port.port } });
      }
    }
    return { mappings, hosts };
  }
}

export class MappedListeners {
  private readonly listeners = new Map<string, { desired: DesiredMapping; relay: RelayListener }>();
  private syncing: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly api: RelayApi,
    private readonly openStream: OpenStream,
    private readonly onError?: (error: unknown, mapping: DesiredMapping) => void,
  ) {}

  /** Opens listeners for new keys, closes those of vanished keys; syncs run one after another. */
  sync(desired: DesiredMapping[]): Promise<PortMapping[]> {
    const run = this.syncing.then(() => this.syncNow(desired));
    this.syncing = run.catch(() => undefined);
    return run;
  }

  mappings(): PortMapping[] {
    return [...this.listeners.values()].map(({ desired, relay }) => ({ target: desired.target, listen: { host: relay.host, port: relay.port } }));
  }

  async close(): Promise<void> {
    await this.syncing;
    await Promise.all([...this.listeners.values()].map(({ relay }) => relay.close()));
    this.listeners.clear();
  }

  private async syncNow(desired: DesiredMapping[]): Promise<PortMapping[]> {
    const wanted = new Map(desired.map((d) => [d.key, d]));
    for (const [key, { desired: current, relay }] of [...this.listeners]) {
      const next = wanted.get(key);
      if (next && next.target.host === current.target.host && next.target.port === current.target.port) continue;
      this.listeners.delete(key);
      await relay.close();
    }
    for (const mapping of desired) {
      if (this.listeners.has(mapping.key)) continue;
      try {
        const relay = await startRelayListener(
          {
            host: mapping.listen.host,
            port: mapping.listen.port,
            destination: () => mapping.target,
            openStream: this.openStream,
            onError: (error) => this.onError?.(error, mapping),
          },
          this.api,
        );
        this.listeners.set(mapping.key, { desired: mapping, relay });
      } catch (error) {
        this.onError?.(error, mapping);
      }
    }
    return this.mappings();
  }
}
