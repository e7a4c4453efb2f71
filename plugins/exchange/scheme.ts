// The session's naming scheme and step builders, as exchange, recover and preview use them. They
// live in core/session (the one place labels and undo records are defined) and are not part of
// PluginApi yet, so this file is the single import point: when the API grows an equivalent, only
// this file changes. Pure functions and constants only: nothing here talks to a cluster.

export {
  ANNOTATION_UNDO,
  LABEL_MANAGED_BY,
  LABEL_ROLE,
  LABEL_SESSION,
  dnsSafe,
  labelSafe,
} from "../../core/session/labels.ts";
export { deleteObjectStep, patchObjectStep, scaleStep } from "../../core/session/steps.ts";
export { undoMarkOf, isCreatedByKtctl } from "../../core/session/labels.ts";

import { LABEL_ROLE, LABEL_SESSION, dnsSafe, labelSafe } from "../../core/session/labels.ts";

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
