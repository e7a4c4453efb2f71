// The address ranges connect captures, read from the cluster itself rather than guessed from the
// IPs that happen to be listed (the guess is what made kt-connect's routes collide with VPNs).
//
// Service range, in order of preference:
//   1. ServiceCIDR objects (networking.k8s.io/v1, Kubernetes 1.33+): the ranges the allocator uses.
//   2. A dry-run create of a Service with a cluster IP no range can hold: the API server refuses it
//      and names the valid range in its message. Nothing is stored (dryRun=All).
// Pod range:
//   1. node.spec.podCIDRs (set when the controller manager allocates node CIDRs).
//   2. Fallback, said out loud: the /16 around each pod IP of the connect namespace (CNIs such as
//      Calico do not fill podCIDRs). --includeIps / --excludeIps correct what it gets wrong.

import { lookup } from "node:dns/promises";
import type { Kube } from "../../../core/plugin-api.ts";
import { cidrCovers, cidrOf, formatCidr, isIPv4, normalizeCidrs, parseIPv4, tryParseCidr, type Cidr } from "./cidr.ts";
import { errorText } from "./error-text.ts";

export type RangeSource = "service-cidr-objects" | "dry-run-message" | "node-pod-cidrs" | "pod-ip-fallback" | "none";

export interface ClusterRanges {
  serviceCidrs: Cidr[];
  podCidrs: Cidr[];
  serviceSource: RangeSource;
  podSource: RangeSource;
}

export interface RangeLogger {
  debug(message: string): void;
  warn(message: string): void;
}

/**
 * A valid unicast address no real service range holds: TEST-NET-3 (RFC 5737) is reserved for
 * documentation. Special ranges (0.0.0.0/8, loopback) could be refused by validation before the
 * allocator speaks, which would name no range.
 */
export const PROBE_CLUSTER_IP = "203.0.113.1";

/** The IPv4 ranges in the API server's refusal of PROBE_CLUSTER_IP ("The range of valid IPs is 10.96.0.0/16"). */
export function serviceCidrsFromMessage(message: string): Cidr[] {
  const at = message.search(/valid (IPs|range)/i);
  if (at < 0) return [];
  const found: Cidr[] = [];
  for (const match of message.slice(at).matchAll(/\b(\d{1,3}(?:\.\d{1,3}){3}\/\d{1,2})\b/g)) {
    const cidr = tryParseCidr(match[1]!);
    if (cidr && cidr.prefix > 0) found.push(cidr);
  }
  return normalizeCidrs(found);
}

/** IPv4 ranges of ServiceCIDR objects that are not being deleted. */
export function serviceCidrsFromObjects(items: any[]): Cidr[] {
  const found: Cidr[] = [];
  for (const item of items) {
    if (item?.metadata?.deletionTimestamp) continue;
    for (const text of item?.spec?.cidrs ?? []) {
      const cidr = typeof text === "string" ? tryParseCidr(text) : undefined;
      if (cidr && text.includes("/")) found.push(cidr);
    }
  }
  return normalizeCidrs(found);
}

export function podCidrsFromNodes(nodes: any[]): Cidr[] {
  const found: Cidr[] = [];
  for (const node of nodes) {
    const texts: unknown[] = node?.spec?.podCIDRs?.length ? node.spec.podCIDRs : node?.spec?.podCIDR ? [node.spec.podCIDR] : [];
    for (const text of texts) {
      const cidr = typeof text === "string" && text.includes("/") ? tryParseCidr(text) : undefined;
      if (cidr) found.push(cidr);
    }
  }
  return normalizeCidrs(found);
}

/**
 * The documented fallback: the /16 around each pod IP. Host-network pods carry the node's address,
 * which is not a pod address, so they are left out.
 */
export function podCidrsFromPodIps(pods: any[]): Cidr[] {
  const found: Cidr[] = [];
  for (const pod of pods) {
    if (pod?.spec?.hostNetwork) continue;
    const ips: string[] = (pod?.status?.podIPs ?? []).map((p: any) => p?.ip).concat(pod?.status?.podIP ? [pod.status.podIP] : []);
    for (const ip of ips) {
      const value = typeof ip === "string" ? parseIPv4(ip) : undefined;
      if (value !== undefined) found.push(cidrOf(value, 16));
    }
  }
  return normalizeCidrs(found);
}

const statusOf = (error: unknown): number | undefined => {
  const s = (error as { status?: unknown })?.status;
  return typeof s === "number" ? s : undefined;
};

export type RangeKube = Pick<Kube, "request">;

