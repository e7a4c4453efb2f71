// One cluster object several sessions hold at once (a shared shadow pod, a meshed service). No
// session owns it, so it lists its holders in an annotation; optionally a label names one live
// holder too, so `clean` and `status` take it for that live session's. The first holder creates
// (or takes over) the object, the last one restores or deletes it, and holders whose session is
// gone are dropped by whoever comes next: nothing else would ever remove them. Every write is a
// create or carries the resourceVersion just read, so two sessions joining or leaving at the same
// moment never lose each other's entry; a 409 reads again. The pure decisions are in shares.ts.

import type {
  HolderMarks,
  Kube,
  SharedJoinHooks,
  SharedJoinResult,
  SharedLeaveHooks,
  SharedLeaveResult,
  SharedObjectOptions,
} from "../plugin-api.ts";
import { ExitCode, KtctlError } from "../errors.ts";
import { MERGE_PATCH, getOrUndefined, httpStatus, objectPath } from "../kube/objects.ts";
import { ANNOTATION_SHARERS, leaseName } from "./labels.ts";
import { joinChange, releaseChange, sharersOf, sharersValue } from "./shares.ts";

/** Of the given holder ids, the ones to drop as gone. */
export type GoneHolders = (ids: readonly string[]) => Promise<Set<string>>;

/** Conflicts are retried this often: each one means another holder changed the list meanwhile. */
const MAX_ATTEMPTS = 20;

/**
 * Of `ids`, the sessions whose Lease in `namespace` no longer exists: they ended without leaving,
 * and no journal anywhere will. A Lease we may not read counts as alive.
 */
export async function goneSessions(kube: Pick<Kube, "request">, namespace: string, ids: readonly string[]): Promise<Set<string>> {
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

const annotationOf = (o: SharedObjectOptions) => o.annotation ?? ANNOTATION_SHARERS;
const isShared = (o: SharedObjectOptions, object: any) =>
  o.isShared ? o.isShared(object) : typeof object?.metadata?.annotations?.[annotationOf(o)] === "string";
const describe = (o: SharedObjectOptions) => `${o.ref.kind.toLowerCase()} ${o.ref.namespace ? `${o.ref.namespace}/` : ""}${o.ref.name}`;

/** The label and annotation that say who holds the object, as a merge patch's metadata. */
function holderMetadata(o: SharedObjectOptions, object: any, holders: string[], holder: string | undefined) {
  return {
    resourceVersion: object.metadata.resourceVersion,
    annotations: { [annotationOf(o)]: sharersValue(holders) },
    ...(o.holderLabel ? { labels: { [o.holderLabel]: holder ?? null } } : {}),
  };
}

/** The holder label after a change: the current holder while it still holds, else `fallback`. */
function nextHolder(o: SharedObjectOptions, object: any, holders: string[], fallback: string | undefined): string | undefined {
  if (!o.holderLabel) return undefined;
  const current: string | undefined = object?.metadata?.labels?.[o.holderLabel];
  return current && holders.includes(current) ? current : fallback;
}

function tooManyConflicts(o: SharedObjectOptions, doing: string): KtctlError {
  return new KtctlError(`${describe(o)} kept changing while ${doing} it; try again`, ExitCode.conflict);
}

/** Makes `o.sessionId` a holder of the object; the first one creates it through `hooks.create`. */
export async function joinShared(kube: Kube, o: SharedObjectOptions, hooks: SharedJoinHooks, gone: GoneHolders): Promise<SharedJoinResult> {
  const path = await objectPath(kube, o.ref);
  const me = o.sessionId;
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    try {
      const object = await getOrUndefined(kube, path);
      if (object && hooks.usable && !(await hooks.usable(object))) continue;
      if (!object || !isShared(o, object)) {
        const marks: HolderMarks = {
          labels: o.holderLabel ? { [o.holderLabel]: me } : {},
          annotations: { [annotationOf(o)]: sharersValue([me]) },
        };
        if (!(await hooks.create(object, marks))) continue;
        return { created: true, holders: [me], object, dropped: [] };
      }
      const current = sharersOf(object, annotationOf(o));
      const dead = await gone(current.filter((id) => id !== me));
      const change = joinChange(current, me, dead);
      const holders = change.action === "update" ? change.sharers : current;
      const holder = nextHolder(o, object, holders, me);
      const before: string | undefined = o.holderLabel ? object.metadata?.labels?.[o.holderLabel] : undefined;
      if (change.action !== "none" || holder !== before) {
        await kube.request("PATCH", path, { metadata: holderMetadata(o, object, holders, holder) }, MERGE_PATCH);
      }
      const dropped = current.filter((id) => dead.has(id));
      if (dropped.length) o.logger?.debug(`${describe(o)}: dropped holders that are gone: ${dropped.join(", ")}`);
      return { created: false, holders, object, dropped, ...(holder !== before && holder ? { holderChanged: holder } : {}) };
    } catch (error) {
      // 409: created by another session meanwhile (AlreadyExists) or the holders changed (Conflict).
      if (httpStatus(error) !== 409) throw error;
      o.logger?.debug(`${describe(o)} changed while joining; reading it again`);
    }
  }
  throw tooManyConflicts(o, "joining");
}

/** Takes `o.sessionId` off the object's holders; the last one restores or deletes it. Idempotent. */
export async function leaveShared(kube: Kube, o: SharedObjectOptions, hooks: SharedLeaveHooks, gone: GoneHolders): Promise<SharedLeaveResult> {
  const path = await objectPath(kube, o.ref);
  const me = o.sessionId;
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    const object = await getOrUndefined(kube, path);
    // Gone, going, or a same-named object that is not shared: nothing of ours to leave.
    if (!object || object.metadata?.deletionTimestamp || !isShared(o, object)) return { outcome: "absent", holders: [] };
    const current = sharersOf(object, annotationOf(o));
    const change = releaseChange(current, me, await gone(current.filter((id) => id !== me)));
    try {
      if (change.action === "delete") {
        if (hooks.last) await hooks.last(object);
        else await deleteExactly(kube, path, object);
        o.logger?.debug(`${describe(o)}: last holder gone`);
        return { outcome: "last", holders: [], object };
      }
      const holders = change.action === "update" ? change.sharers : current;
      const holder = nextHolder(o, object, holders, holders[0]);
      const before: string | undefined = o.holderLabel ? object.metadata?.labels?.[o.holderLabel] : undefined;
      if (change.action === "update" || holder !== before) {
        await kube.request("PATCH", path, { metadata: holderMetadata(o, object, holders, holder) }, MERGE_PATCH);
        o.logger?.debug(`${describe(o)} stays for ${holders.join(", ")}`);
      }
      return { outcome: "left", holders, object, ...(holder !== before && holder ? { holderChanged: holder } : {}) };
    } catch (error) {
      const status = httpStatus(error);
      if (status === 404) return { outcome: "absent", holders: [] };
      if (status !== 409) throw error;
    }
  }
  throw tooManyConflicts(o, "leaving");
}

/** Deletes exactly the object as read: a holder joining meanwhile changes its resourceVersion (409). */
async function deleteExactly(kube: Kube, path: string, object: any): Promise<void> {
  await kube.request("DELETE", path, {
    apiVersion: "v1",
    kind: "DeleteOptions",
    propagationPolicy: "Background",
    preconditions: { uid: object.metadata.uid, resourceVersion: object.metadata.resourceVersion },
  });
}
