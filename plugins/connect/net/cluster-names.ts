// The DNS naming rules of a Kubernetes cluster, as a pod of the connect namespace sees them, and
// the one decision that keeps the laptop's other names working: a name is answered here only when
// it strictly has one of the cluster's forms; everything else goes to the upstream resolver as it is.
//
//   svc                               service of the connect namespace        (answered if it exists)
//   svc.ns, svc.ns.svc                service of namespace ns                 (answered if it exists)
//   svc.ns.svc.<domain>               the same, fully qualified               (authoritative: NXDOMAIN if absent)
//   <host>.svc.ns.svc.<domain>        one endpoint of a headless service (hostname or dashed IP)
//   <a-b-c-d>.ns.pod.<domain>         a pod IP, as CoreDNS's `pods insecure` answers it
//
// Names without the cluster domain are answered only when the service exists, because the same
// text may be a real name elsewhere (`intranet.corp`, `github.com`). A search-list artefact such as
// `echo.demo.svc.cluster.local.corp.example` has none of these forms and is forwarded.

import type { PodRef } from "../../../core/plugin-api.ts";
import { isIPv4 } from "./cidr.ts";

export const DEFAULT_CLUSTER_DOMAIN = "cluster.local";

export interface ServicePortRecord {
  name?: string;
  port: number;
  protocol: string;
}

export interface ServiceRecord {
  namespace: string;
  name: string;
  /** IPv4 cluster IPs; empty for headless and ExternalName services. */
  clusterIPs: string[];
  headless: boolean;
  /** Set for type ExternalName: the name answers as a CNAME to it. */
  externalName?: string;
  publishNotReadyAddresses: boolean;
  /** `sessionAffinity: ClientIP`: every connection of one client goes to the same pod. */
  clientIpAffinity?: boolean;
  ports: ServicePortRecord[];
}

export interface EndpointRecord {
  ip: string;
  hostname?: string;
  ready: boolean;
  /** The pod behind the address (the slice's targetRef), in the slice's namespace; absent for an endpoint that is no pod. */
  pod?: string;
  /** That pod's uid: a pod recreated under the same name is another pod. */
  podUid?: string;
}

/** The pod an endpoint names, as the pod streams key it; undefined for an endpoint that is no pod. */
export function podRefOf(namespace: string, endpoint: EndpointRecord): PodRef | undefined {
  return endpoint.pod ? { namespace, name: endpoint.pod, ...(endpoint.podUid ? { uid: endpoint.podUid } : {}) } : undefined;
}

export type ClusterName =
  /** `qualified`: written with the cluster domain, so an absent service is NXDOMAIN rather than forwarded. */
  | { kind: "service"; namespace: string; service: string; qualified: boolean }
  | { kind: "endpoint"; namespace: string; service: string; endpoint: string }
  | { kind: "pod"; namespace: string; ip: string }
  /** An intermediate name of the zone (`cluster.local`, `svc.cluster.local`, `demo.svc.cluster.local`). */
  | { kind: "zone" }
  /** Inside the cluster zone but of no form that can exist. */
  | { kind: "nonexistent" };

export interface NamingContext {
  /** The connect namespace: short names are services of this namespace. */
  namespace: string;
  /** Cluster DNS domain, "cluster.local" unless the cluster says otherwise. */
  domain: string;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const isLabel = (label: string | undefined): label is string => label !== undefined && DNS_LABEL.test(label);

/** Lower case, without the root dot: the form every comparison uses. */
export function canonicalName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith(".") ? lower.slice(0, -1) : lower;
}

/** "10-244-0-5" -> "10.244.0.5"; undefined when it is not an IPv4 address in dashed form. */
export function undashIp(label: string): string | undefined {
  const ip = label.split("-").join(".");
  return label.split("-").length === 4 && isIPv4(ip) ? ip : undefined;
}

export const dashIp = (ip: string): string => ip.split(".").join("-");

/** Which cluster name `qname` is, or undefined when it is not one (forward it untouched). */
export function classifyName(qname: string, context: NamingContext): ClusterName | undefined {
  const name = canonicalName(qname);
  if (!name) return undefined;
  const domain = canonicalName(context.domain);
  if (name === domain) return { kind: "zone" };
  if (name.endsWith(`.${domain}`)) return classifyQualified(name.slice(0, -domain.length - 1).split("."));

  const labels = name.split(".");
  if (!labels.every(isLabel)) return undefined;
  switch (labels.length) {
    case 1:
      return { kind: "service", namespace: context.namespace, service: labels[0]!, qualified: false };
    case 2:
      return { kind: "service", namespace: labels[1]!, service: labels[0]!, qualified: false };
    case 3:
      return labels[2] === "svc" ? { kind: "service", namespace: labels[1]!, service: labels[0]!, qualified: false } : undefined;
    default:
      return undefined;
  }
}

