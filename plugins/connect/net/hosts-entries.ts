// The hosts-file lines for what the index knows, where names point at the cluster's own addresses
// (captured by the kernel rules): a service's names at its ClusterIP; a headless service's names at
// each ready pod, plus each endpoint's own name (web-0.web.demo.svc.cluster.local). ExternalName
// services cannot be written as hosts lines and are left to DNS.

import type { ClusterIndex } from "./cluster-index.ts";
import { serviceEndpointAddresses, serviceNameForms, type NamingContext } from "./cluster-names.ts";
import type { HostsEntry } from "./hosts-file.ts";

export function clusterHostsEntries(index: Pick<ClusterIndex, "services" | "endpoints">, context: NamingContext): HostsEntry[] {
  const entries: HostsEntry[] = [];
  for (const service of index.services()) {
    if (service.externalName) continue;
    const names = serviceNameForms(service, context);
    if (!service.headless) {
      for (const address of service.clusterIPs) entries.push({ address, names });
      continue;
    }
    const endpoints = index.endpoints(service.namespace, service.name);
    for (const address of serviceEndpointAddresses(service, endpoints)) entries.push({ address, names });
    for (const endpoint of endpoints) {
      if (!endpoint.hostname || !(endpoint.ready || service.publishNotReadyAddresses)) continue;
      entries.push({ address: endpoint.ip, names: [`${endpoint.hostname}.${service.name}.${service.namespace}.svc.${context.domain}`] });
    }
  }
  return entries;
}
