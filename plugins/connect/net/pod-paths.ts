// `connect --via pod`: which pod port a connection lands on when ktctl takes it straight through
// the pod's own port-forward instead of through the shadow. The answer must be the one the cluster
// would give, or none: a ClusterIP's service port becomes its target port on one of the service's
// ready pods (in turn, as kube-proxy spreads them; always the same one for a service with
// `sessionAffinity: ClientIP`, the laptop being one client), a pod IP stays itself. Anything ktctl cannot
// answer that way for certain (an ExternalName, a service port that does not exist, a service
// with an endpoint that is no pod, an address no endpoint slice names) is left to the shadow, which
// asks the cluster itself.

import type { PodRef } from "../../../core/plugin-api.ts";
import { isIPv4 } from "./cidr.ts";
import { answerName, classifyName, podRefOf, type EndpointRecord, type NameView, type NamingContext, type ServiceRecord } from "./cluster-names.ts";

export interface PodPath {
  pod: PodRef;
  port: number;
}

/** What the choice needs from the cluster index. */
export interface PodPathView extends NameView {
  serviceAt(ip: string): ServiceRecord | undefined;
  podAt(ip: string): PodRef | undefined;
  slicesOf(namespace: string, service: string): { endpoints: EndpointRecord[]; namedPorts: { name: string; port: number }[] }[];
  /** Settles once every namespace being indexed is listed. */
  listed(): Promise<void>;
}

export class PodPaths {
  /** Per service port, how many connections it has sent: the next goes to the next ready pod. */
  private readonly turns = new Map<string, number>();
  /** Per service with ClientIP affinity, the pod this laptop's connections stick to while it is ready. */
  private readonly stuck = new Map<string, string>();

  constructor(
    private readonly view: PodPathView,
    private readonly context: NamingContext,
  ) {}

  /**
   * The pod port for a connection to `host` (an address, or a cluster name as the proxy passes
   * it) and `port`; undefined when only the shadow can take it.
   */
  async of(host: string, port: number): Promise<PodPath | undefined> {
    const ip = isIPv4(host) ? host : await this.addressOf(host);
    if (ip === undefined) return undefined;
    // A name of another namespace was answered from one GET while that namespace's first lists
    // are still under way: its addresses are known once they are in.
    return this.ofAddress(ip, port) ?? (await this.view.listed().then(() => this.ofAddress(ip, port)));
  }

  ofAddress(ip: string, port: number): PodPath | undefined {
    const service = this.view.serviceAt(ip);
    if (service) return this.ofService(service, port);
    const pod = this.view.podAt(ip);
    return pod ? { pod, port } : undefined;
  }

  /** A name's address as the DNS server would answer it (a headless service's pods in turn). */
  private async addressOf(name: string): Promise<string | undefined> {
    const answer = await answerName(classifyName(name, this.context), this.view);
    if (answer.kind !== "addresses" || !answer.addresses.length) return undefined;
    return answer.addresses[this.nextTurn(`name ${name}`) % answer.addresses.length];
  }

  private ofService(service: ServiceRecord, port: number): PodPath | undefined {
    const servicePort = service.ports.find((p) => p.port === port && p.protocol === "TCP");
    if (!servicePort) return undefined;
    const name = servicePort.name ?? "";
    const ready: PodPath[] = [];
    for (const slice of this.view.slicesOf(service.namespace, service.name)) {
      const target = slice.namedPorts.find((p) => p.name === name);
      if (!target) continue;
      for (const endpoint of slice.endpoints) {
        if (!endpoint.ready) continue;
        const pod = podRefOf(service.namespace, endpoint);
        // An endpoint that is no pod (a selector-less service's own addresses): only the cluster reaches it.
        if (!pod) return undefined;
        ready.push({ pod, port: target.port });
      }
    }
    if (!ready.length) return undefined;
    const key = `${service.namespace}/${service.name}`;
    if (service.clientIpAffinity) {
      const chosen = ready.find((path) => path.pod.name === this.stuck.get(key)) ?? ready[0]!;
      this.stuck.set(key, chosen.pod.name);
      return chosen;
    }
    return ready[this.nextTurn(`${key}:${port}`) % ready.length];
  }

  /** A ready pod behind one of these services, to learn early how the API server reaches pods. */
  anyPod(services: readonly ServiceRecord[]): PodPath | undefined {
    for (const service of services) {
      for (const slice of this.view.slicesOf(service.namespace, service.name)) {
        const endpoint = slice.endpoints.find((e) => e.ready && e.pod);
        if (endpoint && slice.namedPorts.length) return { pod: podRefOf(service.namespace, endpoint)!, port: slice.namedPorts[0]!.port };
      }
    }
    return undefined;
  }

  private nextTurn(key: string): number {
    const turn = this.turns.get(key) ?? 0;
    this.turns.set(key, turn + 1);
    return turn;
  }
}