export async function discoverServiceCidrs(kube: RangeKube, namespace: string, logger?: RangeLogger): Promise<{ cidrs: Cidr[]; source: RangeSource }> {
  try {
    const list = await kube.request<any>("GET", "/apis/networking.k8s.io/v1/servicecidrs");
    const cidrs = serviceCidrsFromObjects(list?.items ?? []);
    if (cidrs.length) return { cidrs, source: "service-cidr-objects" };
  } catch (error) {
    logger?.debug(`service ranges from ServiceCIDR objects unavailable (${errorText(error)})`);
  }
  const probe = {
    apiVersion: "v1",
    kind: "Service",
    metadata: { generateName: "ktctl-range-probe-" },
    spec: { type: "ClusterIP", clusterIP: PROBE_CLUSTER_IP, ports: [{ port: 1, protocol: "TCP" }] },
  };
  try {
    await kube.request("POST", `/api/v1/namespaces/${encodeURIComponent(namespace)}/services?dryRun=All`, probe);
    logger?.debug("the API server accepted the range probe; it names no range");
  } catch (error) {
    // The refusal is the answer. The message survives in the KtctlError text.
    const cidrs = serviceCidrsFromMessage(errorText(error));
    if (cidrs.length) return { cidrs, source: "dry-run-message" };
    logger?.debug(`the range probe told nothing (${statusOf(error) ?? ""} ${errorText(error)})`);
  }
  return { cidrs: [], source: "none" };
}

export async function discoverPodCidrs(kube: RangeKube, namespace: string, logger?: RangeLogger): Promise<{ cidrs: Cidr[]; source: RangeSource }> {
  try {
    const nodes = await kube.request<any>("GET", "/api/v1/nodes");
    const cidrs = podCidrsFromNodes(nodes?.items ?? []);
    if (cidrs.length) return { cidrs, source: "node-pod-cidrs" };
  } catch (error) {
    logger?.debug(`node pod ranges unavailable (${errorText(error)})`);
  }
  try {
    const pods = await kube.request<any>("GET", `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods`);
    const cidrs = podCidrsFromPodIps(pods?.items ?? []);
    if (cidrs.length) {
      logger?.warn(
        `pod range not published by the cluster; capturing ${cidrs.map(formatCidr).join(", ")} around the pod IPs of ${namespace} (correct with --includeIps/--excludeIps)`,
      );
      return { cidrs, source: "pod-ip-fallback" };
    }
  } catch (error) {
    logger?.debug(`cannot list pods of ${namespace} (${errorText(error)})`);
  }
  return { cidrs: [], source: "none" };
}

export async function discoverClusterRanges(kube: RangeKube, namespace: string, options: { pods: boolean; logger?: RangeLogger }): Promise<ClusterRanges> {
  const [service, pod] = await Promise.all([
    discoverServiceCidrs(kube, namespace, options.logger),
    options.pods ? discoverPodCidrs(kube, namespace, options.logger) : Promise.resolve({ cidrs: [], source: "none" as RangeSource }),
  ]);
  return { serviceCidrs: service.cidrs, podCidrs: pod.cidrs, serviceSource: service.source, podSource: pod.source };
}

/** The API server's IPv4 addresses, from the kubeconfig's server URL (resolved now, before DNS changes). */
export async function apiServerAddresses(server: string, resolve: (host: string) => Promise<string[]> = resolveHost): Promise<string[]> {
  const host = new URL(server).hostname.replace(/^\[|\]$/g, "");
  if (isIPv4(host)) return [host];
  if (host.includes(":")) return [];
  try {
    return (await resolve(host)).filter(isIPv4);
  } catch {
    return [];
  }
}

async function resolveHost(host: string): Promise<string[]> {
  return (await lookup(host, { all: true, family: 4 })).map((a) => a.address);
}

export interface CapturePlanInput {
  ranges: ClusterRanges;
  disablePodIp: boolean;
  include: Cidr[];
  exclude: Cidr[];
  apiServerIps: string[];
}

export interface CaptureRanges {
  /** Captured, unless an address is also in `exclude`. */
  capture: Cidr[];
  /** Never captured: the API server first (the tunnel runs to it), then --excludeIps. */
  exclude: Cidr[];
}

export function captureRanges(input: CapturePlanInput): CaptureRanges {
  const capture = normalizeCidrs([...input.ranges.serviceCidrs, ...(input.disablePodIp ? [] : input.ranges.podCidrs), ...input.include]);
  const apiServer = input.apiServerIps.map((ip) => cidrOf(parseIPv4(ip)!, 32));
  const exclude = normalizeCidrs([...apiServer, ...input.exclude]).filter((hole) => capture.some((c) => cidrCovers(c, hole) || cidrCovers(hole, c)));
  return { capture, exclude };
}
