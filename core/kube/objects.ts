// Object references, their REST paths and the small request idioms every caller needs (a GET that
// answers "absent" instead of throwing on 404, a merge patch, the HTTP status of a failure). One
// copy here, offered to plugins through the Kube object of the plugin API.

import { ExitCode, KtctlError } from "../errors.ts";
import type { Kube, ObjectRef } from "../plugin-api.ts";

export const MERGE_PATCH = "application/merge-patch+json";

/** Plural resource names of the kinds ktctl touches, so the common case needs no discovery call. */
const KNOWN_RESOURCES: Record<string, string> = {
  "v1/Pod": "pods",
  "v1/Service": "services",
  "v1/ConfigMap": "configmaps",
  "v1/Secret": "secrets",
  "v1/ServiceAccount": "serviceaccounts",
  "v1/Endpoints": "endpoints",
  "apps/v1/Deployment": "deployments",
  "apps/v1/StatefulSet": "statefulsets",
  "apps/v1/ReplicaSet": "replicasets",
  "apps/v1/DaemonSet": "daemonsets",
  "coordination.k8s.io/v1/Lease": "leases",
  "rbac.authorization.k8s.io/v1/Role": "roles",
  "rbac.authorization.k8s.io/v1/RoleBinding": "rolebindings",
  "networking.k8s.io/v1/NetworkPolicy": "networkpolicies",
  "networking.k8s.io/v1/Ingress": "ingresses",
  "batch/v1/Job": "jobs",
};

const apiPrefix = (apiVersion: string) => (apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`);

/** The REST path of one object; kinds outside the table are looked up through API discovery. */
export async function objectPath(kube: Pick<Kube, "request"> | undefined, ref: ObjectRef): Promise<string> {
  let plural: string | undefined = KNOWN_RESOURCES[`${ref.apiVersion}/${ref.kind}`];
  if (!plural) {
    if (!kube) throw new KtctlError(`cannot resolve the resource of ${ref.apiVersion} ${ref.kind} without cluster access`);
    const list = await kube.request<{ resources?: { name: string; kind: string }[] }>("GET", apiPrefix(ref.apiVersion));
    plural = list.resources?.find((r) => r.kind === ref.kind && !r.name.includes("/"))?.name;
    if (!plural) throw new KtctlError(`the API server does not serve ${ref.apiVersion} ${ref.kind}`, ExitCode.notFound);
  }
  const scope = ref.namespace ? `/namespaces/${encodeURIComponent(ref.namespace)}` : "";
  return `${apiPrefix(ref.apiVersion)}${scope}/${plural}/${encodeURIComponent(ref.name)}`;
}

/** Reference of a Kubernetes object as the API returns it. */
export function refOf(object: { apiVersion: string; kind: string; metadata: { name?: string; namespace?: string } }): ObjectRef {
  return { apiVersion: object.apiVersion, kind: object.kind, namespace: object.metadata.namespace, name: object.metadata.name! };
}

/** The HTTP status an API error carries (core/kube's KubeApiError has `status`), if any. */
export function httpStatus(error: unknown): number | undefined {
  const e = error as { status?: unknown; statusCode?: unknown; code?: unknown; response?: { status?: unknown } };
  for (const value of [e?.status, e?.statusCode, e?.response?.status, e?.code]) {
    if (typeof value === "number" && value >= 100 && value < 600) return value;
  }
  return undefined;
}

export const errorText = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/** GET that answers undefined for an object that does not exist. */
export async function getOrUndefined<T = any>(kube: Pick<Kube, "request">, path: string): Promise<T | undefined> {
  try {
    return await kube.request<T>("GET", path);
  } catch (error) {
    if (httpStatus(error) === 404) return undefined;
    throw error;
  }
}

export const mergePatch = <T = any>(kube: Pick<Kube, "request">, path: string, patch: unknown): Promise<T> =>
  kube.request<T>("PATCH", path, patch, MERGE_PATCH);
