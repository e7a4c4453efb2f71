// What `ktctl exchange TARGET` takes over: the service(s), the workload behind them and one of its
// pods (for named ports and the environment), read from the cluster. Only reads; nothing changes.

import type { Kube, PluginApi, TargetKind, TargetRef } from "../../core/plugin-api.ts";

export type { TargetKind, TargetRef };

/** True when every key of a (non-empty) selector matches the labels. */
export function selects(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  const entries = Object.entries(selector ?? {});
  return entries.length > 0 && entries.every(([k, v]) => labels?.[k] === v);
}

/** Labels the shadow carries in scale mode: the workload's pod labels, minus the controller's own. */
export function podTemplateLabels(workload: any): Record<string, string> {
  const labels: Record<string, string> = { ...(workload?.spec?.template?.metadata?.labels ?? {}) };
  // Set by the Deployment controller on its ReplicaSets' pods; a pod carrying it could be adopted.
  delete labels["pod-template-hash"];
  return labels;
}

const isRunning = (pod: any) => pod?.status?.phase === "Running" && !pod.metadata?.deletionTimestamp;

export interface ResolvedTarget {
  ref: TargetRef;
  namespace: string;
  /** "svc/echo", for messages and `status`. */
  label: string;
  /** The services whose traffic the session takes over. */
  services: any[];
  /** The Deployment behind them, when there is exactly one. */
  workload?: any;
  /** A running pod of the target (not a ktctl pod), for named ports and the environment. */
  pod?: any;
  /** Other deployments whose pods a target service selects (ambiguous for scale mode). */
  otherWorkloads: string[];
}

const ns = (kube: Kube) => `/api/v1/namespaces/${encodeURIComponent(kube.namespace)}`;
const appsNs = (kube: Kube) => `/apis/apps/v1/namespaces/${encodeURIComponent(kube.namespace)}`;

/**
 * Items of a list, each with its apiVersion and kind (a list leaves them out of its items, and the
 * undo records made from these objects must name them).
 */
export async function listObjects(kube: Kube, path: string, query?: Record<string, string>): Promise<any[]> {
  const suffix = query ? `?${new URLSearchParams(query)}` : "";
  const list = await kube.request<{ apiVersion?: string; kind?: string; items?: any[] }>("GET", `${path}${suffix}`);
  const kind = (list.kind ?? "").replace(/List$/, "");
  return (list.items ?? []).map((item) => ({ apiVersion: list.apiVersion, kind, ...item }));
}

const list = listObjects;

const labelQuery = (selector: Record<string, string>) => Object.entries(selector).map(([k, v]) => `${k}=${v}`).join(",");

/** A running, non-ktctl pod matching the selector, if any. */
async function runningPod(kube: Kube, api: Pick<PluginApi, "scheme">, selector: Record<string, string>): Promise<any | undefined> {
  if (!Object.keys(selector).length) return undefined;
  const pods = await list(kube, `${ns(kube)}/pods`, { labelSelector: `${labelQuery(selector)},!${api.scheme.labels.managedBy}` });
  return pods.find(isRunning) ?? pods[0];
}

/** The Deployment that controls a pod (pod -> ReplicaSet -> Deployment), if any. */
async function deploymentOfPod(kube: Kube, pod: any): Promise<any | undefined> {
  const rsRef = (pod.metadata?.ownerReferences ?? []).find((o: any) => o.controller && o.kind === "ReplicaSet");
  if (!rsRef) return undefined;
  const rs = await kube.request<any>("GET", `${appsNs(kube)}/replicasets/${encodeURIComponent(rsRef.name)}`);
  const depRef = (rs.metadata?.ownerReferences ?? []).find((o: any) => o.controller && o.kind === "Deployment");
  if (!depRef) return undefined;
  return kube.request<any>("GET", `${appsNs(kube)}/deployments/${encodeURIComponent(depRef.name)}`);
}

/** Reads the target in kube.namespace and everything around it. Fails with notFound/usage errors that say what is missing. */
export async function resolveTarget(kube: Kube, ref: TargetRef, api: Pick<PluginApi, "errors" | "scheme">): Promise<ResolvedTarget> {
  const { KtctlError, ExitCode } = api.errors;
  const namespace = kube.namespace;
  const label = `${ref.kind === "service" ? "svc" : ref.kind}/${ref.name}`;
  const allServices = async () => (await list(kube, `${ns(kube)}/services`)).filter((s) => s.spec?.type !== "ExternalName");
  const deployments = () => list(kube, `${appsNs(kube)}/deployments`);

  if (ref.kind === "service") {
    const service = await kube.request<any>("GET", `${ns(kube)}/services/${encodeURIComponent(ref.name)}`);
    const selector: Record<string, string> = service.spec?.selector ?? {};
    const matching = Object.keys(selector).length ? (await deployments()).filter((d) => selects(selector, podTemplateLabels(d))) : [];
    return {
      ref,
      namespace,
      label,
      services: [service],
      workload: matching.length === 1 ? matching[0] : undefined,
      pod: await runningPod(kube, api, selector),
      otherWorkloads: matching.length > 1 ? matching.map((d) => d.metadata.name) : [],
    };
  }

  if (ref.kind === "deployment") {
    const workload = await kube.request<any>("GET", `${appsNs(kube)}/deployments/${encodeURIComponent(ref.name)}`);
    const labels = podTemplateLabels(workload);
    const services = (await allServices()).filter((s) => selects(s.spec?.selector, labels));
    if (!services.length) {
      throw new KtctlError(`no service in ${namespace} selects the pods of deployment ${ref.name}`, ExitCode.notFound, "exchange takes over a service's traffic; create one, or use preview");
    }
    return { ref, namespace, label, services, workload, pod: await runningPod(kube, api, workload.spec?.selector?.matchLabels ?? labels), otherWorkloads: [] };
  }

  const pod = await kube.request<any>("GET", `${ns(kube)}/pods/${encodeURIComponent(ref.name)}`);
  const services = (await allServices()).filter((s) => selects(s.spec?.selector, pod.metadata?.labels));
  if (!services.length) {
    throw new KtctlError(`no service in ${namespace} selects pod ${ref.name}`, ExitCode.notFound, "exchange takes over a service's traffic; create one, or use preview");
  }
  return { ref, namespace, label, services, workload: await deploymentOfPod(kube, pod), pod, otherWorkloads: [] };
}

/** Container ports the target's pods declare (a live pod first, else the workload's template). */
export function declaredContainerPorts(target: Pick<ResolvedTarget, "pod" | "workload">): { name?: string; containerPort: number; protocol?: string }[] {
  const spec = target.pod?.spec ?? target.workload?.spec?.template?.spec;
  return (spec?.containers ?? []).flatMap((c: any) => c.ports ?? []);
}
