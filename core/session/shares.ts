// Objects that several sessions share (a shared shadow). No single session owns such an object, so
// it carries no session label; instead its ANNOTATION_SHARERS lists the sessions using it. Each
// sharer joins by adding itself and journals a release that removes it again; whoever removes the
// last sharer deletes the object. Every change is conditional on the resourceVersion read just
// before, so two sessions joining or leaving at the same moment never lose each other's entry.
// This file holds the pure decisions; the requests live in shared-object.ts, which serves the
// shared shadow (core/shadow/shared.ts, undo.ts) and every plugin through `api.shared`.

import { ANNOTATION_SHARERS, LABEL_SHARE, isSessionId } from "./labels.ts";

/** The session ids an object lists as its sharers (in `annotation`); an unreadable annotation counts as none. */
export function sharersOf(object: any, annotation: string = ANNOTATION_SHARERS): string[] {
  const raw = object?.metadata?.annotations?.[annotation];
  if (typeof raw !== "string") return [];
  try {
    const parsed = JSON.parse(raw);
    return Array.isArray(parsed) ? [...new Set(parsed.filter((id): id is string => typeof id === "string" && isSessionId(id)))] : [];
  } catch {
    return [];
  }
}

/** The annotation value for a sharer list (sorted, so equal lists are equal strings). */
export const sharersValue = (ids: readonly string[]): string => JSON.stringify([...new Set(ids)].sort());

/** True for an object made to be shared (it carries the share label). */
export const isSharedObject = (object: any): boolean => typeof object?.metadata?.labels?.[LABEL_SHARE] === "string";

export type ShareChange =
  | { action: "none" }
  /** Write this sharer list, conditional on the resourceVersion read. */
  | { action: "update"; sharers: string[] }
  /** Nobody is left: delete the object, conditional on the resourceVersion read. */
  | { action: "delete" };

/**
 * Joining: add `sessionId`, and drop sharers known to be gone (their session Lease no longer
 * exists: they ended without releasing, and nothing else will remove them).
 */
export function joinChange(current: readonly string[], sessionId: string, gone: ReadonlySet<string>): ShareChange {
  const next = [...current.filter((id) => id !== sessionId && !gone.has(id)), sessionId];
  return sharersValue(next) === sharersValue(current) ? { action: "none" } : { action: "update", sharers: next };
}

/**
 * Leaving: remove `sessionId` (and the gone); delete the object when no sharer remains. An object
 * that lists nobody is deleted too, whoever asks: it is what a release interrupted between its two
 * requests leaves behind, and no session can be using it (a joiner writes itself in first).
 */
export function releaseChange(current: readonly string[], sessionId: string, gone: ReadonlySet<string>): ShareChange {
  const next = current.filter((id) => id !== sessionId && !gone.has(id));
  if (!next.length) return { action: "delete" };
  return sharersValue(next) === sharersValue(current) ? { action: "none" } : { action: "update", sharers: next };
}
