// `ktctl mesh`: only the requests that carry a developer's mark come to their laptop, for HTTP/1.1,
// WebSocket, HTTP/2 and gRPC, with several developers on one service at once.
// The undo of every auto-mode session is the reference-counted leave (membership.ts), registered
// here so that the watchdog and `ktctl clean` run it too.

import type { KtctlPlugin, UndoRight } from "../../core/plugin-api.ts";
import { leaveMesh } from "./membership.ts";
import { MESH_LEAVE_KIND } from "./names.ts";

function readRecord(data: Record<string, unknown>) {
  const { namespace, name, router, companion, adminPort } = data;
  if (typeof namespace !== "string" || typeof name !== "string" || typeof router !== "string" || typeof companion !== "string" || typeof adminPort !== "number") {
    throw new Error(`${MESH_LEAVE_KIND} undo lacks namespace, name, router, companion or adminPort: ${JSON.stringify(data).slice(0, 200)}`);
  }
  return { namespace, name, router, companion, adminPort };
}

export default {
  name: "mesh",
  apiVersion: 1,
  description: "Route only marked requests (a header) of a service to your laptop; several developers at once",
  commands: {
    mesh: () => import("./mesh.command.ts").then((m) => m.default),
  },
  setup(api) {
    api.sessions.registerUndoKind(MESH_LEAVE_KIND, {
      where: "cluster",
      // Leaving reads and patches the service back (and the router's route through its port-forward),
      // hands the router on (a label patch), and the last one out deletes the router Deployment and
      // the companion Service.
      rights(data): UndoRight[] {
        const { namespace, name, router, companion } = readRecord(data);
        const service = (n: string) => ({ apiVersion: "v1", kind: "Service", namespace, name: n });
        const deployment = { apiVersion: "apps/v1", kind: "Deployment", namespace, name: router };
        return [
          { verb: "get", ref: service(name) },
          { verb: "patch", ref: service(name) },
          { verb: "get", ref: service(companion) },
          { verb: "delete", ref: service(companion) },
          { verb: "get", ref: deployment },
          { verb: "patch", ref: deployment }, // a leaving holder hands the router to one who stays
          { verb: "delete", ref: deployment },
        ];
      },
      async run(ctx, data) {
        const record = readRecord(data);
        const log = {
          debug: (m: string) => ctx.logger?.debug(m),
          info: (m: string) => ctx.logger?.info(m),
          warn: (m: string) => ctx.logger?.warn(m),
        };
        await leaveMesh({ kube: ctx.kube!, api, record, sessionId: ctx.sessionId, log });
      },
    });
  },
} satisfies KtctlPlugin;
