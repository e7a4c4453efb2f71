// `ktctl clean`: one analysis (computePlan, pure) drives both the dry run and the real run.
// What may be touched: sessions whose Lease expired by the API server's clock, objects of sessions
// that have no Lease at all, and local journals whose process is gone. A session whose Lease is
// fresh is never touched, whatever any laptop's clock says.

import { hostname } from "node:os";
import type { ConsolaInstance } from "consola";
import type { Kube } from "../plugin-api.ts";
import { claimLease, deleteLease, isLeaseExpired, listLeases, readLease, serverNow, writeLeaseSteps, type LeaseRecord } from "./lease.ts";
import { isProcessAlive } from "./processes.ts";
import { listLocalJournals, pendingSteps, readLocalJournal, removeLocalJournal, writeLocalJournal, type Journal, type JournalStep } from "./journal.ts";
import { LABEL_MANAGED_BY, LABEL_SESSION, LABEL_SHARE, leaseName, leaseSelector, undoMarkOf } from "./labels.ts";
import { sharersOf } from "./shares.ts";
import { namespaceInView } from "./status.ts";
import type { CleanAction, CleanEntry, CleanOptions, CleanPlan, CleanResult, StepRef } from "../plugin-api.ts";
import { httpStatus } from "../kube/objects.ts";
import { releaseShareStep } from "./steps.ts";
import type { UndoRegistry, UndoWhere } from "./undo.ts";

/** Resource types searched for objects carrying a session label. */
export type { CleanAction, CleanEntry, CleanOptions, CleanPlan, CleanResult, StepRef };

export const CLEAN_RESOURCES = [
  "api/v1/pods",
  "api/v1/services",
  "api/v1/configmaps",
  "api/v1/secrets",
  "api/v1/serviceaccounts",
  "apis/apps/v1/deployments",
  "apis/apps/v1/statefulsets",
  "apis/apps/v1/daemonsets",
  "apis/rbac.authorization.k8s.io/v1/roles",
  "apis/rbac.authorization.k8s.io/v1/rolebindings",
  "apis/networking.k8s.io/v1/networkpolicies",
] as const;






/** A labelled object as listed (only the fields the plan reads). */
export interface LabelledObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: { controller?: boolean }[];
  };
}

export interface LocalJournalState {
  journal: Journal;
  /** The session's ktctl process is still running on this host. */
  alive: boolean;
  /** Its watchdog is running (and so is undoing it right now). */
  watchdogAlive: boolean;
}

export interface PlanInput {
  scope: string;
  localOnly: boolean;
  serverNow?: number;
  leases: LeaseRecord[];
  objects: LabelledObject[];
  local: LocalJournalState[];
  /** API server URL the clean runs against: local journals of other clusters keep their cluster steps. */
  server?: string;
  /**
   * Shared objects (a shared shadow) in scope. They carry no session label; one whose sharers all
   * have neither a Lease nor a local journal was left by sessions that ended without releasing it.
   */
  shared?: LabelledObject[];
  /** For session ids seen only on objects: "absent" (no Lease anywhere) or "unknown" (could not look). */
  leaseElsewhere: Record<string, "absent" | "unknown" | "present">;
  notes?: string[];
  /** Records that could not be read (see CleanPlan.damaged). */
  damaged?: string[];
}

const ago = (ms: number) => {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
};

const refKey = (r: { apiVersion?: unknown; kind?: unknown; namespace?: unknown; name?: unknown }) =>
  `${r.apiVersion}|${r.kind}|${r.namespace ?? ""}|${r.name}`;

const objectDescribe = (o: LabelledObject) => `${o.kind.toLowerCase()} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ""}${o.metadata.name}`;

function stepAction(step: JournalStep | StepRef, where: UndoWhere): CleanAction {
  return { type: "undo", describe: `undo: ${step.describe}`, step: { seq: step.seq, kind: step.kind, describe: step.describe, undo: step.undo }, where, source: "journal" };
}

