// Talking to the router's admin endpoint from outside the cluster: one port-forward stream per
// request (the endpoint listens on the pod's loopback, which is where port-forward lands), one
// HTTP/1.1 request on it. Used by the developer's ktctl, its watchdog and `ktctl clean`.

import type { Duplex } from "node:stream";
import type { Kube, Route } from "../../core/plugin-api.ts";
import { labelSelectorText } from "./names.ts";

const ADMIN_TIMEOUT_MS = 15_000;

export interface AdminReply {
  status: number;
  body: any;
}

/** Reads one HTTP/1.1 answer (Content-Length framed, as the router's admin sends it). */
function readAnswer(stream: Duplex, timeoutMs: number): Promise<AdminReply> {
  return new Promise((resolve, reject) => {
    let buffer = Buffer.alloc(0);
    const finish = (error?: Error, reply?: AdminReply) => {
      clearTimeout(timer);
      stream.off("data", onData);
      stream.destroy();
      if (error) reject(error);
      else resolve(reply!);
    };
    const timer = setTimeout(() => finish(new Error(`the router's admin endpoint did not answer within ${timeoutMs / 1000}s`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      const end = buffer.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = buffer.toString("latin1", 0, end);
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
      const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? -1);
      if (length < 0 || buffer.length < end + 4 + length) return;
      const text = buffer.toString("utf8", end + 4, end + 4 + length);
      let body: any = text;
      try {
        body = JSON.parse(text);
      } catch {
        // plain text answers (healthz) stay text
      }
      finish(undefined, { status, body });
    };
    stream.on("data", onData);
    stream.once("error", (error: Error) => finish(error));
    stream.once("close", () => finish(new Error("the port-forward to the router closed before it answered")));
  });
}

export async function adminRequest(kube: Kube, namespace: string, pod: string, port: number, method: string, path: string, body?: unknown): Promise<AdminReply> {
  const stream = await kube.portForward(namespace, pod, port);
  const payload = body === undefined ? "" : JSON.stringify(body);
  stream.write(
    `${method} ${path} HTTP/1.1\r\nHost: ktctl-router\r\nConnection: close\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(payload)}\r\n\r\n${payload}`,
  );
  return readAnswer(stream, ADMIN_TIMEOUT_MS);
}

const isReady = (pod: any) =>
  !pod?.metadata?.deletionTimestamp && (pod?.status?.conditions ?? []).some((c: any) => c.type === "Ready" && c.status === "True");

/** The router pods of a service (selected by `routerPods`, its routerSelector) that can take a route now. */
export async function readyRouterPods(kube: Kube, namespace: string, routerPods: Record<string, string>): Promise<any[]> {
  const query = new URLSearchParams({ labelSelector: labelSelectorText(routerPods) });
  const list = await kube.request<any>("GET", `/api/v1/namespaces/${namespace}/pods?${query}`);
  return (list.items ?? []).filter(isReady);
}

export const isRouterPodReady = isReady;

export class RouteConflictError extends Error {
  constructor(
    message: string,
    readonly holder?: string,
  ) {
    super(message);
    this.name = "RouteConflictError";
  }
}

/** Puts the route on one router pod. */
export async function putRoute(kube: Kube, namespace: string, pod: string, adminPort: number, route: Route): Promise<void> {
  const reply = await adminRequest(kube, namespace, pod, adminPort, "PUT", `/routes/${encodeURIComponent(route.id)}`, route);
  if (reply.status === 409) throw new RouteConflictError(reply.body?.error ?? "the mark is taken", reply.body?.conflict?.owner);
  if (reply.status !== 200) throw new Error(`router ${pod} refused the route (${reply.status}): ${reply.body?.error ?? reply.body}`);
}

/** Takes a route off every router pod of the service; a router that is gone has no route to take off. */
export async function deleteRouteEverywhere(kube: Kube, namespace: string, routerPods: Record<string, string>, adminPort: number, id: string): Promise<string[]> {
  const failures: string[] = [];
  for (const pod of await readyRouterPods(kube, namespace, routerPods)) {
    try {
      const reply = await adminRequest(kube, namespace, pod.metadata.name, adminPort, "DELETE", `/routes/${encodeURIComponent(id)}`);
      if (reply.status !== 200) failures.push(`${pod.metadata.name}: ${reply.status}`);
    } catch (error) {
      failures.push(`${pod.metadata.name}: ${(error as Error).message}`);
    }
  }
  return failures;
}

/** The routes one router pod holds. */
export async function listRoutes(kube: Kube, namespace: string, pod: string, adminPort: number): Promise<Route[]> {
  const reply = await adminRequest(kube, namespace, pod, adminPort, "GET", "/routes");
  if (reply.status !== 200) throw new Error(`router ${pod} did not list its routes (${reply.status})`);
  return reply.body.routes as Route[];
}
