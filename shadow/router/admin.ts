// The router's admin endpoint: routes are added and removed here at run time, by each developer's
// ktctl (and by the watchdog or `ktctl clean` for a developer who is gone), through a port-forward.
// It listens on the pod's loopback only: see core/protocol/router.ts for why that is the access control.
//
//   GET    /routes        -> { routes, listeners }
//   PUT    /routes/<id>   <- Route        -> 200 { route } | 400 | 409 { error, conflict }
//   DELETE /routes/<id>   -> 200 { removed }
//   GET    /stats         -> { rssBytes, heapUsedBytes, uptimeSeconds, counters }
//   GET    /healthz       -> ok

import http from "node:http";
import { ADMIN_HOST, ContractError, validateRoute, type RoutesReply, type StatsReply } from "../../core/protocol/router.ts";
import type { Router } from "./router.ts";
import { memoryFields } from "./stats.ts";
import type { ShadowLog } from "../log.ts";

const MAX_BODY = 64 * 1024;

export interface AdminServer {
  port: number;
  close(): Promise<void>;
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = typeof body === "string" ? `${body}\n` : `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    "content-type": typeof body === "string" ? "text/plain; charset=utf-8" : "application/json",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

async function readBody(req: http.IncomingMessage): Promise<string> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new ContractError(`body larger than ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

export async function startAdmin(router: Router, log: ShadowLog, port: number, host = ADMIN_HOST): Promise<AdminServer> {
  const started = performance.now();
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://router");
    const routeId = /^\/routes\/([^/]+)$/.exec(url.pathname)?.[1];
    try {
      if (req.method === "GET" && url.pathname === "/healthz") return send(res, 200, "ok");
      if (req.method === "GET" && url.pathname === "/routes") {
        const reply: RoutesReply = { routes: router.routes.list(), listeners: router.config.listeners };
        return send(res, 200, reply);
      }
      if (req.method === "GET" && url.pathname === "/stats") {
        const reply: StatsReply = {
          ...memoryFields(),
          uptimeSeconds: Math.round((performance.now() - started) / 1000),
          counters: { ...router.counters.snapshot(), routes: router.routes.size, idleUpstreams: router.pool.idleCount(), upstreamsOpened: router.pool.opened, upstreamsReused: router.pool.reused },
        };
        return send(res, 200, reply);
      }
      if (req.method === "PUT" && routeId) {
        let parsed: unknown;
        try {
          parsed = JSON.parse(await readBody(req));
        } catch (error) {
          throw error instanceof ContractError ? error : new ContractError("body is not JSON");
        }
        const route = validateRoute(parsed);
        if (route.id !== decodeURIComponent(routeId)) throw new ContractError(`route id "${route.id}" does not match the path`);
        const known = router.config.listeners.map((l) => String(l.port));
        const unknown = Object.keys(route.upstreams).filter((p) => !known.includes(p));
        if (unknown.length) throw new ContractError(`the router has no listener on port ${unknown.join(", ")} (it serves ${known.join(", ")})`);
        const { conflict } = router.routes.put(route);
        if (conflict) {
          return send(res, 409, {
            error: `the mark ${route.header}: ${route.value}${route.pathPrefix ? ` on ${route.pathPrefix}` : ""} is already routed for ${conflict.owner ?? conflict.id}`,
            conflict: { id: conflict.id, owner: conflict.owner },
          });
        }
        log.info("route.put", {
          id: route.id,
          owner: route.owner,
          mark: `${route.header}=${route.value}`,
          path: route.pathPrefix,
          to: Object.entries(route.upstreams).map(([p, u]) => `${p}>${u.host}:${u.port}`).join(","),
          routes: router.routes.size,
        });
        return send(res, 200, { route });
      }
      if (req.method === "DELETE" && routeId) {
        const removed = router.routes.delete(decodeURIComponent(routeId));
        if (removed) log.info("route.delete", { id: decodeURIComponent(routeId), routes: router.routes.size });
        return send(res, 200, { removed });
      }
      return send(res, 404, { error: `no ${req.method} ${url.pathname} here` });
    } catch (error) {
      if (error instanceof ContractError) return send(res, 400, { error: error.message });
      log.warn("admin.error", { error: (error as Error).message });
      return send(res, 500, { error: (error as Error).message });
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = (server.address() as { port: number }).port;
  log.info("router.admin", { host, port: bound });
  return {
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
      }),
  };
}
