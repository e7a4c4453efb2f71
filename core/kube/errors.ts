// Turns what the API server, the network and the kubeconfig can refuse into one-line KtctlErrors.
// Every path into the cluster (typed APIs, raw requests, watches, port-forwards) goes through here,
// so a user sees the same sentence for the same refusal whichever code asked.

import { ExitCode, KtctlError, isKtctlError } from "../errors.ts";

/** An API server refusal: a KtctlError that still tells callers the HTTP status and reason. */
export class KubeApiError extends KtctlError {
  constructor(
    message: string,
    exitCode: number,
    /** HTTP status the API server answered (403, 404, 409, ...). */
    readonly status: number,
    /** The Status object's reason, e.g. "AlreadyExists", "Conflict", "NotFound". */
    readonly reason: string = "",
    hint?: string,
  ) {
    super(message, exitCode, hint);
  }
}

/** What a request was about, read from its method and path. */
export interface RequestTarget {
  verb: string;
  resource: string;
  namespace?: string;
  name?: string;
}

const VERB_BY_METHOD: Record<string, string> = { POST: "create", PUT: "update", PATCH: "patch" };

/** Derives the RBAC verb and resource of an API path, e.g. DELETE /api/v1/namespaces/a/pods/b -> delete pods in a. */
export function describeRequest(method: string, pathOrUrl: string): RequestTarget {
  const url = new URL(pathOrUrl, "http://api.invalid");
  const all = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  // Servers behind a proxy carry a path prefix (/k8s/clusters/c-1/api/v1/...): start at api or apis.
  const root = all.findIndex((p) => p === "api" || p === "apis");
  const parts = root >= 0 ? all.slice(root) : all;
  // Drop the group/version prefix: /api/v1/... or /apis/<group>/<version>/...
  let rest = parts[0] === "api" ? parts.slice(2) : parts[0] === "apis" ? parts.slice(3) : parts;
  let namespace: string | undefined;
  if (rest[0] === "namespaces" && rest.length >= 3) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const [collection = "", name, ...sub] = rest;
  const resource = sub.length ? `${collection}/${sub.join("/")}` : collection;
  const upper = method.toUpperCase();
  let verb: string;
  if (upper === "GET") verb = name ? "get" : url.searchParams.get("watch") ? "watch" : "list";
  else if (upper === "DELETE") verb = name ? "delete" : "deletecollection";
  else verb = VERB_BY_METHOD[upper] ?? upper.toLowerCase();
  return { verb, resource, namespace, name };
}

/**
 * Refuses a request path whose object names could escape their place: a name "." or ".." (URL
 * resolution turns services/.. into the namespace itself) or one holding "/" (an encoded slash
 * reaches a subresource: services/a%2Fstatus is the status of a). Kubernetes names never hold
 * either, so such a name is bad input, said in one line before anything is sent.
 */
export function assertSafePath(method: string, pathOrUrl: string): void {
  const raw = new URL(pathOrUrl, "http://api.invalid").pathname;
  // new URL() already resolved dot segments; compare with the text as given.
  const given = pathOrUrl.replace(/^https?:\/\/[^/]+/, "").split("?")[0]!;
  const segments = given.split("/").filter(Boolean);
  const bad = segments.map(safeDecode).find((s) => s === "." || s === ".." || s.includes("/"));
  if (bad === undefined && raw === given) return;
  const name = bad ?? given;
  throw new KtctlError(`invalid name ${JSON.stringify(name)} (${method.toUpperCase()} refused): Kubernetes names hold no "/" and are not "." or ".."`, ExitCode.usage);
}

const safeDecode = (segment: string) => {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
};

/** "pods" -> "pod", "ingresses" -> "ingress", "endpoints" stays. Good enough for messages. */
export function singular(resource: string): string {
  const base = resource.split("/")[0]!;
  if (base === "endpoints") return base;
  if (base.endsWith("sses")) return base.slice(0, -2);
  if (base.endsWith("ies")) return `${base.slice(0, -3)}y`;
  if (base.endsWith("s")) return base.slice(0, -1);
  return base;
}

