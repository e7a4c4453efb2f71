// A live picture of the services and endpoints connect answers names for. The connect namespace is
// listed and watched from the start; another namespace is watched from the first time a name in it
// turns out to be a service there, so `svc.other-ns` works without watching the whole cluster.

import type { Kube, PodRef } from "../../../core/plugin-api.ts";
import { isIPv4 } from "./cidr.ts";
import { podRefOf, type EndpointRecord, type NameView, type ServicePortRecord, type ServiceRecord } from "./cluster-names.ts";
import { errorText } from "./error-text.ts";

export type IndexKube = Pick<Kube, "request" | "watch">;

export interface IndexLogger {
  debug(message: string): void;
  warn(message: string): void;
}

export interface ClusterIndexOptions {
  kube: IndexKube;
  /** Watched from the start; start() fails when its services cannot be listed. */
  namespaces: string[];
  /**
   * Index every namespace through two cluster-wide watches (the hosts file must name everything
   * up front: no query tells it which namespace is wanted). Falls back to `namespaces` when RBAC
   * refuses cluster-wide lists.
   */
  allNamespaces?: boolean;
  logger?: IndexLogger;
  /** How long "no such service" is remembered for a namespace that is not watched (default 15 s). */
  negativeCacheMs?: number;
  /** Time source for the negative cache (tests). */
  now?: () => number;
}

export interface SliceRecord {
  service: string;
  endpoints: EndpointRecord[];
  /** TCP ports the slice's endpoints serve (the service's target ports). */
  ports: number[];
  /** The same ports by the service port's name ("" for an unnamed one): how a service port finds its target port. */
  namedPorts: { name: string; port: number }[];
}

interface AddressBook {
  services: Map<string, ServiceRecord>;
  pods: Map<string, PodRef>;
}

interface NamespaceState {
  services: Map<string, ServiceRecord>;
  /** EndpointSlice name -> its service and endpoints. */
  slices: Map<string, SliceRecord>;
  /** Settles when the first lists are in. */
  ready: Promise<void>;
}

const ALL_SERVICES = "/api/v1/services";
const ALL_SLICES = "/apis/discovery.k8s.io/v1/endpointslices";
const SERVICES = (ns: string) => `/api/v1/namespaces/${encodeURIComponent(ns)}/services`;
const SLICES = (ns: string) => `/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(ns)}/endpointslices`;

const status = (error: unknown): number | undefined => {
  const e = error as { status?: unknown };
  return typeof e?.status === "number" ? e.status : undefined;
};

/** A Service object as the index keeps it. */
export function serviceRecordOf(obj: any): ServiceRecord {
  const spec = obj?.spec ?? {};
  const ips: string[] = (spec.clusterIPs?.length ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : []).filter(
    (ip: string) => ip && ip !== "None" && isIPv4(ip),
  );
  const ports: ServicePortRecord[] = (spec.ports ?? []).map((p: any) => ({
    ...(p.name ? { name: String(p.name) } : {}),
    port: Number(p.port),
    protocol: String(p.protocol ?? "TCP"),
  }));
  const externalName = spec.type === "ExternalName" && spec.externalName ? String(spec.externalName) : undefined;
  return {
    namespace: String(obj?.metadata?.namespace ?? ""),
    name: String(obj?.metadata?.name ?? ""),
    clusterIPs: ips,
    headless: !externalName && (spec.clusterIP === "None" || (!ips.length && spec.type !== "ExternalName")),
    ...(externalName ? { externalName } : {}),
    publishNotReadyAddresses: spec.publishNotReadyAddresses === true,
    ...(spec.sessionAffinity === "ClientIP" ? { clientIpAffinity: true } : {}),
    ports,
  };
}

