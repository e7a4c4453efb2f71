// The undo kind of joining a shared object (a shared shadow): take this session off its sharers,
// and delete the object when nobody is left (the pure decisions live in ../shares.ts).

import type { Kube, UndoKind } from "../../plugin-api.ts";
import { MERGE_PATCH, getOrUndefined, httpStatus, objectPath } from "../../kube/objects.ts";
import { ANNOTATION_SHARERS, leaseName } from "../labels.ts";
import { isSharedObject, releaseChange, sharersOf, sharersValue } from "../shares.ts";
import { describeRef, readRef } from "./common.ts";

/** Conflicts are retried this often: each one means another sharer changed the list meanwhile. */
const MAX_SHARE_ATTEMPTS = 20;

/**
 * Of `ids`, the sessions whose Lease in `namespace` no longer exists: they ended without releasing
 * their share, and no journal anywhere will. A Lease we may not read counts as alive.
 */
export async function goneSessions(kube: Kube, namespace: string, ids: readonly string[]): Promise<Set<string>> {
  const gone = new Set<string>();
  await Promise.all(
    ids.map(async (id) => {
      const path = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/leases/${encodeURIComponent(leaseName(id))}`;
      try {
        await kube.request("GET", path);
      } catch (error) {
        if (httpStatus(error) === 404) gone.add(id);
      }
    }),
  );
  return gone;
}

/**
 * Leaves a shared object (see shares.ts): takes this session off its sharers and deletes it when
 * nobody is left. Every write is conditional on the resourceVersion just read; a conflict (another
 * sharer joined or left meanwhile) reads again.
 */
export const releaseSharedShadow: UndoKind = {
  where: "cluster",
  async run(ctx, data) {
    const kube = ctx.kube!;
    const ref = readRef(data);
    const path = await objectPath(kube, ref);
    for (let attempt = 1; ; attempt++) {
      const object = await getOrUndefined(kube, path);
      // Gone, going, or a same-named object that is not a shared one: nothing of ours to release.
      if (!object || object.metadata?.deletionTimestamp || !isSharedObject(object)) return;
      const current = sharersOf(object);
      const others = current.filter((id) => id !== ctx.sessionId);
      const change = releaseChange(current, ctx.sessionId, ref.namespace ? await goneSessions(kube, ref.namespace, others) : new Set());
      const resourceVersion = object.metadata.resourceVersion;
      try {
        if (change.action === "update") {
          await kube.request("PATCH", path, { metadata: { resourceVersion, annotations: { [ANNOTATION_SHARERS]: sharersValue(change.sharers) } } }, MERGE_PATCH);
          ctx.logger?.debug(`${describeRef(ref)} stays for ${change.sharers.join(", ")}`);
        } else if (change.action === "delete") {
          await kube.request("DELETE", path, {
            apiVersion: "v1",
            kind: "DeleteOptions",
            propagationPolicy: "Background",
            preconditions: { uid: object.metadata.uid, resourceVersion },
          });
          ctx.logger?.debug(`${describeRef(ref)}: last sharer gone, deleted`);
        }
        return;
      } catch (error) {
        const status = httpStatus(error);
        if (status === 404) return;
        if (status !== 409 || attempt >= MAX_SHARE_ATTEMPTS) throw error;
      }
    }
  },
};