/** Actions for objects of a session that no journal step accounts for. */
function leftoverActions(objects: LabelledObject[], covered: Set<string>, notes: string[]): CleanAction[] {
  const actions: CleanAction[] = [];
  for (const object of objects) {
    const ref = { apiVersion: object.apiVersion, kind: object.kind, namespace: object.metadata.namespace, name: object.metadata.name };
    if (covered.has(refKey(ref))) continue;
    // Owned objects (a shadow Deployment's ReplicaSet and pods) go with their owner.
    if (object.metadata.ownerReferences?.some((o) => o.controller)) continue;
    if (object.metadata.labels?.[LABEL_MANAGED_BY] !== undefined) {
      actions.push({
        type: "undo",
        describe: `delete leftover ${objectDescribe(object)}`,
        step: { kind: "delete-object", describe: `created ${objectDescribe(object)}`, undo: ref },
        where: "cluster",
        source: "object",
      });
      continue;
    }
    const mark = undoMarkOf(object);
    if (mark) {
      actions.push({
        type: "undo",
        describe: `restore ${objectDescribe(object)} from its ${mark.kind} record`,
        step: { kind: mark.kind, describe: `changed ${objectDescribe(object)}`, undo: mark.undo },
        where: "cluster",
        source: "object",
      });
    } else {
      notes.push(`${objectDescribe(object)} carries the session label but no undo record; check it by hand`);
    }
  }
  return actions;
}

/** Objects a step list already accounts for (so leftovers are not undone twice). */
function coveredBy(steps: { undo: Record<string, unknown> }[]): Set<string> {
  return new Set(steps.filter((s) => typeof s.undo?.name === "string").map((s) => refKey(s.undo)));
}

