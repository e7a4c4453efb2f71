// The mesh's panel in `ktctl ui`: the routes of the service (which mark goes where, and which
// session holds it). Read from a router pod only while a ui is open; otherwise this costs a timer.

import type { Kube, PluginApi, Route, Session } from "../../core/plugin-api.ts";
import { listRoutes, readyRouterPods } from "./router-admin.ts";

const REFRESH_MS = 3000;

export function publishRoutesPanel(
  api: Pick<PluginApi, "ui" | "logger" | "errors">,
  ctx: { kube: Kube; namespace: string; service: string; routerPods: Record<string, string>; adminPort: number; session: Session },
): void {
  const { kube, namespace, service, session } = ctx;
  let busy = false;
  const refresh = async () => {
    if (busy || !api.ui.watching) return;
    busy = true;
    try {
      const [pod] = await readyRouterPods(kube, namespace, ctx.routerPods);
      const routes: Route[] = pod ? await listRoutes(kube, namespace, pod.metadata.name, ctx.adminPort) : [];
      api.ui.panel({
        id: "mesh-routes",
        sessionId: session.id,
        title: `mesh routes of svc/${service} (${namespace})`,
        columns: ["mark", "path prefix", "held by", "session", "goes to"],
        rows: routes.map((r) => [
          `${r.header}: ${r.value}`,
          r.pathPrefix ?? "",
          r.owner ?? "",
          r.id === session.id ? `${r.id} (this one)` : r.id,
          Object.entries(r.upstreams)
            .map(([port, to]) => `:${port} → ${to.host}:${to.port}`)
            .join(", "),
        ]),
        note: pod ? `as router pod ${pod.metadata.name} holds them; requests without a mark go to the service's own pods` : "no router pod is ready",
      });
    } catch (error) {
      api.logger.debug(`ui: mesh routes not read: ${api.errors.text(error)}`);
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void refresh(), REFRESH_MS);
  timer.unref();
  void session.ended.then(() => clearInterval(timer));
}
