// What the net unit tests share: a small in-memory object store that answers the list, get and watch
// calls the cluster index makes, with the API server's semantics for them (lists carry a
// resourceVersion, a watch from that version sees every later change, a missing object is a 404).
// The real API server is exercised by the e2e tests; this keeps the index's own logic testable.

import { createConsola } from "consola";
import { EffectiveConfig } from "../../core/config/load.ts";
import { KubeApiError } from "../../core/kube/errors.ts";
import type { PluginApi, StepSpec } from "../../core/plugin-api.ts";
import { createHostApi } from "../../core/plugins/api.ts";
import { createUndoRegistry } from "../../core/session/undo.ts";

/**
 * The plugin API exactly as a plugin gets it (no config files, a silent logger): connect's
 * networking is tested with the real errors, step builders, carry and proxy, loaded as they load.
 */
export const connectApi: PluginApi = createHostApi({
  config: new EffectiveConfig([], "/nonexistent/.ktctl/config.yaml", undefined),
  logger: createConsola({ level: -999 }),
}).api;

type Watcher = { collection: string; onEvent: (type: string, obj: any) => void; signal: AbortSignal };

/** A cluster-wide path (/api/v1/services) covers the namespaced collections of its kind. */
const CLUSTER_WIDE: Record<string, RegExp> = {
  "/api/v1/services": /^\/api\/v1\/namespaces\/[^/]+\/services$/,
  "/apis/discovery.k8s.io/v1/endpointslices": /^\/apis\/discovery\.k8s\.io\/v1\/namespaces\/[^/]+\/endpointslices$/,
};
const covers = (path: string, collection: string) => path === collection || CLUSTER_WIDE[path]?.test(collection) === true;

export class ObjectStore {
  private version = 100;
  private readonly objects = new Map<string, any>();
  private readonly watchers = new Set<Watcher>();
  readonly requests: string[] = [];
  /** Paths that answer 403, as RBAC would. */
  readonly forbidden = new Set<string>();

  /** Collection path of an object, e.g. /api/v1/namespaces/demo/services. */
  static collectionOf(obj: any): string {
    const ns = obj.metadata.namespace;
    switch (obj.kind) {
      case "Service":
        return `/api/v1/namespaces/${ns}/services`;
      case "EndpointSlice":
        return `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`;
      case "Pod":
        return `/api/v1/namespaces/${ns}/pods`;
      case "Node":
        return `/api/v1/nodes`;
      default:
        throw new Error(`store does not know kind ${obj.kind}`);
    }
  }

  put(obj: any): void {
    const collection = ObjectStore.collectionOf(obj);
    const key = `${collection}/${obj.metadata.name}`;
    const stored = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(++this.version) } };
    const type = this.objects.has(key) ? "MODIFIED" : "ADDED";
    this.objects.set(key, stored);
    this.emit(collection, type, stored);
  }

  remove(obj: any): void {
    const collection = ObjectStore.collectionOf(obj);
    const key = `${collection}/${obj.metadata.name}`;
    const stored = this.objects.get(key);
    if (!stored) return;
    this.objects.delete(key);
    this.emit(collection, "DELETED", { ...stored, metadata: { ...stored.metadata, resourceVersion: String(++this.version) } });
  }

  private emit(collection: string, type: string, obj: any) {
    for (const watcher of this.watchers) if (covers(watcher.collection, collection) && !watcher.signal.aborted) watcher.onEvent(type, obj);
  }

  async request<T>(method: string, path: string): Promise<T> {
    this.requests.push(`${method} ${path}`);
    const [pathname] = path.split("?");
    if (this.forbidden.has(pathname!)) throw new KubeApiError(`forbidden: ${pathname}`, 6, 403, "Forbidden");
    if (method !== "GET") throw new KubeApiError(`${method} not supported here`, 1, 405, "MethodNotAllowed");
    const items = [...this.objects.entries()].filter(([key]) => covers(pathname!, key.slice(0, key.lastIndexOf("/")))).map(([, obj]) => obj);
    const object = this.objects.get(pathname!);
    if (object) return structuredClone(object) as T;
    if (items.length || /\/(services|endpointslices|pods|nodes)$/.test(pathname!)) {
      return { kind: "List", metadata: { resourceVersion: String(this.version) }, items: structuredClone(items) } as T;
    }
    throw new KubeApiError(`not found: ${pathname}`, 5, 404, "NotFound");
  }

  watch(path: string, _query: Record<string, string>, onEvent: (type: string, obj: any) => void, signal: AbortSignal): Promise<void> {
    const watcher = { collection: path, onEvent, signal };
    this.watchers.add(watcher);
    return new Promise((resolve) =>
      signal.addEventListener("abort", () => {
        this.watchers.delete(watcher);
        resolve();
      }),
    );
  }

  /** The part of Kube the index uses. */
  get kube() {
    return { request: this.request.bind(this) as any, watch: this.watch.bind(this) };
  }
}