/** The plan, from what was read of the cluster and the laptop. Pure: no I/O, no clock. */
export function computePlan(input: PlanInput): CleanPlan {
  const plan: CleanPlan = {
    serverTime: input.serverNow !== undefined ? new Date(input.serverNow).toISOString() : undefined,
    scope: input.scope,
    entries: [],
    skipped: [],
    notes: [...(input.notes ?? [])],
    damaged: [...(input.damaged ?? [])],
  };
  const objectsBySession = new Map<string, LabelledObject[]>();
  for (const object of input.objects) {
    const id = object.metadata.labels?.[LABEL_SESSION];
    if (!id) continue;
    objectsBySession.set(id, [...(objectsBySession.get(id) ?? []), object]);
  }
  const handled = new Set<string>();
  const leaseById = new Map(input.leases.map((l) => [l.id, l]));

  // 1. This laptop's journals: the process is known alive or dead, no clock needed.
  for (const { journal, alive, watchdogAlive } of input.local) {
    const meta = journal.meta;
    handled.add(meta.id);
    if (alive) {
      plan.skipped.push({ sessionId: meta.id, namespace: meta.namespace, owner: meta.owner, reason: `its ktctl process (pid ${meta.pid}) is running` });
      continue;
    }
    if (watchdogAlive) {
      plan.skipped.push({ sessionId: meta.id, namespace: meta.namespace, owner: meta.owner, reason: `its watchdog (pid ${meta.watchdogPid}) is undoing it now` });
      continue;
    }
    const notes: string[] = [];
    const otherCluster = !input.localOnly && input.server !== undefined && meta.kube?.server !== undefined && meta.kube.server !== input.server;
    const clusterReachable = !input.localOnly && !otherCluster;
    if (otherCluster) notes.push(`its cluster steps belong to ${meta.kube.server} (context ${meta.kube.context}); run clean there`);
    const pending = pendingSteps(journal.steps);
    const actions: CleanAction[] = [];
    for (const step of pending) {
      if (step.where === "cluster" && !clusterReachable) continue;
      actions.push(stepAction(step, step.where));
    }
    const clusterLeft = pending.some((s) => s.where === "cluster") && !clusterReachable;
    if (clusterReachable) {
      actions.push(...leftoverActions(objectsBySession.get(meta.id) ?? [], coveredBy(journal.steps), notes));
      actions.push({ type: "delete-lease", describe: `delete lease ${meta.namespace}/${leaseName(meta.id)}`, namespace: meta.namespace, name: leaseName(meta.id) });
    } else if (input.localOnly && pending.some((s) => s.where === "cluster")) {
      notes.push(`${pending.filter((s) => s.where === "cluster").length} cluster step(s) left for a clean without --localOnly`);
    }
    if (!clusterLeft) actions.push({ type: "remove-local-journal", describe: `remove local journal of ${meta.id}`, sessionId: meta.id });
    plan.entries.push({
      sessionId: meta.id,
      namespace: meta.namespace,
      owner: meta.owner,
      mode: meta.mode,
      target: meta.target,
      host: meta.host,
      why: `its ktctl process (pid ${meta.pid}) is gone`,
      localJournal: true,
      actions,
      notes,
    });
  }
  if (input.localOnly) return plan;

  // 2. Leases: judged by the server's clock only.
  for (const lease of input.leases) {
    if (handled.has(lease.id)) continue;
    handled.add(lease.id);
    const now = input.serverNow!;
    if (!isLeaseExpired(lease, now)) {
      const renewed = lease.lastRenewal !== undefined ? `renewed ${ago(now - lease.lastRenewal)} ago` : "fresh";
      plan.skipped.push({ sessionId: lease.id, namespace: lease.namespace, owner: lease.owner, reason: `alive (${renewed})` });
      continue;
    }
    const notes: string[] = [];
    if (lease.journalError) {
      notes.push(lease.journalError);
      plan.damaged!.push(`lease ${lease.namespace}/${lease.name}: ${lease.journalError}`);
    }
    const pending = pendingSteps(lease.steps);
    const laptop = pending.filter((s) => s.where === "laptop");
    if (laptop.length) notes.push(`${laptop.length} laptop step(s) can only be undone on ${lease.host || "its host"} (ktctl clean there)`);
    const actions: CleanAction[] = pending.filter((s) => s.where === "cluster").map((s) => stepAction(s, "cluster"));
    actions.push(...leftoverActions(objectsBySession.get(lease.id) ?? [], coveredBy(lease.steps), notes));
    actions.push({ type: "delete-lease", describe: `delete lease ${lease.namespace}/${lease.name}`, namespace: lease.namespace, name: lease.name });
    const silence = lease.lastRenewal !== undefined ? `not renewed for ${ago(now - lease.lastRenewal)}` : "never renewed";
    plan.entries.push({
      sessionId: lease.id,
      namespace: lease.namespace,
      owner: lease.owner,
      mode: lease.mode,
      target: lease.target,
      host: lease.host,
      why: `lease expired (${silence}, duration ${lease.durationSeconds}s, by the API server's clock)`,
      claim: { namespace: lease.namespace, name: lease.name, resourceVersion: lease.resourceVersion },
      localJournal: false,
      actions,
      notes,
    });
  }

  // 3. Objects of sessions with no Lease and no local journal.
  for (const [id, objects] of objectsBySession) {
    if (handled.has(id) || leaseById.has(id)) continue;
    const elsewhere = input.leaseElsewhere[id] ?? "unknown";
    if (elsewhere !== "absent") {
      const reason = elsewhere === "present" ? "its lease lives in another namespace (clean with -A)" : "its lease could not be looked up outside this namespace (clean with -A)";
      plan.skipped.push({ sessionId: id, reason });
      continue;
    }
    const notes: string[] = [];
    const actions = leftoverActions(objects, new Set(), notes);
    if (!actions.length && !notes.length) continue;
    plan.entries.push({
      sessionId: id,
      owner: objects[0]?.metadata.labels?.["ktctl.io/owner"],
      why: "no lease exists for this session any more",
      localJournal: false,
      actions,
      notes,
    });
  }

  // 4. Shared objects nobody can release any more: every sharer is unknown to both sides.
  const known = new Set([...input.leases.map((l) => l.id), ...input.local.map((l) => l.journal.meta.id)]);
  for (const object of input.shared ?? []) {
    const sharers = sharersOf(object);
    if (sharers.some((id) => known.has(id))) continue;
    const ref = { apiVersion: object.apiVersion, kind: object.kind, namespace: object.metadata.namespace, name: object.metadata.name };
    const step = releaseShareStep(ref, `shared ${objectDescribe(object)}`);
    plan.entries.push({
      // Not a session: the release runs on behalf of nobody, and finds every listed sharer gone.
      sessionId: `shared:${object.metadata.name}`,
      namespace: object.metadata.namespace,
      owner: object.metadata.labels?.["ktctl.io/owner"],
      why: sharers.length ? `shared by session(s) ${sharers.join(", ")}, none of which exists any more` : "shared by no session",
      localJournal: false,
      actions: [{ type: "undo", describe: `delete ${objectDescribe(object)}`, step, where: "cluster", source: "object" }],
      notes: [],
    });
  }
  return plan;
}

// ---------------------------------------------------------------------------------------------
// Reading the world

export interface CleanContext {
  home: string;
  registry: UndoRegistry;
  logger?: Pick<ConsolaInstance, "debug" | "info" | "warn">;
}

