// Which sessions are alive, as `ktctl status` judges them: by their Lease, on the API server's
// clock. A mesh keeps only the routes of sessions that are alive.

import type { Kube, PluginApi } from "../../core/plugin-api.ts";
import type { Liveness } from "./membership.ts";

export function sessionLiveness(api: Pick<PluginApi, "sessions">, kube: Kube, namespace: string): Liveness {
  return async (ids) => {
    if (ids.length === 0) return new Set();
    const sessions = await api.sessions.list(kube, { namespace });
    const wanted = new Set(ids);
    return new Set(sessions.filter((s) => wanted.has(s.id) && s.state === "alive").map((s) => s.id));
  };
}
