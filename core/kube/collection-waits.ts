// Waiting on collections by watching them (list, then watch): endpoints that point at a pod, a
// workload's replicas ready again, a load balancer's address. Each wait is bounded and says how it
// ended; none of them polls. Offered to plugins as `api.waits`.

import { ExitCode, KtctlError } from "../errors.ts";
import type { EndpointsWaitOptions, Kube, WaitOptions } from "../plugin-api.ts";

/**
 * Watches the collection at `path` (with `query` selectors) and calls `check` with every object seen
 * so far after each event; resolves with the first non-undefined answer. At the timeout (or when the
 * watch ends by itself) it answers undefined, or, given `what`, rejects with a KtctlError naming it.
 */
export function watchUntil<T>(kube: Kube, path: string, query: Record<string, string>, check: (objects: Map<string, any>) => T | undefined, options: WaitOptions & { what: string }): Promise<T>;
export function watchUntil<T>(kube: Kube, path: string, query: Record<string, string>, check: (objects: Map<string, any>) => T | undefined, options: WaitOptions): Promise<T | undefined>;
export function watchUntil<T>(
  kube: Kube,
  path: string,
  query: Record<string, string>,
  check: (objects: Map<string, any>) => T | undefined,
  options: WaitOptions,
): Promise<T | undefined> {
  const { timeoutMs, what } = options;
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
    const giveUp = (failure: () => KtctlError) => (what ? finish(undefined, failure()) : finish(undefined));
    const timer = setTimeout(() => giveUp(() => new KtctlError(`timed out after ${Math.round(timeoutMs / 1000)}s waiting for ${what}`, ExitCode.timeout)), timeoutMs);
    const consider = () => {
      try {
        const answer = check(objects);
        if (answer !== undefined) finish(answer);
      } catch (error) {
        finish(undefined, error);
      }
    };
    const remember = (type: string, obj: any) => {
      const key = obj?.metadata?.name ?? "";
      if (type === "DELETED") objects.delete(key);
      else if (type !== "BOOKMARK" && type !== "ERROR") objects.set(key, obj);
    };
    // The whole list is judged at once, then the watch goes on from its version: judged one item
    // at a time, a collection would look as if its later items were absent ("gone" too early).
    kube
      .request<any>("GET", `${path}?${new URLSearchParams(query)}`)
      .then((list) => {
        const kind = typeof list?.kind === "string" ? list.kind.replace(/List$/, "") : undefined;
        for (const item of list?.items ?? []) remember("ADDED", { apiVersion: list.apiVersion, kind, ...item });
        consider();
        if (settled) return;
        const resourceVersion: string | undefined = list?.metadata?.resourceVersion || undefined;
        return kube
          .watch(path, { ...query, ...(resourceVersion ? { resourceVersion } : {}) }, (type, obj) => {
            remember(type, obj);
            consider();
          }, stop.signal)
          .then(() => giveUp(() => new KtctlError(`stopped watching ${what}`, ExitCode.failure)));
      })
      .catch((error) => finish(undefined, error));
  });
}

/** Ready endpoints of a service, from its EndpointSlices: their addresses, or their pods' names. */
export function readyEndpoints(slices: Iterable<any>, by: "address" | "pod" = "address"): Set<string> {
  const ready = new Set<string>();
  for (const slice of slices) {
    for (const endpoint of slice?.endpoints ?? []) {
      if (endpoint?.conditions?.ready === false) continue;
      if (by === "pod") {
        if (endpoint?.targetRef?.name) ready.add(endpoint.targetRef.name);
      } else {
        for (const address of endpoint?.addresses ?? []) ready.add(address);
      }
    }
  }
  return ready;
}

const namespacePath = (kube: Kube, group: string) => `${group}/namespaces/${encodeURIComponent(kube.namespace)}`;

/** Waits until the ready endpoints of a service in kube.namespace satisfy `accept`; false at the timeout. */
export async function waitForEndpoints(kube: Kube, service: string, accept: (ready: Set<string>) => boolean, options: EndpointsWaitOptions): Promise<boolean> {
  const answer = await watchUntil(
    kube,
    `${namespacePath(kube, "/apis/discovery.k8s.io/v1")}/endpointslices`,
    { labelSelector: `kubernetes.io/service-name=${service}` },
    (slices) => (accept(readyEndpoints(slices.values(), options.by)) ? true : undefined),
    options,
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

/** Waits until a Deployment in kube.namespace has `replicas` ready pods, reporting each change; false at the timeout. */
export async function waitForReplicas(
  kube: Kube,
  name: string,
  replicas: number,
  options: WaitOptions & { onProgress?(summary: string): void },
): Promise<boolean> {
  let last = "";
  const answer = await watchUntil(
    kube,
    `${namespacePath(kube, "/apis/apps/v1")}/deployments`,
    { fieldSelector: `metadata.name=${name}` },
    (objects) => {
      const workload = objects.get(name);
      if (!workload) return undefined;
      const { done, summary } = rolloutProgress(workload, replicas);
      if (summary !== last) {
        last = summary;
        options.onProgress?.(summary);
      }
      return done ? true : undefined;
    },
    options,
  );
  return answer === true;
}

/** The first load-balancer address of a service in kube.namespace, or undefined if none appears in time. */
export async function waitForLoadBalancer(kube: Kube, name: string, options: WaitOptions): Promise<string | undefined> {
  return watchUntil(
    kube,
    `${namespacePath(kube, "/api/v1")}/services`,
    { fieldSelector: `metadata.name=${name}` },
    (objects) => {
      const ingress = objects.get(name)?.status?.loadBalancer?.ingress?.[0];
      return ingress ? ingress.ip || ingress.hostname : undefined;
    },
    options,
  );
}
