// The laptop side of a connect: the local servers the chosen driver needs (transparent listener,
// per-target listeners, proxy, DNS server) and the spec that tells the driver what to change. Local
// servers start before anything changes, so a taken port fails before the system is touched.

import { readFile } from "node:fs/promises";
import type { OpenStream, PluginApi, ProxyServer } from "../../core/plugin-api.ts";
import type { ClusterIndex } from "./net/cluster-index.ts";
import type { CaptureRanges } from "./net/cluster-cidrs.ts";
import { answerName, classifyName, type NamingContext } from "./net/cluster-names.ts";
import { clusterRoute } from "./net/cluster-route.ts";
import { startDnsServer, type DnsServer } from "./net/dns-server.ts";
import type { ConnectNetSpec, HostFacts, NetDriver } from "./net/driver.ts";
import { DNS_ADDRESS } from "./net/drivers/linux.ts";
import { clusterHostsEntries } from "./net/hosts-entries.ts";
import { AliasLayout, MappedListeners, addressTargets } from "./net/mapped-capture.ts";
import { loadOriginalDestination } from "./net/original-dst.ts";
import { startRelayListener, type RelayListener } from "./net/relay-listener.ts";
import { clusterSearchDomains, parseResolvConf, upstreamsOf } from "./net/resolv-conf.ts";
import type { ConnectOptions } from "./options.ts";

export interface LaptopSideOptions {
  /** The core's laptop services (proxy, carry) and errors. */
  api: Pick<PluginApi, "errors" | "carry" | "proxy">;
  driver: NetDriver;
  options: ConnectOptions;
  sessionId: string;
  context: NamingContext;
  index: ClusterIndex;
  capture: CaptureRanges;
  /** Opens a stream inside the cluster (waits for the tunnel when it is not up yet). */
  cluster: OpenStream;
  logger: { debug(message: string): void; warn(message: string): void };
}

export interface LaptopSide {
  spec: ConnectNetSpec;
  facts: HostFacts;
  proxy?: ProxyServer;
  dns?: DnsServer;
  /** The spec brought up to date with the index (mappings, hosts entries). */
  currentSpec(): Promise<ConnectNetSpec>;
  stats(): Record<string, unknown>;
  close(): Promise<void>;
}

/** Whether the driver's DNS goes through the local server (not the hosts file, not off). */
const usesDnsServer = (driver: NetDriver, options: ConnectOptions) =>
  driver.name === "darwin" || (driver.name === "linux-system" && options.dnsMode !== "hosts" && options.dnsMode !== "none");

export async function startLaptopSide(o: LaptopSideOptions): Promise<LaptopSide> {
  const { api, driver, options, context, index, capture, logger } = o;
  const closers: (() => Promise<void>)[] = [];
  const close = async () => {
    for (const closer of closers.reverse()) await closer().catch(() => undefined);
  };
  const failed = (target: string) => (error: unknown) => logger.debug(`connection to ${target} failed: ${(error as Error)?.message ?? error}`);

  try {
    const spec: ConnectNetSpec = { sessionId: o.sessionId, namespace: context.namespace, domain: context.domain, capture };
    let relay: RelayListener | undefined;
    let mapped: MappedListeners | undefined;
    let proxy: ProxyServer | undefined;
    let dns: DnsServer | undefined;
    const aliasLayout = new AliasLayout();

    if (driver.capture === "transparent") {
      const originalDestination = await loadOriginalDestination(api.errors);
      relay = await startRelayListener(
        {
          // A connection made to the listener itself (not redirected) reports the listener as its
          // destination: refused, or it would loop into the cluster asking for 127.0.0.1.
          destination: (socket) => {
            const destination = originalDestination(socket);
            return destination && !(destination.host === relay?.host && destination.port === relay?.port) ? destination : undefined;
          },
          openStream: o.cluster,
          onError: (error, destination) => failed(destination ? `${destination.host}:${destination.port}` : "a captured address")(error),
        },
        api,
      );
      closers.push(() => relay!.close());
      spec.transparentPort = relay.port;
    } else if (driver.capture === "mapped") {
      mapped = new MappedListeners(api, o.cluster, (error, mapping) => failed(`${mapping.target.host}:${mapping.target.port}`)(error));
      closers.push(() => mapped!.close());
    } else {
      proxy = await api.proxy.start({
        port: options.proxyPort,
        openStream: clusterRoute({ context, view: index, capture, cluster: o.cluster, errors: api.errors }),
        onError: (error, target) => failed(target)(error),
      });
      closers.push(() => proxy!.close());
      spec.proxy = { host: proxy.host, port: proxy.port };
    }

    if (usesDnsServer(driver, options)) {
      // Upstreams are the resolvers the laptop uses NOW, before the driver points it at us.
      const resolvConf = await readFile("/etc/resolv.conf", "utf8").catch(() => "");
      dns = await startDnsServer({
        port: 0,
        zone: context.domain,
        upstreams: upstreamsOf(parseResolvConf(resolvConf), [DNS_ADDRESS]),
        answer: (qname) => answerName(classifyName(qname, context), index),
        logger,
      });
      closers.push(() => dns!.close());
      spec.dns = { address: DNS_ADDRESS, port: dns.port, searchDomains: clusterSearchDomains(context.namespace, context.domain), namespaces: index.namespaces() };
    }

    const currentSpec = async (): Promise<ConnectNetSpec> => {
      const next: ConnectNetSpec = { ...spec };
      if (driver.name === "windows") {
        const layout = aliasLayout.layout(index, context);
        next.mappings = await mapped!.sync(layout.mappings);
        next.hosts = layout.hosts;
      } else if (driver.name === "darwin") {
        next.mappings = await mapped!.sync(addressTargets(index));
      } else if (driver.name === "linux-hosts" || (driver.name === "linux-system" && options.dnsMode === "hosts")) {
        next.hosts = clusterHostsEntries(index, context);
      }
      if (next.dns) next.dns = { ...next.dns, namespaces: index.namespaces() };
      return next;
    };

    const first = await currentSpec();
    const facts = await driver.probe(first);
    return {
      spec: first,
      facts,
      proxy,
      dns,
      currentSpec,
      stats: () => ({
        ...(relay ? { captured: relay.stats() } : {}),
        ...(mapped ? { mapped: mapped.mappings().length } : {}),
        ...(proxy ? { proxy: proxy.stats() } : {}),
        ...(dns ? { dns: dns.stats() } : {}),
      }),
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}
