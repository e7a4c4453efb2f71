// Undo kinds for cluster objects a session created (delete-object) or changed (patch-object, scale).
// A change carries the session's marks (see changeMarks in labels.ts); undo restores the recorded
// fields exactly and takes the marks away, and leaves alone what another session marked since.

import type { UndoContext, UndoKind, ObjectRef } from "../../plugin-api.ts";
import { MERGE_PATCH, getOrUndefined, httpStatus, objectPath } from "../../kube/objects.ts";
import { DOMAIN, LABEL_SESSION } from "../labels.ts";
import { UndoError, describeRef, isPlainObject, readRef, rightsOnObject, valueAt } from "./common.ts";

/**
 * The session label on a changed object must be ours (or gone). If another session marked it since,
 * restoring now would undo that session's work; the step stays pending until that session ends.
 */
function assertNotTakenOver(object: any, ctx: UndoContext, ref: ObjectRef) {
  const holder = object?.metadata?.labels?.[LABEL_SESSION];
  if (holder && holder !== ctx.sessionId) {
    throw new UndoError(`${describeRef(ref)} is now marked by session ${holder}; left as it is`);
  }
}

/**
 * A step built with marks (`marked: true`) changed the object together with the marks, in one patch.
 * No mark means the change never landed or was undone already, or this is another cluster with a
 * same-named object: in every case there is nothing of this session's to restore.
 */
const carriesOurMark = (object: any, ctx: UndoContext, data: Record<string, unknown>) =>
  data.marked !== true || object?.metadata?.labels?.[LABEL_SESSION] === ctx.sessionId;

/** A merge patch that takes away this session's marks (session label, every ktctl.io/ annotation). */
function unmarkPatch(object: any): Record<string, unknown> {
  const labels: Record<string, null> = {};
  const annotations: Record<string, null> = {};
  if (object?.metadata?.labels?.[LABEL_SESSION] !== undefined) labels[LABEL_SESSION] = null;
  for (const key of Object.keys(object?.metadata?.annotations ?? {})) {
    if (key.startsWith(`${DOMAIN}/`)) annotations[key] = null;
  }
  const metadata: Record<string, unknown> = {};
  if (Object.keys(labels).length) metadata.labels = labels;
  if (Object.keys(annotations).length) metadata.annotations = annotations;
  return Object.keys(metadata).length ? { metadata } : {};
}

/**
 * The merge patch that turns `current` into exactly `original`. A plain merge patch of the original
 * would MERGE maps (a service selector would keep the keys ktctl added), so keys absent from the
 * original are set to null explicitly.
 */
export function exactMergePatch(current: unknown, original: unknown): unknown {
  if (original === undefined || original === null) return null;
  if (isPlainObject(original) && isPlainObject(current)) {
    const patch: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(original)) patch[key] = exactMergePatch(current[key], value);
    for (const key of Object.keys(current)) if (!(key in original)) patch[key] = null;
    return patch;
  }
  return original;
}

function deepMerge(target: Record<string, unknown>, source: Record<string, unknown>): Record<string, unknown> {
  for (const [key, value] of Object.entries(source)) {
    const existing = target[key];
    target[key] = isPlainObject(existing) && isPlainObject(value) ? deepMerge({ ...existing }, value) : value;
  }
  return target;
}

function nest(path: string[], value: unknown): Record<string, unknown> {
  return path.reduceRight<unknown>((inner, key) => ({ [key]: inner }), value) as Record<string, unknown>;
}

export interface FieldRestore {
  /** e.g. ["spec", "selector"] */
  path: string[];
  /** The original value; null or missing means the field was absent. */
  value?: unknown;
}

/** True when applying `patch` to `object` would change nothing. */
function isNoop(object: unknown, patch: unknown): boolean {
  if (!isPlainObject(patch)) return JSON.stringify(object) === JSON.stringify(patch);
  if (!isPlainObject(object)) return Object.values(patch).every((v) => v === null);
  return Object.entries(patch).every(([key, value]) =>
    value === null ? object[key] === undefined : isNoop(object[key], value),
  );
}

/** The object a step names, as it is now; undefined when it is gone. */
async function currentObject(ctx: UndoContext, data: Record<string, unknown>) {
  const kube = ctx.kube!;
  const ref = readRef(data);
  const path = await objectPath(kube, ref);
  const object = await getOrUndefined(kube, path);
  return object ? { kube, ref, path, object } : undefined;
}

/**
 * The object a change step names, when it still holds this session's change: a marked change
 * without our mark on the object never landed (or was undone already), so nothing of ours is there,
 * whoever marks it now. Only unmarked steps need the takeover guard.
 */
async function changedObject(ctx: UndoContext, data: Record<string, unknown>) {
  const current = await currentObject(ctx, data);
  if (!current || !carriesOurMark(current.object, ctx, data)) return undefined;
  assertNotTakenOver(current.object, ctx, current.ref);
  return current;
}

export const deleteObject: UndoKind = {
  where: "cluster",
  rights: rightsOnObject("delete"),
  async run(ctx, data) {
    const current = await currentObject(ctx, data);
    if (!current) return;
    const { kube, ref, path, object } = current;
    // Only what this session made: a same-named object someone else owns (e.g. the create failed
    // with AlreadyExists and this is the immediate undo) must survive.
    if (object.metadata?.labels?.[LABEL_SESSION] !== ctx.sessionId) {
      ctx.logger?.debug(`${describeRef(ref)} is not this session's; not deleting it`);
      return;
    }
    try {
      await kube.request("DELETE", path, {
        apiVersion: "v1",
        kind: "DeleteOptions",
        propagationPolicy: "Background",
        preconditions: { uid: object.metadata.uid },
      });
    } catch (error) {
      // 404: gone meanwhile. 409: the uid no longer matches, so ours is gone and another took the name.
      const status = httpStatus(error);
      if (status !== 404 && status !== 409) throw error;
    }
  },
};

export const patchObject: UndoKind = {
  where: "cluster",
  rights: rightsOnObject("patch"),
  async run(ctx, data) {
    const changed = await changedObject(ctx, data);
    if (!changed) return;
    const { kube, path, object } = changed;
    let patch: Record<string, unknown> = {};
    for (const field of (data.fields as FieldRestore[] | undefined) ?? []) {
      patch = deepMerge(patch, nest(field.path, exactMergePatch(valueAt(object, field.path), field.value)));
    }
    if (isPlainObject(data.mergePatch)) patch = deepMerge(patch, data.mergePatch);
    patch = deepMerge(patch, unmarkPatch(object));
    if (isNoop(object, patch)) return;
    await kube.request("PATCH", path, patch, MERGE_PATCH);
  },
};

export const scale: UndoKind = {
  where: "cluster",
  rights: rightsOnObject("patch"),
  async run(ctx, data) {
    if (typeof data.replicas !== "number") throw new UndoError(`scale undo of ${describeRef(readRef(data))} lacks the replica count`);
    const changed = await changedObject(ctx, data);
    if (!changed) return;
    const { kube, path, object } = changed;
    const patch = deepMerge({ spec: { replicas: data.replicas } }, unmarkPatch(object));
    if (isNoop(object, patch)) return;
    await kube.request("PATCH", path, patch, MERGE_PATCH);
  },
};