export function service(namespace: string, name: string, spec: Record<string, unknown>): any {
  return { apiVersion: "v1", kind: "Service", metadata: { namespace, name }, spec };
}

export function endpointSlice(
  namespace: string,
  name: string,
  serviceName: string,
  endpoints: { ip: string; ready?: boolean; hostname?: string; pod?: string; podUid?: string }[],
  ports: (number | { name: string; port: number })[] = [],
): any {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    addressType: "IPv4",
    metadata: { namespace, name, labels: { "kubernetes.io/service-name": serviceName } },
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      ...(e.ready === undefined ? {} : { conditions: { ready: e.ready } }),
      ...(e.hostname ? { hostname: e.hostname } : {}),
      ...(e.pod ? { targetRef: { kind: "Pod", namespace, name: e.pod, ...(e.podUid ? { uid: e.podUid } : {}) } } : {}),
    })),
    ports: ports.map((port) => (typeof port === "number" ? { port, protocol: "TCP" } : { ...port, protocol: "TCP" })),
  };
}

/** The demo namespaces as test/cluster deploys them, plus a headless service with hostnames. */
export function demoObjects(): any[] {
  return [
    service("demo", "echo", { type: "ClusterIP", clusterIP: "10.96.12.34", clusterIPs: ["10.96.12.34"], ports: [{ name: "http", port: 80 }, { port: 9090 }] }),
    service("demo", "echo-headless", { clusterIP: "None", ports: [{ port: 8080 }] }),
    service("demo", "db", { clusterIP: "None", ports: [{ port: 5432 }] }),
    service("demo", "ext", { type: "ExternalName", externalName: "echo.demo2.svc.cluster.local" }),
    endpointSlice(
      "demo",
      "echo-headless-abc",
      "echo-headless",
      [{ ip: "10.244.0.7" }, { ip: "10.244.0.8", ready: true }, { ip: "10.244.0.9", ready: false }],
      [8080],
    ),
    endpointSlice("demo", "db-xyz", "db", [
      { ip: "10.244.0.20", hostname: "db-0" },
      { ip: "10.244.0.21", hostname: "db-1" },
    ]),
    service("demo2", "echo", { type: "ClusterIP", clusterIP: "10.96.50.1", ports: [{ port: 80 }] }),
  ];
}

export function storeWith(objects: any[]): ObjectStore {
  const store = new ObjectStore();
  for (const obj of objects) store.put(obj);
  return store;
}

/**
 * The step/undo contract of a session without the cluster half: steps are journaled (as JSON, the
 * way the journal stores them) before they are applied, a failed apply is undone at once, and
 * close() runs the REAL undo runners (restore-file, run) last step first.
 */
export function localSession() {
  const registry = createUndoRegistry();
  const journal: StepSpec[] = [];
  return {
    journal,
    async step<T>(spec: StepSpec, apply: () => Promise<T>): Promise<T> {
      const recorded = JSON.parse(JSON.stringify(spec)) as StepSpec;
      journal.push(recorded);
      try {
        return await apply();
      } catch (error) {
        await registry.run({ sessionId: "unittest" }, recorded);
        journal.splice(journal.indexOf(recorded), 1); // not pop(): steps may run side by side
        throw error;
      }
    },
    async close(): Promise<void> {
      while (journal.length) await registry.run({ sessionId: "unittest" }, journal.pop()!);
    },
  };
}
