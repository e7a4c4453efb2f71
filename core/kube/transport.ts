// The one HTTPS path to the API server. client-node hands its TLS settings to undici, which under
// Bun is a stub that ignores them, so every call (typed APIs, raw requests, watches) goes through
// Bun's fetch with the kubeconfig's TLS material (credentials.ts), and the WebSocket of port-forward
// takes the same material.

import { ExitCode, KtctlError, isKtctlError } from "../errors.ts";
import { CredentialFailure, type Credentials } from "./credentials.ts";
import type { ResolvedKubeconfig } from "./kubeconfig.ts";
import { apiErrorFrom, assertSafePath, connectionErrorFrom, describeRequest } from "./errors.ts";

export type { Credentials, TlsMaterial } from "./credentials.ts";

export interface Transport {
  server: string;
  /** Headers and TLS for one request; runs exec plugins (their credential cached until it expires). */
  credentials(): Promise<Credentials>;
  /**
   * A request to `pathOrUrl` (absolute, or a path on the server). Non-2xx answers become KubeApiErrors,
   * connection failures unreachable KtctlErrors; an abort keeps its AbortError.
   */
  fetch(pathOrUrl: string, init: { method?: string; headers?: Record<string, string>; body?: RequestInit["body"]; signal?: AbortSignal }): Promise<Response>;
}

/** What the transport needs of a resolved kubeconfig. */
export type KubeAccess = Pick<ResolvedKubeconfig, "server" | "credentials" | "proxyUrl" | "userName" | "credentialPlugin">;

const USER_AGENT = "ktctl";

export function createTransport(access: KubeAccess): Transport {
  const { server } = access;
  // One keep-alive pool per distinct TLS identity; exec plugins may hand out new client certs.
  let session: { tls: Credentials["tls"]; fingerprint: string; value: Bun.FetchSession } | undefined;

  const sessionFor = (tls: Credentials["tls"]) => {
    // The credentials hand back the same objects while nothing changed: no need to hash them then.
    if (session && sameTls(session.tls, tls)) return session.value;
    const fingerprint = String(Bun.hash([tls.ca, tls.cert, tls.key, tls.serverName, tls.rejectUnauthorized].map(String).join("\0")));
    if (session?.fingerprint !== fingerprint) {
      session?.value.close();
      session = { tls, fingerprint, value: new Bun.FetchSession({ tls, ...(access.proxyUrl ? { proxy: access.proxyUrl } : {}) }) };
    } else session.tls = tls;
    return session.value;
  };

  const credentials = async (): Promise<Credentials> => {
    let found: Credentials;
    try {
      found = await access.credentials();
    } catch (e) {
      throw credentialError(access, e);
    }
    return { headers: { "User-Agent": USER_AGENT, ...found.headers }, tls: found.tls };
  };

  const fetchApi: Transport["fetch"] = async (pathOrUrl, init) => {
    const url = pathOrUrl.startsWith("http") ? pathOrUrl : `${server}${pathOrUrl}`;
    const method = init.method ?? "GET";
    assertSafePath(method, pathOrUrl);
    const { headers, tls } = await credentials();
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers: { ...headers, ...init.headers },
        body: init.body ?? undefined,
        signal: init.signal,
        session: sessionFor(tls),
      });
    } catch (e) {
      if ((e as Error)?.name === "AbortError" || init.signal?.aborted) throw e;
      throw connectionErrorFrom(e, server);
    }
    if (response.status >= 400) throw apiErrorFrom(response.status, await response.text().catch(() => ""), method, url, server);
    return response;
  };

  return { server, credentials, fetch: fetchApi };
}

const sameTls = (a: Credentials["tls"], b: Credentials["tls"]) =>
  a.ca === b.ca && a.cert === b.cert && a.key === b.key && a.serverName === b.serverName && a.rejectUnauthorized === b.rejectUnauthorized;

function credentialError(access: KubeAccess, e: unknown): KtctlError {
  if (isKtctlError(e)) return e;
  const failure = e instanceof CredentialFailure ? e : undefined;
  const detail = ((e as Error)?.message || String(e)).split("\n").find((l) => l.trim())?.trim() ?? "";
  if (failure?.code && failure.path) return new KtctlError(`cannot read ${failure.path} named in kubeconfig: ${failure.code}`, ExitCode.kubeconfig);
  const plugin = failure?.plugin ?? access.credentialPlugin;
  if (plugin) {
    const reason = failure?.code === "ENOENT" ? "command not found" : detail || "failed";
    return new KtctlError(`credential plugin "${plugin}" of user "${access.userName}" failed: ${reason}`, ExitCode.kubeconfig);
  }
  return new KtctlError(`kubeconfig credentials of user "${access.userName}" are unusable: ${detail}`, ExitCode.kubeconfig);
}

const PATCH_TYPES: Record<string, string> = {
  merge: "application/merge-patch+json",
  strategic: "application/strategic-merge-patch+json",
  json: "application/json-patch+json",
  apply: "application/apply-patch+yaml",
};

/** Raw JSON request: the body is JSON-encoded; PATCH defaults to a merge patch. Returns the parsed answer. */
export async function requestJson<T>(transport: Transport, method: string, path: string, body?: unknown, contentType?: string): Promise<T> {
  const upper = method.toUpperCase();
  const type = contentType ? (PATCH_TYPES[contentType] ?? contentType) : upper === "PATCH" ? PATCH_TYPES.merge! : "application/json";
  const headers: Record<string, string> = { Accept: "application/json" };
  let payload: string | undefined;
  if (body !== undefined) {
    headers["Content-Type"] = type;
    payload = typeof body === "string" ? body : JSON.stringify(body);
  }
  const response = await transport.fetch(path, { method: upper, headers, body: payload });
  const text = await response.text();
  if (!text) return undefined as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    const { verb, resource } = describeRequest(upper, path);
    throw new KtctlError(`${verb} ${resource}: API server ${transport.server} answered with non-JSON`, ExitCode.failure);
  }
}
