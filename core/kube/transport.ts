// The one HTTPS path to the API server. client-node hands its TLS settings to undici, which under
// Bun is a stub that ignores them, so every call (typed APIs, raw requests, watches) goes through
// Bun's fetch with the TLS material client-node computes, and the WebSocket of port-forward takes
// the same material.

import type { KubeConfig } from "@kubernetes/client-node";
import { ExitCode, KtctlError, isKtctlError } from "../errors.ts";
import { apiErrorFrom, assertSafePath, connectionErrorFrom, describeRequest } from "./errors.ts";

export interface TlsMaterial {
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  rejectUnauthorized: boolean;
  serverName?: string;
}

export interface Credentials {
  headers: Record<string, string>;
  tls: TlsMaterial;
}

export interface Transport {
  server: string;
  /** Headers and TLS for one request; runs exec plugins (client-node caches their tokens until expiry). */
  credentials(): Promise<Credentials>;
  /**
   * A request to `pathOrUrl` (absolute, or a path on the server). Non-2xx answers become KubeApiErrors,
   * connection failures unreachable KtctlErrors; an abort keeps its AbortError.
   */
  fetch(pathOrUrl: string, init: { method?: string; headers?: Record<string, string>; body?: RequestInit["body"]; signal?: AbortSignal }): Promise<Response>;
}

const USER_AGENT = "ktctl";

export function createTransport(kc: KubeConfig, server: string): Transport {
  // One keep-alive pool per distinct TLS identity; exec plugins may hand out new client certs.
  let session: { fingerprint: string; value: Bun.FetchSession } | undefined;

  const sessionFor = (tls: TlsMaterial) => {
    const fingerprint = String(Bun.hash([tls.ca, tls.cert, tls.key, tls.serverName, tls.rejectUnauthorized].map(String).join("\0")));
    if (session?.fingerprint !== fingerprint) {
      session?.value.close();
      const proxy = kc.getCurrentCluster()?.proxyUrl;
      session = { fingerprint, value: new Bun.FetchSession({ tls, ...(proxy ? { proxy } : {}) }) };
    }
    return session.value;
  };

  const credentials = async (): Promise<Credentials> => {
    const opts: Record<string, any> = {};
    try {
      await kc.applyToHTTPSOptions(opts);
    } catch (e) {
      throw credentialError(kc, e);
    }
    const headers: Record<string, string> = { "User-Agent": USER_AGENT };
    for (const [k, v] of Object.entries((opts.headers ?? {}) as Record<string, unknown>)) if (v !== undefined) headers[k] = String(v);
    if (opts.auth) headers.Authorization = `Basic ${Buffer.from(String(opts.auth)).toString("base64")}`;
    const tls: TlsMaterial = { rejectUnauthorized: opts.rejectUnauthorized !== false };
    if (opts.ca) tls.ca = opts.ca;
    if (opts.cert) tls.cert = opts.cert;
    if (opts.key) tls.key = opts.key;
    if (opts.servername) tls.serverName = opts.servername;
    return { headers, tls };
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

function credentialError(kc: KubeConfig, e: unknown): KtctlError {
  if (isKtctlError(e)) return e;
  const user = kc.getCurrentUser();
  const err = e as NodeJS.ErrnoException;
  const detail = (err?.message || String(e)).split("\n").find((l) => l.trim())?.trim() ?? "";
  if (user?.exec || user?.authProvider) {
    const command = (user.exec as { command?: string } | undefined)?.command ?? user.authProvider?.name;
    const reason = err?.code === "ENOENT" ? "command not found" : detail || "failed";
    return new KtctlError(`credential plugin "${command}" of user "${user.name}" failed: ${reason}`, ExitCode.kubeconfig);
  }
  if (err?.code && err.path) return new KtctlError(`cannot read ${err.path} named in kubeconfig: ${err.code}`, ExitCode.kubeconfig);
  return new KtctlError(`kubeconfig credentials of user "${user?.name}" are unusable: ${detail}`, ExitCode.kubeconfig);
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
