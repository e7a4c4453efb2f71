// Who is in a service's mesh, kept on the service itself and changed only by compare-and-swap
// (a merge patch carrying the resourceVersion it was computed from). That one object serialises
// every join and leave across laptops, so exactly one leaver sees the mesh become empty and
// restores the service, and a joiner never attaches to a mesh that is being taken down.
//
// The shared objects (router, companion, the service's change marks) carry the session label of
// one live participant, the holder, so `ktctl clean` never takes them for a dead session's
// leftovers while someone still uses them. When the holder leaves, the label passes on.

import type { Kube, PluginApi } from "../../core/plugin-api.ts";
import { ANNOTATION_UNDO, DOMAIN, LABEL_MANAGED_BY, LABEL_ROLE, LABEL_SESSION } from "../../core/session/labels.ts";
import { ANNOTATION_MESH_SESSIONS, MESH_LEAVE_KIND, companionRole, routerRole, routerSelector } from "./names.ts";
import { deleteRouteEverywhere } from "./router-admin.ts";

/** What leaving needs, journaled by every participant and recorded on the meshed service. */
export interface MeshRecord {
  apiVersion: "v1";
  kind: "Service";
  namespace: string;
  name: string;
  router: string;
  companion: string;
  adminPort: number;
  /** The service's own selector before the mesh (only on the service's record, not in journals). */
  selector?: Record<string, string>;
}

/** Which of the given session ids belong to sessions that are alive (their Lease is fresh). */
export type Liveness = (ids: string[]) => Promise<Set<string>>;

export interface MeshLog {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
}

const MERGE_PATCH = "application/merge-patch+json";
const MAX_ATTEMPTS = 8;

const statusOf = (error: unknown): number | undefined => (error as { status?: number })?.status;

export const servicePath = (namespace: string, name: string) => `/api/v1/namespaces/${namespace}/services/${name}`;
export const deploymentPath = (namespace: string, name: string) => `/apis/apps/v1/namespaces/${namespace}/deployments/${name}`;

/** The mesh record on a service, if the service is meshed. */
export function meshRecordOf(service: any): MeshRecord | undefined {
  const raw = service?.metadata?.annotations?.[ANNOTATION_UNDO];
  if (typeof raw !== "string") return undefined;
  try {
    const mark = JSON.parse(raw);
    return mark?.kind === MESH_LEAVE_KIND && typeof mark.undo?.name === "string" ? (mark.undo as MeshRecord) : undefined;
  } catch {
    return undefined;
  }
}

export function participantsOf(service: any): string[] {
  const raw = service?.metadata?.annotations?.[ANNOTATION_MESH_SESSIONS];
  try {
    const list = JSON.parse(raw ?? "[]");
    return Array.isArray(list) ? list.filter((id) => typeof id === "string") : [];
  } catch {
    return [];
  }
}

/** The merge patch that points the service at the router and marks it (one patch, so both or neither land). */
export function meshPatch(service: any, record: MeshRecord, sessionId: string): any {
  const selector: Record<string, string | null> = {};
  for (const key of Object.keys(service.spec?.selector ?? {})) selector[key] = null;
  Object.assign(selector, routerSelector(record.name));
  return {
    metadata: {
      resourceVersion: service.metadata.resourceVersion,
      labels: { [LABEL_SESSION]: sessionId },
      annotations: {
        [ANNOTATION_UNDO]: JSON.stringify({ kind: MESH_LEAVE_KIND, undo: record }),
        [ANNOTATION_MESH_SESSIONS]: JSON.stringify([sessionId]),
      },
    },
    spec: { selector },
  };
}

/** The merge patch that gives the service back exactly its own selector and takes every ktctl mark away. */
export function restorePatch(service: any, record: MeshRecord): any {
  const original = record.selector ?? {};
  const selector: Record<string, string | null> = {};
  for (const key of Object.keys(service.spec?.selector ?? {})) if (!(key in original)) selector[key] = null;
  Object.assign(selector, original);
  const annotations: Record<string, null> = {};
  for (const key of Object.keys(service.metadata?.annotations ?? {})) if (key.startsWith(`${DOMAIN}/`)) annotations[key] = null;
  const labels: Record<string, null> = {};
  if (service.metadata?.labels?.[LABEL_SESSION] !== undefined) labels[LABEL_SESSION] = null;
  return { metadata: { resourceVersion: service.metadata.resourceVersion, labels, annotations }, spec: { selector } };
}

