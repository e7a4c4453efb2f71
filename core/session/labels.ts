// The one naming and labelling scheme. `clean`, `status` and every mode find what a session made or
// changed by these labels alone, so nothing else in the code base may invent its own keys.

import { createHash, randomBytes } from "node:crypto";

export const DOMAIN = "ktctl.io";

export const LABEL_MANAGED_BY = `${DOMAIN}/managed-by`;
export const MANAGED_BY_VALUE = "ktctl";
export const LABEL_SESSION = `${DOMAIN}/session`;
export const LABEL_ROLE = `${DOMAIN}/role`;
export const LABEL_OWNER = `${DOMAIN}/owner`;
/**
 * On an object several sessions of one owner share (a shared shadow): the share's key. Such an
 * object carries no session label, as no single session owns it; its sharers are listed in
 * ANNOTATION_SHARERS and each one journals a `release-shared-shadow` step.
 */
export const LABEL_SHARE = `${DOMAIN}/share`;

/** Role of the per-session Lease that carries the cluster copy of the journal. */
export const ROLE_SESSION = "session";

/** Annotations on the session Lease. */
export const ANNOTATION_OWNER = `${DOMAIN}/owner`;
export const ANNOTATION_MODE = `${DOMAIN}/mode`;
export const ANNOTATION_TARGET = `${DOMAIN}/target`;
export const ANNOTATION_PID = `${DOMAIN}/pid`;
export const ANNOTATION_HOST = `${DOMAIN}/host`;
export const ANNOTATION_STARTED = `${DOMAIN}/started`;
export const ANNOTATION_JOURNAL = `${DOMAIN}/journal`;

/**
 * On an object a session CHANGED (not created): the step that undoes the change, as JSON
 * `{kind, undo}`. It lets `clean` restore the object even when the journals are lost.
 */
export const ANNOTATION_UNDO = `${DOMAIN}/undo`;

/** On a shared object: the ids of the sessions using it, as a JSON list. */
export const ANNOTATION_SHARERS = `${DOMAIN}/sharers`;

const SESSION_ID_LENGTH = 8;
const ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";
const MAX_NAME = 63;

/** A short random id that is a valid DNS label and label value: a letter, then letters and digits. */
export function newSessionId(random: (n: number) => Uint8Array = randomBytes): string {
  const bytes = random(SESSION_ID_LENGTH);
  let id = "";
  for (let i = 0; i < SESSION_ID_LENGTH; i++) {
    // A leading letter keeps the id valid where a name must not start with a digit.
    const alphabet = i === 0 ? 26 : ID_ALPHABET.length;
    id += ID_ALPHABET[bytes[i]! % alphabet];
  }
  return id;
}

export const isSessionId = (id: string): boolean => /^[a-z][a-z0-9]{3,15}$/.test(id);

const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
export const isLabelValue = (value: string): boolean => value.length <= MAX_NAME && LABEL_VALUE.test(value);

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
export const isDnsLabel = (name: string): boolean => name.length <= MAX_NAME && DNS_LABEL.test(name);

const shortHash = (text: string) => createHash("sha256").update(text).digest("hex").slice(0, 6);

/**
 * Any text (e.g. "alice@laptop") as a valid label value ("alice-laptop"). Over-long values are cut
 * and end with a hash of the whole so two long owners do not collapse into one value.
 */
export function labelSafe(text: string): string {
  let value = text
    .replace(/[^A-Za-z0-9_.-]+/g, "-")
    .replace(/^[^A-Za-z0-9]+/, "")
    .replace(/[^A-Za-z0-9]+$/, "");
  if (value.length > MAX_NAME) {
    value = `${value.slice(0, MAX_NAME - 7).replace(/[^A-Za-z0-9]+$/, "")}-${shortHash(text)}`;
  }
  return value || "unknown";
}

/** Lowercase DNS-label form of a role or any word: "Exchange Echo" -> "exchange-echo". */
export function dnsSafe(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/-+/g, "-")
    .replace(/^-+|-+$/g, "");
}

/**
 * The name of an object a session creates: `ktctl-<id>-<role>`, a DNS label of at most 63 chars.
 * A role too long to fit is cut and suffixed with a hash of the full role, so names stay unique.
 */
export function objectName(sessionId: string, role: string): string {
  const safeRole = dnsSafe(role);
  const prefix = `ktctl-${sessionId}`;
  if (!safeRole) return prefix;
  const full = `${prefix}-${safeRole}`;
  if (full.length <= MAX_NAME) return full;
  const room = MAX_NAME - prefix.length - 1 - 7;
  return `${prefix}-${safeRole.slice(0, room).replace(/-+$/, "")}-${shortHash(safeRole)}`;
}

/** The name of the session's Lease. */
export const leaseName = (sessionId: string): string => objectName(sessionId, "");

/** Labels every object a session creates carries. */
export function sessionLabels(sessionId: string, owner: string, role?: string): Record<string, string> {
  const labels: Record<string, string> = {
    [LABEL_MANAGED_BY]: MANAGED_BY_VALUE,
    [LABEL_SESSION]: sessionId,
    [LABEL_OWNER]: labelSafe(owner),
  };
  if (role) labels[LABEL_ROLE] = labelSafe(dnsSafe(role));
  return labels;
}

/** Selector for everything ktctl created, across sessions. */
export const managedSelector = (): string => `${LABEL_MANAGED_BY}=${MANAGED_BY_VALUE}`;
/** Selector for everything one session created or changed. */
export const sessionSelector = (sessionId: string): string => `${LABEL_SESSION}=${sessionId}`;
/** Selector for the per-session Leases. */
export const leaseSelector = (): string => `${managedSelector()},${LABEL_ROLE}=${ROLE_SESSION}`;

/**
 * Metadata to merge into the patch that CHANGES an object someone else owns: the session label
 * (so `clean` finds it) and the undo (so `clean` can restore it without a journal). The matching
 * undo kinds (`patch-object`, `scale`) take both away again.
 */
export function changeMarks(sessionId: string, undo: { kind: string; undo: Record<string, unknown> }) {
  return {
    labels: { [LABEL_SESSION]: sessionId },
    annotations: { [ANNOTATION_UNDO]: JSON.stringify(undo) },
  };
}

/**
 * The labels that select exactly one session's shadow of one role. startShadow puts the session
 * label and the role label (made label-safe the same way) on every shadow pod it creates, including
 * the replacement of a deleted one, so a selector made of these two keeps following the shadow.
 */
export function shadowSelector(sessionId: string, role: string): Record<string, string> {
  return { [LABEL_SESSION]: sessionId, [LABEL_ROLE]: labelSafe(dnsSafe(role)) };
}

/** The session that marked (changed or created) an object, if any. */
export const markedBy = (object: any): string | undefined => object?.metadata?.labels?.[LABEL_SESSION] || undefined;

/** True for objects a session created (as opposed to changed). */
export const isCreatedByKtctl = (object: any): boolean => object?.metadata?.labels?.[LABEL_MANAGED_BY] !== undefined;

/** The undo recorded on a changed object by `changeMarks`, if any. */
export function undoMarkOf(object: any): { kind: string; undo: Record<string, unknown> } | undefined {
  const raw = object?.metadata?.annotations?.[ANNOTATION_UNDO];
  if (typeof raw !== "string") return undefined;
  try {
    const parsed = JSON.parse(raw);
    return typeof parsed?.kind === "string" && typeof parsed.undo === "object" && parsed.undo !== null && !Array.isArray(parsed.undo) ? parsed : undefined;
  } catch {
    return undefined;
  }
}
