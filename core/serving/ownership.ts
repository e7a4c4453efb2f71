// One session at a time per object. The lock is the session's own mark on the object (its session
// label and undo record, see core/session/labels.ts): a mark of a live session refuses the newcomer
// with that session's owner and age; a mark of a dead one (lease expired by the API server's clock,
// or its process gone from this host) is cleaned first, through the same plan `ktctl clean` runs, so
// its undo is applied exactly once and nothing is reported as locked forever.

import { ExitCode, KtctlError } from "../errors.ts";
import type { CleanPlan, Kube, PluginApi, SessionInfo } from "../plugin-api.ts";
import { markedBy } from "../session/labels.ts";

type Api = Pick<PluginApi, "sessions" | "logger">;

/** "5m", "2h" */
export function formatAge(seconds: number | undefined): string {
  if (seconds === undefined) return "an unknown time";
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}

export function describeHolder(info: Pick<SessionInfo, "id" | "owner" | "mode" | "ageSeconds" | "host">): string {
  return `${info.owner || "an unknown owner"} (session ${info.id}${info.mode ? `, ${info.mode}` : ""}, started ${formatAge(info.ageSeconds)} ago)`;
}

/** The session with this id in kube.namespace, as `status` lists it. */
export async function findSession(api: Api, kube: Kube, id: string): Promise<SessionInfo | undefined> {
  return (await api.sessions.list(kube, { namespace: kube.namespace })).find((s) => s.id === id);
}

/**
 * Cleans one dead session through `clean`'s own plan. Returns undefined when it was cleaned, else
 * the reason it was left alone (alive after all, its watchdog is busy, its lease is elsewhere).
 */
export async function cleanDeadSession(api: Api, kube: Kube, id: string): Promise<string | undefined> {
  const plan = await api.sessions.planClean(kube, { namespace: kube.namespace });
  const entry = plan.entries.find((e) => e.sessionId === id);
  if (!entry) {
    return plan.skipped.find((s) => s.sessionId === id)?.reason ?? "it is not known to clean (no lease and no undo record in this namespace)";
  }
  api.logger.info(`session ${id} of ${entry.owner || "an unknown owner"} is gone (${entry.why}); restoring what it left first`);
  const single: CleanPlan = { ...plan, entries: [entry], skipped: [], notes: [] };
  const result = await api.sessions.executePlan(single, kube);
  const outcome = result.entries[0];
  if (outcome?.outcome === "cleaned") return undefined;
  return outcome?.detail ?? (outcome?.failures.join("; ") || "its clean did not finish");
}

/**
 * Makes sure no other session holds any of `objects`: refuses for a live holder, cleans a dead one.
 * Returns true when something was cleaned (the caller reads the objects again).
 */
export async function ensureNotHeld(api: Api, kube: Kube, objects: any[]): Promise<boolean> {
  const namespace = kube.namespace;
  const holders = new Map<string, any>();
  for (const object of objects) {
    const id = markedBy(object);
    if (id && !holders.has(id)) holders.set(id, object);
  }
  let cleaned = false;
  for (const [id, object] of holders) {
    const what = `${String(object.kind ?? "object").toLowerCase()} ${namespace}/${object.metadata.name}`;
    const info = await findSession(api, kube, id);
    if (info?.state === "alive") {
      throw new KtctlError(
        `${what} is already taken by ${describeHolder(info)}`,
        ExitCode.conflict,
        "wait until that session ends; if its laptop is gone, its lease expires and the next attempt (or ktctl clean) restores it",
      );
    }
    const reason = await cleanDeadSession(api, kube, id);
    if (reason) {
      throw new KtctlError(`${what} is held by session ${id}${info ? ` of ${info.owner}` : ""}, which could not be cleaned: ${reason}`, ExitCode.conflict, "run ktctl clean, or ktctl recover, and try again");
    }
    cleaned = true;
  }
  return cleaned;
}