const firstLine = (text: string) => text.split("\n").find((l) => l.trim())?.trim() ?? "";

/** Maps an API server answer (status + body text) to a KtctlError. */
export function apiErrorFrom(status: number, bodyText: string, method: string, url: string, server: string): KubeApiError {
  let body: any;
  try {
    body = JSON.parse(bodyText);
  } catch {
    body = undefined;
  }
  const serverMessage = firstLine(typeof body?.message === "string" ? body.message : bodyText) || `HTTP ${status}`;
  const reason: string = typeof body?.reason === "string" ? body.reason : "";
  const target = describeRequest(method, url);

  if (status === 403) {
    // The server names verb, resource and namespace exactly; the path is the fallback.
    const m = /cannot (\S+) resource "([^"]+)"(?: in API group "([^"]*)")?(?: in the namespace "([^"]+)")?/.exec(serverMessage);
    const verb = m?.[1] ?? target.verb;
    const resource = m ? (m[3] ? `${m[2]}.${m[3]}` : m[2]!) : target.resource;
    const namespace = m ? m[4] : target.namespace;
    const where = namespace ? `in namespace ${namespace}` : "at cluster scope";
    return new KubeApiError(`forbidden: cannot ${verb} ${resource} ${where} (RBAC)`, ExitCode.forbidden, status, reason);
  }
  if (status === 404) {
    const kind = singular(body?.details?.kind ?? target.resource);
    const name = body?.details?.name ?? target.name;
    // A missing namespace comes back as details {kind: namespaces, name}; say so rather than blame the object.
    const where = kind !== "namespace" && target.namespace ? ` in namespace ${target.namespace}` : "";
    const what = name ? `${kind} "${name}"` : kind || url;
    return new KubeApiError(`not found: ${what}${where}`, ExitCode.notFound, status, reason || "NotFound");
  }
  if (status === 401) {
    return new KubeApiError(
      `unauthorized: API server ${server} rejected the credentials of this kubeconfig`,
      ExitCode.kubeconfig,
      status,
      reason,
      "log in again or refresh the token",
    );
  }
  if (status === 409) return new KubeApiError(`conflict: ${serverMessage}`, ExitCode.conflict, status, reason);
  if (status === 504) return new KubeApiError(`API server ${server} timed out: ${serverMessage}`, ExitCode.timeout, status, reason);
  if (status === 429 || status >= 500) {
    return new KubeApiError(`API server ${server} answered ${status}: ${serverMessage}`, ExitCode.unreachable, status, reason);
  }
  return new KubeApiError(`${target.verb} ${target.resource || url} failed: ${serverMessage}`, ExitCode.failure, status, reason);
}

const TLS_CODES = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ALTNAME|TLS|SSL|HANDSHAKE/i;

/** Maps a failure to reach the server (refused, DNS, TLS, reset) to an unreachable KtctlError. */
export function connectionErrorFrom(error: unknown, server: string): KtctlError {
  if (isKtctlError(error)) return error;
  const e = error as { code?: string; message?: string; name?: string };
  const code = e?.code ?? "";
  const detail = code || firstLine(e?.message ?? String(error));
  if (TLS_CODES.test(code) || TLS_CODES.test(e?.message ?? "")) {
    return new KtctlError(`TLS verification of API server ${server} failed: ${detail}`, ExitCode.unreachable);
  }
  return new KtctlError(`cannot reach API server ${server}: ${detail}`, ExitCode.unreachable);
}

/** Any error escaping kube access, as a KtctlError: API refusals and KtctlErrors pass through. */
export function toKtctlError(error: unknown, server: string): KtctlError {
  if (isKtctlError(error)) return error;
  return connectionErrorFrom(error, server);
}

export const kubeconfigError = (message: string, hint?: string) => new KtctlError(message, ExitCode.kubeconfig, hint);