/** `labels` are what precedes the cluster domain. */
function classifyQualified(labels: string[]): ClusterName {
  if (!labels.every(isLabel)) return { kind: "nonexistent" };
  const [first, second, third, fourth] = labels;
  switch (labels.length) {
    case 1:
      return first === "svc" || first === "pod" ? { kind: "zone" } : { kind: "nonexistent" };
    case 2:
      return second === "svc" || second === "pod" ? { kind: "zone" } : { kind: "nonexistent" };
    case 3:
      if (third === "svc") return { kind: "service", namespace: second!, service: first!, qualified: true };
      if (third === "pod") {
        const ip = undashIp(first!);
        return ip ? { kind: "pod", namespace: second!, ip } : { kind: "nonexistent" };
      }
      return { kind: "nonexistent" };
    case 4:
      return fourth === "svc" ? { kind: "endpoint", namespace: third!, service: second!, endpoint: first! } : { kind: "nonexistent" };
    default:
      return { kind: "nonexistent" };
  }
}

/** What the names need from the cluster index. */
export interface NameView {
  /** The service, fetched on demand when its namespace is not indexed yet; undefined when absent. */
  lookupService(namespace: string, name: string): Promise<ServiceRecord | undefined>;
  endpoints(namespace: string, service: string): EndpointRecord[];
}

export type NameAnswer =
  | { kind: "addresses"; addresses: string[] }
  | { kind: "cname"; target: string }
  /** The name exists but has no address (a headless service without ready endpoints). */
  | { kind: "nodata" }
  | { kind: "nxdomain" }
  /** Not a cluster name after all: the upstream resolver answers it. */
  | { kind: "forward" };

const FORWARD: NameAnswer = { kind: "forward" };

/** Endpoint addresses a headless service answers with, as CoreDNS does: ready ones unless told otherwise. */
export function serviceEndpointAddresses(service: ServiceRecord, endpoints: EndpointRecord[]): string[] {
  const chosen = endpoints.filter((e) => e.ready || service.publishNotReadyAddresses).map((e) => e.ip);
  return [...new Set(chosen)].sort();
}

export async function answerName(name: ClusterName | undefined, view: NameView): Promise<NameAnswer> {
  if (!name) return FORWARD;
  switch (name.kind) {
    case "zone":
      return { kind: "nodata" };
    case "nonexistent":
      return { kind: "nxdomain" };
    case "pod":
      return { kind: "addresses", addresses: [name.ip] };
    case "service": {
      const service = await view.lookupService(name.namespace, name.service);
      if (!service) return name.qualified ? { kind: "nxdomain" } : FORWARD;
      if (service.externalName) return { kind: "cname", target: canonicalName(service.externalName) };
      if (!service.headless) return service.clusterIPs.length ? { kind: "addresses", addresses: service.clusterIPs } : { kind: "nodata" };
      const addresses = serviceEndpointAddresses(service, view.endpoints(name.namespace, name.service));
      return addresses.length ? { kind: "addresses", addresses } : { kind: "nodata" };
    }
    case "endpoint": {
      const service = await view.lookupService(name.namespace, name.service);
      if (!service?.headless) return { kind: "nxdomain" };
      const matches = view
        .endpoints(name.namespace, name.service)
        .filter((e) => (e.ready || service.publishNotReadyAddresses) && (e.hostname === name.endpoint || dashIp(e.ip) === name.endpoint));
      return matches.length ? { kind: "addresses", addresses: [...new Set(matches.map((e) => e.ip))] } : { kind: "nxdomain" };
    }
  }
}

/**
 * Every name form a service answers to, for the hosts file: the short forms only for the connect
 * namespace (a short name means "this namespace" to every resolver).
 */
export function serviceNameForms(service: { namespace: string; name: string }, context: NamingContext): string[] {
  const { namespace, name } = service;
  const forms = [`${name}.${namespace}`, `${name}.${namespace}.svc`, `${name}.${namespace}.svc.${canonicalName(context.domain)}`];
  return namespace === context.namespace ? [name, ...forms] : forms;
}