/** The IPv4 endpoints of an EndpointSlice, with readiness as the endpoints controller reports it. */
export function sliceRecordOf(obj: any): SliceRecord | undefined {
  const service = obj?.metadata?.labels?.["kubernetes.io/service-name"];
  if (typeof service !== "string" || (obj.addressType && obj.addressType !== "IPv4")) return undefined;
  const endpoints: EndpointRecord[] = [];
  for (const endpoint of obj.endpoints ?? []) {
    // A missing `ready` means unknown, which consumers must take as ready (discovery.k8s.io/v1 docs).
    const ready = endpoint?.conditions?.ready !== false;
    for (const ip of endpoint?.addresses ?? []) {
      if (!isIPv4(ip)) continue;
      const ref = endpoint?.targetRef?.kind === "Pod" && endpoint.targetRef.name ? endpoint.targetRef : undefined;
      endpoints.push({
        ip,
        ready,
        ...(endpoint.hostname ? { hostname: String(endpoint.hostname) } : {}),
        ...(ref ? { pod: String(ref.name), ...(ref.uid ? { podUid: String(ref.uid) } : {}) } : {}),
      });
    }
  }
  const namedPorts = (obj.ports ?? [])
    .filter((p: any) => (p?.protocol ?? "TCP") === "TCP" && Number.isInteger(p?.port))
    .map((p: any) => ({ name: String(p.name ?? ""), port: Number(p.port) }));
  return { service, endpoints, ports: namedPorts.map((p: { port: number }) => p.port), namedPorts };
}

export class ClusterIndex implements NameView {
  private readonly kube: IndexKube;
  private readonly logger?: IndexLogger;
  private readonly namespacesState = new Map<string, NamespaceState>();
  private readonly negative = new Map<string, number>();
  private readonly pendingLookups = new Map<string, Promise<ServiceRecord | undefined>>();
  private readonly listeners = new Set<(namespace: string) => void>();
  private readonly stop = new AbortController();
  private readonly negativeCacheMs: number;
  private readonly now: () => number;
  /** Every namespace is seen through cluster-wide watches: absent means absent, no lookups needed. */
  private clusterWide = false;
  /** Dropped on every change; connections ask by address far more often than the index changes. */
  private addressBook?: AddressBook;

  constructor(private readonly options: ClusterIndexOptions) {
    this.kube = options.kube;
    this.logger = options.logger;
    this.negativeCacheMs = options.negativeCacheMs ?? 15_000;
    this.now = options.now ?? Date.now;
  }

  /** Lists and starts watching the initial namespaces; rejects when one of them cannot be listed. */
  async start(): Promise<void> {
    if (this.options.allNamespaces) {
      try {
        await this.followAll();
        return;
      } catch (error) {
        if (status(error) !== 403) throw error;
        this.logger?.warn(`cannot list services in all namespaces (${errorText(error)}); indexing ${this.options.namespaces.join(", ")} only`);
      }
    }
    await Promise.all(this.options.namespaces.map((ns) => this.watchNamespace(ns)));
  }

  /** Whether every namespace is indexed (cluster-wide watches). */
  get allNamespaces(): boolean {
    return this.clusterWide;
  }

  /** Starts indexing a namespace (once); settles when its first lists are in. */
  watchNamespace(namespace: string): Promise<void> {
    const known = this.namespacesState.get(namespace);
    if (known) return known.ready;
    if (this.clusterWide) return this.stateOf(namespace)!.ready;
    const state: NamespaceState = { services: new Map(), slices: new Map(), ready: Promise.resolve() };
    this.namespacesState.set(namespace, state);
    state.ready = this.follow(namespace, state).catch((error) => {
      this.namespacesState.delete(namespace);
      throw error;
    });
    return state.ready;
  }

  /** Settles once every namespace being indexed has its first lists in (one found by a name a moment ago included). */
  async listed(): Promise<void> {
    await Promise.all([...this.namespacesState.values()].map((state) => state.ready.catch(() => undefined)));
  }

  /** Namespaces being indexed. */
  namespaces(): string[] {
    return [...this.namespacesState.keys()].sort();
  }

  isWatched(namespace: string): boolean {
    return this.namespacesState.has(namespace);
  }

  service(namespace: string, name: string): ServiceRecord | undefined {
    return this.namespacesState.get(namespace)?.services.get(name);
  }

  services(namespace?: string): ServiceRecord[] {
    const states = namespace ? [this.namespacesState.get(namespace)].filter((s) => s !== undefined) : [...this.namespacesState.values()];
    return states.flatMap((s) => [...s.services.values()]).sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
  }