export interface JoinInput {
  kube: Kube;
  api: Pick<PluginApi, "errors">;
  namespace: string;
  service: string;
  sessionId: string;
  live: Liveness;
  log: MeshLog;
  /**
   * Makes the companion and the router for a service that is not meshed yet and returns the record
   * (without touching the service). Throws ConcurrentCreation when another session is doing it.
   */
  create(service: any): Promise<MeshRecord>;
  /** Waits until another session's creation shows on the service (or fails). */
  waitForMesh(): Promise<void>;
}

export class ConcurrentCreation extends Error {
  constructor(readonly holder: string | undefined) {
    super(`another session${holder ? ` (${holder})` : ""} is setting up this mesh`);
  }
}

/**
 * Joins the service's mesh, creating it when this session is the first. Returns the record and
 * whether this session created the shared objects.
 */
export async function joinMesh(input: JoinInput): Promise<{ record: MeshRecord; created: boolean }> {
  const { kube, namespace, service: name, sessionId, log } = input;
  const { KtctlError, ExitCode } = input.api.errors;
  let made: MeshRecord | undefined;
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    const service = await kube.request<any>("GET", servicePath(namespace, name));
    const existing = meshRecordOf(service);
    if (existing) {
      const participants = participantsOf(service);
      const alive = await input.live(participants);
      const next = [...new Set([...participants.filter((id) => alive.has(id)), sessionId])];
      const holder = service.metadata.labels?.[LABEL_SESSION];
      const newHolder = holder && alive.has(holder) ? holder : sessionId;
      try {
        await kube.request(
          "PATCH",
          servicePath(namespace, name),
          {
            metadata: {
              resourceVersion: service.metadata.resourceVersion,
              labels: { [LABEL_SESSION]: newHolder },
              annotations: { [ANNOTATION_MESH_SESSIONS]: JSON.stringify(next) },
            },
          },
          MERGE_PATCH,
        );
      } catch (error) {
        if (statusOf(error) === 409) continue;
        throw error;
      }
      if (newHolder !== holder) await relabel(kube, existing, newHolder, log);
      const pruned = participants.filter((id) => !alive.has(id) && id !== sessionId);
      if (pruned.length) log.debug(`mesh of ${namespace}/${name}: dropped sessions that are gone: ${pruned.join(", ")}`);
      return { record: existing, created: false };
    }

    const holder = service.metadata.labels?.[LABEL_SESSION];
    if (holder && holder !== sessionId) {
      throw new KtctlError(
        `service ${namespace}/${name} is changed by ktctl session ${holder} (not a mesh)`,
        ExitCode.conflict,
        "a service can be exchanged or meshed, not both; `ktctl status` shows the session",
      );
    }
    if (!service.spec?.selector || Object.keys(service.spec.selector).length === 0) {
      throw new KtctlError(`service ${namespace}/${name} has no selector, so there are no pods to put a router in front of`, ExitCode.usage);
    }

    if (!made) {
      try {
        made = { ...(await input.create(service)), selector: { ...service.spec.selector } };
      } catch (error) {
        if (!(error instanceof ConcurrentCreation)) throw error;
        log.info(`${error.message}; joining it`);
        await input.waitForMesh();
        continue;
      }
    } else {
      made.selector = { ...service.spec.selector };
    }
    try {
      await kube.request("PATCH", servicePath(namespace, name), meshPatch(service, made, sessionId), MERGE_PATCH);
      return { record: made, created: true };
    } catch (error) {
      if (statusOf(error) === 409) continue; // changed meanwhile: look again
      throw error;
    }
  }
  throw new KtctlError(`service ${namespace}/${name} kept changing while joining its mesh; try again`, ExitCode.conflict);
}

export interface LeaveInput {
  kube: Kube;
  record: Pick<MeshRecord, "namespace" | "name" | "router" | "companion" | "adminPort">;
  sessionId: string;
  live: Liveness;
  log: MeshLog;
}

/**
 * Leaves the mesh: takes this session's route off the router, then either hands the mesh on to
 * the sessions that remain or, when none is left alive, restores the service exactly and deletes
 * the router and the companion. Idempotent, and safe for a session that never finished joining.
 */
