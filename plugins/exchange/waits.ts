// Waiting on cluster state by watching it (list, then watch): endpoints that point at the shadow,
// a workload's replicas ready again, a load balancer's address. Each wait is bounded and says how
// it ended; none of them polls.

import type { Kube } from "../../core/plugin-api.ts";

/**
 * Watches the collection at `path` (with `query` selectors) and calls `check` with every object seen
 * so far after each event; resolves with the first non-undefined answer, or undefined at the timeout.
 */
export function watchUntil<T>(
  kube: Kube,
  path: string,
  query: Record<string, string>,
  check: (objects: Map<string, any>) => T | undefined,
  timeoutMs: number,
): Promise<T | undefined> {
  const objects = new Map<string, any>();
  const stop = new AbortController();
  return new Promise<T | undefined>((resolve, reject) => {
    let settled = false;
    const finish = (value: T | undefined, error?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      stop.abort();
      if (error) reject(error);
      else resolve(value);
    };
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    const consider = () => {
      try {
        const answer = check(objects);
        if (answer !== undefined) finish(answer);
      } catch (error) {
        finish(undefined, error);
      }
    };
    kube
      .watch(
        path,
        query,
        (type, obj) => {
          const key = obj?.metadata?.name ?? "";
          if (type === "DELETED") objects.delete(key);
          else if (type !== "BOOKMARK" && type !== "ERROR") objects.set(key, obj);
          consider();
        },
        stop.signal,
      )
      .then(() => finish(undefined))
      .catch((error) => finish(undefined, error));
    // An empty collection yields no event, yet may already be the answer.
    kube
      .request<any>("GET", `${path}?${new URLSearchParams({ ...query, limit: "1" })}`)
      .then((list) => {
        if (!(list?.items?.length ?? 0)) consider();
      })
      .catch(() => undefined); // the watch reports refusals
  });
}

/** Ready endpoint addresses of a service, from its EndpointSlices. */
export function readyAddresses(slices: Iterable<any>): Set<string> {
  const addresses = new Set<string>();
  for (const slice of slices) {
    for (const endpoint of slice?.endpoints ?? []) {
      if (endpoint?.conditions?.ready === false) continue;
      for (const address of endpoint?.addresses ?? []) addresses.add(address);
    }
  }
  return addresses;
}

/** Waits until the service's ready endpoint addresses satisfy `accept`; false at the timeout. */
export async function waitForEndpoints(kube: Kube, namespace: string, service: string, accept: (ready: Set<string>) => boolean, timeoutMs: number): Promise<boolean> {
  const answer = await watchUntil(
    kube,
    `/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/endpointslices`,
    { labelSelector: `kubernetes.io/service-name=${service}` },
    (slices) => (accept(readyAddresses(slices.values())) ? true : undefined),
    timeoutMs,
  );
  return answer === true;
}

/** "exactly these addresses" for waitForEndpoints. */
export const exactly = (expected: () => string[]) => (ready: Set<string>) => {
  const want = expected();
  return ready.size === want.length && want.every((a) => ready.has(a));
};

/** "not this address (any more)" for waitForEndpoints. */
export const without = (address: () => string) => (ready: Set<string>) => !ready.has(address());

/** "1/2 ready" */
export function rolloutProgress(workload: any, replicas: number): { done: boolean; summary: string } {
  const status = workload?.status ?? {};
  const ready = status.readyReplicas ?? 0;
  const updated = status.updatedReplicas ?? 0;
  const current = (status.observedGeneration ?? 0) >= (workload?.metadata?.generation ?? 0);
  const done = current && (workload?.spec?.replicas ?? 0) === replicas && ready >= replicas && updated >= replicas;
  return { done, summary: `${ready}/${replicas} ready` };
}

/** Waits until a Deployment has `replicas` ready pods, reporting each change; false at the timeout. */
export async function waitForReplicas(
  kube: Kube,
  namespace: string,
  name: string,
  replicas: number,
  timeoutMs: number,
  onProgress: (summary: string) => void,
): Promise<boolean> {
  let last = "";
  const answer = await watchUntil(
    kube,
    `/apis/apps/v1/namespaces/${encodeURIComponent(namespace)}/deployments`,
    { fieldSelector: `metadata.name=${name}` },
    (objects) => {
      const workload = objects.get(name);
      if (!workload) return undefined;
      const { done, summary } = rolloutProgress(workload, replicas);
      if (summary !== last) onProgress((last = summary));
      return done ? true : undefined;
    },
    timeoutMs,
  );
  return answer === true;
}

/** The first load-balancer address of a service, or undefined if none appears in time. */
export async function waitForLoadBalancer(kube: Kube, namespace: string, name: string, timeoutMs: number): Promise<string | undefined> {
  return watchUntil(
    kube,
    `/api/v1/namespaces/${encodeURIComponent(namespace)}/services`,
    { fieldSelector: `metadata.name=${name}` },
    (objects) => {
      const ingress = objects.get(name)?.status?.loadBalancer?.ingress?.[0];
      return ingress ? ingress.ip || ingress.hostname : undefined;
    },
    timeoutMs,
  );
}