  endpoints(namespace: string, service: string): EndpointRecord[] {
    const state = this.namespacesState.get(namespace);
    if (!state) return [];
    const result: EndpointRecord[] = [];
    for (const slice of state.slices.values()) if (slice.service === service) result.push(...slice.endpoints);
    return result;
  }

  /** The endpoint slices of a service (its endpoints with their pods, and its target ports by name). */
  slicesOf(namespace: string, service: string): SliceRecord[] {
    const state = this.namespacesState.get(namespace);
    return state ? [...state.slices.values()].filter((slice) => slice.service === service) : [];
  }

  /** The indexed service with this ClusterIP. */
  serviceAt(ip: string): ServiceRecord | undefined {
    return this.addresses().services.get(ip);
  }

  /** The pod an endpoint slice of an indexed namespace names for this address. */
  podAt(ip: string): PodRef | undefined {
    return this.addresses().pods.get(ip);
  }

  /** Every pod IP:port the endpoint slices of the indexed namespaces name (ready or not). */
  endpointTargets(): { host: string; port: number }[] {
    const seen = new Map<string, { host: string; port: number }>();
    for (const state of this.namespacesState.values()) {
      for (const slice of state.slices.values()) {
        for (const endpoint of slice.endpoints) for (const port of slice.ports) seen.set(`${endpoint.ip}:${port}`, { host: endpoint.ip, port });
      }
    }
    return [...seen.values()];
  }

  /** From the index when the namespace is watched; otherwise one GET, and the namespace is watched from then on. */
  async lookupService(namespace: string, name: string): Promise<ServiceRecord | undefined> {
    const state = this.namespacesState.get(namespace);
    if (state) {
      await state.ready.catch(() => undefined);
      return state.services.get(name);
    }
    if (this.clusterWide) return undefined;
    const key = `${namespace}/${name}`;
    const until = this.negative.get(key);
    if (until !== undefined && until > this.now()) return undefined;
    const pending = this.pendingLookups.get(key);
    if (pending) return pending;
    const lookup = this.fetchService(namespace, name).finally(() => this.pendingLookups.delete(key));
    this.pendingLookups.set(key, lookup);
    return lookup;
  }