export async function leaveMesh(input: LeaveInput): Promise<"restored" | "left" | "nothing"> {
  const { kube, record, sessionId, log } = input;
  const { namespace, name } = record;
  // The mesh's own record knows its admin port (a journal written before joining may not).
  const before = await kube.request<any>("GET", servicePath(namespace, name)).catch((error) => {
    if (statusOf(error) === 404) return undefined;
    throw error;
  });
  const adminPort = meshRecordOf(before)?.adminPort ?? record.adminPort;
  const routeFailures = await deleteRouteEverywhere(kube, namespace, name, adminPort, sessionId).catch((error: Error) => [error.message]);
  // The route dies with the session anyway (its shadow goes, the router then skips it); not fatal.
  if (routeFailures.length) log.debug(`route of ${sessionId} not removed from every router: ${routeFailures.join("; ")}`);

  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    let service: any;
    try {
      service = await kube.request<any>("GET", servicePath(namespace, name));
    } catch (error) {
      if (statusOf(error) !== 404) throw error;
      service = undefined;
    }
    const current = meshRecordOf(service);
    if (!current) {
      // Not meshed (any more, or not yet: this session died while creating). Remove what it made.
      await deleteShared(kube, record, (object) => object?.metadata?.labels?.[LABEL_SESSION] === sessionId, log);
      return "nothing";
    }
    const participants = participantsOf(service);
    const others = participants.filter((id) => id !== sessionId);
    const alive = await input.live(others);
    const remaining = others.filter((id) => alive.has(id));

    if (remaining.length === 0) {
      try {
        await kube.request("PATCH", servicePath(namespace, name), restorePatch(service, current), MERGE_PATCH);
      } catch (error) {
        if (statusOf(error) === 409) continue;
        throw error;
      }
      log.info(`service ${namespace}/${name} restored; removing its mesh router`);
      await deleteShared(kube, current, () => true, log);
      return "restored";
    }

    const holder = service.metadata.labels?.[LABEL_SESSION];
    const newHolder = remaining.includes(holder) ? holder : remaining[0]!;
    try {
      await kube.request(
        "PATCH",
        servicePath(namespace, name),
        {
          metadata: {
            resourceVersion: service.metadata.resourceVersion,
            labels: { [LABEL_SESSION]: newHolder },
            annotations: { [ANNOTATION_MESH_SESSIONS]: JSON.stringify(remaining) },
          },
        },
        MERGE_PATCH,
      );
    } catch (error) {
      if (statusOf(error) === 409) continue;
      throw error;
    }
    if (newHolder !== holder) await relabel(kube, current, newHolder, log);
    log.debug(`left the mesh of ${namespace}/${name}; ${remaining.length} session(s) remain`);
    return "left";
  }
  throw new Error(`service ${namespace}/${name} kept changing while leaving its mesh`);
}

/** Hands the router and the companion to another holder (their session label). */
async function relabel(kube: Kube, record: Pick<MeshRecord, "namespace" | "router" | "companion">, holder: string, log: MeshLog): Promise<void> {
  const patch = { metadata: { labels: { [LABEL_SESSION]: holder } } };
  for (const path of [deploymentPath(record.namespace, record.router), servicePath(record.namespace, record.companion)]) {
    try {
      await kube.request("PATCH", path, patch, MERGE_PATCH);
    } catch (error) {
      if (statusOf(error) !== 404) throw error;
      log.debug(`${path} is gone; nothing to relabel`);
    }
  }
}

/**
 * Deletes the router Deployment and the companion service if they are this mesh's (managed by
 * ktctl, with the mesh's role label) and `mine` agrees; the uid precondition keeps a same-named
 * object created meanwhile safe.
 */
async function deleteShared(
  kube: Kube,
  record: Pick<MeshRecord, "namespace" | "name" | "router" | "companion">,
  mine: (object: any) => boolean,
  log: MeshLog,
): Promise<void> {
  const targets = [
    { path: deploymentPath(record.namespace, record.router), role: routerRole(record.name) },
    { path: servicePath(record.namespace, record.companion), role: companionRole(record.name) },
  ];
  for (const { path, role } of targets) {
    let object: any;
    try {
      object = await kube.request<any>("GET", path);
    } catch (error) {
      if (statusOf(error) === 404) continue;
      throw error;
    }
    const labels = object?.metadata?.labels ?? {};
    if (labels[LABEL_MANAGED_BY] === undefined || labels[LABEL_ROLE] !== role || !mine(object)) continue;
    try {
      await kube.request("DELETE", path, {
        apiVersion: "v1",
        kind: "DeleteOptions",
        propagationPolicy: "Background",
        preconditions: { uid: object.metadata.uid },
      });
      log.debug(`deleted ${path}`);
    } catch (error) {
      if (statusOf(error) !== 404 && statusOf(error) !== 409) throw error;
    }
  }
}