async function listLabelled(kube: Kube, namespace: string | undefined, notes: string[]): Promise<LabelledObject[]> {
  const objects: LabelledObject[] = [];
  for (const resource of CLEAN_RESOURCES) {
    const [prefix, ...gv] = resource.split("/");
    const plural = gv.pop()!;
    const base = `/${prefix}/${gv.join("/")}`;
    const path = `${base}${namespace ? `/namespaces/${encodeURIComponent(namespace)}` : ""}/${plural}?labelSelector=${encodeURIComponent(LABEL_SESSION)}`;
    try {
      const list = await kube.request<{ apiVersion?: string; kind?: string; items?: any[] }>("GET", path);
      const apiVersion = gv.join("/");
      const kind = (list.kind ?? "").replace(/List$/, "");
      for (const item of list.items ?? []) objects.push({ ...item, apiVersion: item.apiVersion ?? apiVersion, kind: item.kind ?? kind });
    } catch (error) {
      const status = httpStatus(error);
      if (status === 404) continue; // not served by this cluster
      if (status === 403) notes.push(`not allowed to list ${plural}${namespace ? ` in ${namespace}` : ""}: leftovers of that type are not searched`);
      else throw error;
    }
  }
  return objects;
}

async function localStates(home: string, notes: string[], damaged: string[]): Promise<LocalJournalState[]> {
  const { journals, unreadable } = await listLocalJournals(home);
  for (const bad of unreadable) {
    notes.push(`unreadable journal ${bad.path}: ${bad.error}`);
    damaged.push(`session journal ${bad.path} is unreadable (${bad.error})`);
  }
  const here = hostname();
  return journals.map((journal) => {
    const meta = journal.meta;
    // A journal written on another host (a shared home) says nothing about processes here.
    if (meta.host !== here) return { journal, alive: true, watchdogAlive: false };
    return { journal, alive: isProcessAlive(meta.pid, meta.pidStart), watchdogAlive: isProcessAlive(meta.watchdogPid, meta.watchdogPidStart) };
  });
}

/** Reads leases, labelled objects, local journals and the server clock, then computes the plan. */
export async function planClean(kube: Kube | undefined, options: CleanOptions, ctx: CleanContext): Promise<CleanPlan> {
  const notes: string[] = [];
  const damaged: string[] = [];
  const local = await localStates(ctx.home, notes, damaged);
  if (options.localOnly || !kube) {
    return computePlan({ scope: "this host only", localOnly: true, leases: [], objects: [], local, leaseElsewhere: {}, notes, damaged });
  }
  const { scope: namespace, clock } = namespaceInView(kube, options);
  const now = await serverNow(kube, clock);
  const leases = (await listLeases(kube, namespace, leaseSelector())).map(readLease);
  const objects = await listLabelled(kube, namespace, notes);
  const shared = await listShared(kube, namespace, notes);

  const leaseElsewhere: Record<string, "absent" | "unknown" | "present"> = {};
  const known = new Set([...leases.map((l) => l.id), ...local.map((l) => l.journal.meta.id)]);
  for (const id of new Set(objects.map((o) => o.metadata.labels?.[LABEL_SESSION]).filter((x): x is string => !!x))) {
    if (known.has(id)) continue;
    if (!namespace) {
      leaseElsewhere[id] = "absent";
      continue;
    }
    try {
      const found = await listLeases(kube, undefined, `${LABEL_SESSION}=${id}`);
      leaseElsewhere[id] = found.length ? "present" : "absent";
    } catch (error) {
      if (httpStatus(error) !== 403) throw error;
      leaseElsewhere[id] = "unknown";
    }
  }
  return computePlan({
    scope: namespace ? `namespace ${namespace}` : "all namespaces",
    localOnly: false,
    serverNow: now,
    leases,
    objects,
    local,
    server: kube.server,
    leaseElsewhere,
    shared,
    notes,
    damaged,
  });
}

/** Shared shadows in scope (pods with the share label). */
async function listShared(kube: Kube, namespace: string | undefined, notes: string[]): Promise<LabelledObject[]> {
  const path = `/api/v1${namespace ? `/namespaces/${encodeURIComponent(namespace)}` : ""}/pods?labelSelector=${encodeURIComponent(LABEL_SHARE)}`;
  try {
    const list = await kube.request<{ items?: any[] }>("GET", path);
    return (list.items ?? []).filter((p) => !p.metadata?.deletionTimestamp).map((p) => ({ ...p, apiVersion: "v1", kind: "Pod" }));
  } catch (error) {
    if (httpStatus(error) !== 403) throw error;
    notes.push("not allowed to list pods: shared shadows are not searched");
    return [];
  }
}

// ---------------------------------------------------------------------------------------------
// Acting