  /** Called with the namespace whenever a service or endpoint there changes. */
  onChange(listener: (namespace: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Applies one watch event of a Service (public so the naming rules can be tested on real objects). */
  applyService(type: string, obj: any): void {
    const record = serviceRecordOf(obj);
    const state = this.stateOf(record.namespace);
    if (!state || !record.name) return;
    if (type === "DELETED") state.services.delete(record.name);
    else state.services.set(record.name, record);
    this.changed(record.namespace);
  }

  /** Applies one watch event of an EndpointSlice. */
  applyEndpointSlice(type: string, obj: any): void {
    const namespace = obj?.metadata?.namespace;
    const name = obj?.metadata?.name;
    const state = typeof namespace === "string" ? this.stateOf(namespace) : undefined;
    if (!state || typeof name !== "string") return;
    const record = type === "DELETED" ? undefined : sliceRecordOf(obj);
    if (record) state.slices.set(name, record);
    else state.slices.delete(name);
    this.changed(namespace);
  }

  close(): void {
    this.stop.abort();
  }

  /** The namespace's state; in cluster-wide mode a namespace seen for the first time gets one. */
  private stateOf(namespace: string): NamespaceState | undefined {
    let state = this.namespacesState.get(namespace);
    if (!state && this.clusterWide && namespace) {
      state = { services: new Map(), slices: new Map(), ready: Promise.resolve() };
      this.namespacesState.set(namespace, state);
    }
    return state;
  }

  /** ClusterIP -> service and pod IP -> pod, built on the first question after a change. */
  private addresses(): AddressBook {
    if (this.addressBook) return this.addressBook;
    const book: AddressBook = { services: new Map(), pods: new Map() };
    for (const [namespace, state] of this.namespacesState) {
      for (const service of state.services.values()) for (const ip of service.clusterIPs) book.services.set(ip, service);
      for (const slice of state.slices.values())
        for (const endpoint of slice.endpoints) if (endpoint.pod) book.pods.set(endpoint.ip, podRefOf(namespace, endpoint)!);
    }
    return (this.addressBook = book);
  }

  private changed(namespace: string) {
    this.addressBook = undefined;
    for (const listener of this.listeners) {
      try {
        listener(namespace);
      } catch (error) {
        this.logger?.warn(`index listener failed: ${(error as Error)?.message ?? error}`);
      }
    }
  }

  private async fetchService(namespace: string, name: string): Promise<ServiceRecord | undefined> {
    try {
      const obj = await this.kube.request<any>("GET", `${SERVICES(namespace)}/${encodeURIComponent(name)}`);
      // A service there: from now on the namespace is indexed like the connect namespace.
      this.watchNamespace(namespace).catch((error) => this.logger?.warn(`cannot watch namespace ${namespace}: ${errorText(error)}`));
      return serviceRecordOf({ ...obj, metadata: { ...obj?.metadata, namespace } });
    } catch (error) {
      const code = status(error);
      if (code === 404 || code === 403) {
        this.negative.set(`${namespace}/${name}`, this.now() + this.negativeCacheMs);
        return undefined;
      }
      this.logger?.debug(`looking up service ${namespace}/${name} failed: ${errorText(error)}`);
      return undefined;
    }
  }

  /** Cluster-wide: one list and one watch per kind for every namespace. */
  private async followAll(): Promise<void> {
    const [services, slices] = await Promise.all([this.kube.request<any>("GET", ALL_SERVICES), this.kube.request<any>("GET", ALL_SLICES)]);
    this.clusterWide = true;
    for (const item of services?.items ?? []) this.applyService("ADDED", item);
    for (const item of slices?.items ?? []) this.applyEndpointSlice("ADDED", item);
    this.logger?.debug(`indexed ${services?.items?.length ?? 0} services and ${slices?.items?.length ?? 0} endpoint slices in all namespaces`);
    this.startWatch(ALL_SERVICES, services?.metadata?.resourceVersion, (type, obj) => this.applyService(type, obj));
    this.startWatch(ALL_SLICES, slices?.metadata?.resourceVersion, (type, obj) => this.applyEndpointSlice(type, obj));
  }

  private startWatch(path: string, version: string | undefined, apply: (type: string, obj: any) => void) {
    const signal = this.stop.signal;
    const query: Record<string, string> = version ? { resourceVersion: version } : {};
    this.kube.watch(path, query, (type, obj) => apply(type, obj), signal).catch((error) => {
      if (!signal.aborted) this.logger?.warn(`watch of ${path} ended: ${errorText(error)}; names there may go stale`);
    });
  }

  /**
   * List first (so `ready` means "complete"), then watch from the list's resourceVersion so no
   * event between the two is lost.
   */
  private async follow(namespace: string, state: NamespaceState): Promise<void> {
    const [services, slices] = await Promise.all([
      this.kube.request<any>("GET", SERVICES(namespace)),
      this.kube.request<any>("GET", SLICES(namespace)).catch((error) => {
        // Without EndpointSlices headless names have no addresses; everything else still works.
        this.logger?.warn(`cannot list endpoint slices in ${namespace} (${errorText(error)}); headless services will not resolve`);
        return undefined;
      }),
    ]);
    for (const item of services?.items ?? []) this.applyService("ADDED", { ...item, metadata: { ...item.metadata, namespace } });
    for (const item of slices?.items ?? []) this.applyEndpointSlice("ADDED", { ...item, metadata: { ...item.metadata, namespace } });
    this.logger?.debug(`indexed ${state.services.size} services and ${state.slices.size} endpoint slices in ${namespace}`);
    this.startWatch(SERVICES(namespace), services?.metadata?.resourceVersion, (type, obj) => this.applyService(type, obj));
    if (slices) this.startWatch(SLICES(namespace), slices.metadata?.resourceVersion, (type, obj) => this.applyEndpointSlice(type, obj));
  }
}

