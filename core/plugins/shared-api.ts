// Shared objects as the plugin API offers them (see core/session/shared-object.ts): the primitive
// the shared shadow uses, with the holders' liveness worked out here, so a plugin only says which
// object, which annotation, and what the first and the last holder do.

import type { Kube, SessionsApi, SharedObjectOptions, SharedObjectsApi } from "../plugin-api.ts";
import { sharersOf } from "../session/shares.ts";

/** The holders to drop: "ended" by their missing Lease, "expired" as `status` judges them (not alive). */
async function goneHolders(kube: Kube, sessions: SessionsApi, o: SharedObjectOptions) {
  const namespace = o.ref.namespace ?? kube.namespace;
  const { goneSessions } = await import("../session/shared-object.ts");
  if ((o.drop ?? "ended") === "ended") return (ids: readonly string[]) => goneSessions(kube, namespace, ids);
  return async (ids: readonly string[]) => {
    if (ids.length === 0) return new Set<string>();
    const alive = new Set((await sessions.list(kube, { namespace })).filter((s) => s.state === "alive").map((s) => s.id));
    return new Set(ids.filter((id) => !alive.has(id)));
  };
}

export function sharedObjectsApi(sessions: SessionsApi): SharedObjectsApi {
  return {
    join: async (kube, options, hooks) =>
      (await import("../session/shared-object.ts")).joinShared(kube, options, hooks, await goneHolders(kube, sessions, options)),
    leave: async (kube, options, hooks = {}) =>
      (await import("../session/shared-object.ts")).leaveShared(kube, options, hooks, await goneHolders(kube, sessions, options)),
    holdersOf: (object, annotation) => sharersOf(object, annotation),
  };
}