async function markLocalStep(home: string, id: string, seq: number | undefined, error?: string) {
  if (seq === undefined) return;
  const journal = await readLocalJournal(home, id);
  const step = journal?.steps.find((s) => s.seq === seq);
  if (!journal || !step) return;
  if (error) step.error = error;
  else {
    step.state = "undone";
    delete step.error;
  }
  await writeLocalJournal(home, journal);
}

/** Carries out a plan. Within a session, the Lease and journal go only when every undo worked. */
export async function executePlan(plan: CleanPlan, kube: Kube | undefined, ctx: CleanContext): Promise<CleanResult> {
  const result: CleanResult = { entries: [], undone: 0, failed: 0 };
  const claimant = `ktctl-clean@${hostname()}/${process.pid}`;
  for (const entry of plan.entries) {
    const failures: string[] = [];
    if (entry.claim) {
      if (!kube) throw new Error("a plan with cluster actions needs cluster access");
      const claimed = await claimLease(kube, entry.claim, claimant);
      if (claimed === undefined) {
        result.entries.push({ sessionId: entry.sessionId, outcome: "skipped", detail: "its lease changed since the plan (renewed, or cleaned by someone else)", failures });
        continue;
      }
    }
    const undoCtx = { kube, sessionId: entry.sessionId, logger: ctx.logger };
    const undoneSeqs = new Set<number>();
    for (const action of entry.actions) {
      if (action.type !== "undo") continue;
      try {
        await ctx.registry.run(undoCtx, action.step);
        result.undone++;
        if (action.step.seq !== undefined) undoneSeqs.add(action.step.seq);
        if (entry.localJournal) await markLocalStep(ctx.home, entry.sessionId, action.step.seq);
        ctx.logger?.info(`${entry.sessionId}: ${action.describe}`);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        failures.push(`${action.describe}: ${message}`);
        result.failed++;
        if (entry.localJournal) await markLocalStep(ctx.home, entry.sessionId, action.step.seq, message);
        ctx.logger?.warn(`${entry.sessionId}: could not ${action.describe}: ${message}`);
      }
    }
    if (failures.length) {
      // Keep the records, minus what was undone, so the next clean retries only the rest.
      if (entry.claim && kube) {
        const lease = await kube
          .request<any>("GET", `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(entry.claim.namespace)}/leases/${encodeURIComponent(entry.claim.name)}`)
          .catch(() => undefined);
        if (lease) {
          const steps = readLease(lease).steps.map((s) => (undoneSeqs.has(s.seq) ? { ...s, state: "undone" as const } : s));
          await writeLeaseSteps(kube, entry.claim.namespace, entry.claim.name, steps).catch(() => undefined);
        }
      }
      result.entries.push({ sessionId: entry.sessionId, outcome: "partial", failures });
      continue;
    }
    for (const action of entry.actions) {
      try {
        if (action.type === "delete-lease") await deleteLease(kube!, action.namespace, action.name);
        else if (action.type === "remove-local-journal") await removeLocalJournal(ctx.home, action.sessionId);
      } catch (error) {
        failures.push(`${action.describe}: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    result.entries.push({ sessionId: entry.sessionId, outcome: failures.length ? "partial" : "cleaned", failures });
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Showing

export function renderPlan(plan: CleanPlan): string {
  const lines: string[] = [];
  const at = plan.serverTime ? ` (API server time ${plan.serverTime})` : "";
  lines.push(`clean ${plan.scope}${at}:`);
  if (!plan.entries.length) lines.push("  nothing to clean");
  for (const entry of plan.entries) {
    const who = [entry.owner, entry.mode && `${entry.mode}${entry.target ? ` ${entry.target}` : ""}`, entry.namespace && `ns ${entry.namespace}`]
      .filter(Boolean)
      .join(", ");
    lines.push(`  session ${entry.sessionId}${who ? ` (${who})` : ""}: ${entry.why}`);
    for (const action of entry.actions) lines.push(`    - ${action.describe}${action.type === "undo" && action.where === "laptop" ? " [this host]" : ""}`);
    for (const note of entry.notes) lines.push(`    ! ${note}`);
  }
  for (const skip of plan.skipped) {
    lines.push(`  left alone: session ${skip.sessionId}${skip.owner ? ` (${skip.owner})` : ""}${skip.namespace ? ` in ${skip.namespace}` : ""}: ${skip.reason}`);
  }
  for (const note of plan.notes) lines.push(`  ! ${note}`);
  return lines.join("\n");
}
