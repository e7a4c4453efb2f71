// Who is in a service's mesh, kept on the service itself: the service is a shared object
// (api.shared) whose holders are the mesh's sessions, changed only by compare-and-swap. That one
// object serialises every join and leave across laptops, so exactly one leaver sees the mesh
// become empty and restores the service, and a joiner never attaches to a mesh that is being
// taken down.
//
// The shared objects (router, companion, the service's change marks) carry the session label of
// one live participant, the holder, so `ktctl clean` never takes them for a dead session's
// leftovers while someone still uses them. When the holder leaves, the label passes on.

import type { Kube, PluginApi, SharedObjectOptions } from "../../core/plugin-api.ts";
import { MESH_LEAVE_KIND, companionRole, meshSessionsAnnotation, routerRole, routerSelector, type Naming } from "./names.ts";
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

/** What membership needs of the plugin API. */
export type MembershipApi = Pick<PluginApi, "errors" | "scheme" | "shared">;

// Encoded: a name holding "/" must not reach a subresource (services/echo/status is echo's status).
const segment = encodeURIComponent;
export const servicePath = (namespace: string, name: string) => `/api/v1/namespaces/${segment(namespace)}/services/${segment(name)}`;
export const deploymentPath = (namespace: string, name: string) => `/apis/apps/v1/namespaces/${segment(namespace)}/deployments/${segment(name)}`;

/** The mesh record on a service, if the service is meshed. */
export function meshRecordOf(api: Naming, service: any): MeshRecord | undefined {
  const mark = api.scheme.undoMarkOf(service);
  return mark?.kind === MESH_LEAVE_KIND && typeof mark.undo.name === "string" ? (mark.undo as unknown as MeshRecord) : undefined;
}

export function participantsOf(api: Naming, service: any): string[] {
  const raw = service?.metadata?.annotations?.[meshSessionsAnnotation(api)];
  try {
    const list = JSON.parse(raw ?? "[]");
    return Array.isArray(list) ? list.filter((id) => typeof id === "string") : [];
  } catch {
    return [];
  }
}

/** The merge patch that points the service at the router and marks it (one patch, so both or neither land). */
export function meshPatch(api: Naming, service: any, record: MeshRecord, sessionId: string): any {
  const selector: Record<string, string | null> = {};
  for (const key of Object.keys(service.spec?.selector ?? {})) selector[key] = null;
  Object.assign(selector, routerSelector(api, record.name));
  return {
    metadata: {
      resourceVersion: service.metadata.resourceVersion,
      labels: { [api.scheme.labels.session]: sessionId },
      annotations: {
        [api.scheme.annotations.undo]: JSON.stringify({ kind: MESH_LEAVE_KIND, undo: record }),
        [meshSessionsAnnotation(api)]: JSON.stringify([sessionId]),
      },
    },
    spec: { selector },
  };
}

/** The merge patch that gives the service back exactly its own selector and takes every ktctl mark away. */
export function restorePatch(api: Naming, service: any, record: MeshRecord): any {
  const original = record.selector ?? {};
  const selector: Record<string, string | null> = {};
  for (const key of Object.keys(service.spec?.selector ?? {})) if (!(key in original)) selector[key] = null;
  Object.assign(selector, original);
  const annotations: Record<string, null> = {};
  for (const key of Object.keys(service.metadata?.annotations ?? {})) if (key.startsWith(`${api.scheme.domain}/`)) annotations[key] = null;
  const labels: Record<string, null> = {};
  if (service.metadata?.labels?.[api.scheme.labels.session] !== undefined) labels[api.scheme.labels.session] = null;
  return { metadata: { resourceVersion: service.metadata.resourceVersion, labels, annotations }, spec: { selector } };
}

/**
 * The service as a shared object: its participants in the mesh-sessions annotation, the holder in
 * its session label; sessions that are not alive (as `status` judges them) are dropped.
 */
function membership(api: MembershipApi, namespace: string, name: string, sessionId: string, log: MeshLog): SharedObjectOptions {
  return {
    ref: { apiVersion: "v1", kind: "Service", namespace, name },
    sessionId,
    annotation: meshSessionsAnnotation(api),
    holderLabel: api.scheme.labels.session,
    isShared: (service) => meshRecordOf(api, service) !== undefined,
    drop: "expired",
    logger: log,
  };
}

export interface JoinInput {
  kube: Kube;
  api: MembershipApi;
  namespace: string;
  service: string;
  sessionId: string;
  log: MeshLog;
  /**
   * Makes the companion and the router for a service that is not meshed yet and returns the record
   * (without touching the service). Throws ConcurrentCreation when another session is doing it.
   */
  create(service: any): Promise<MeshRecord>;
  /**
   * Waits until another session's creation shows on the service, or until `conflict`, the object
   * that stood in the way, is gone (its session was taking the mesh down, or gave up creating it).
   */
  waitForMesh(conflict: ConcurrentCreation): Promise<void>;
}

export class ConcurrentCreation extends Error {
  constructor(
    readonly holder: string | undefined,
    /** The object of the mesh that already exists: the companion service or the router Deployment. */
    readonly object: { kind: string; name: string },
  ) {
    super(`another session${holder ? ` (${holder})` : ""} is setting up or taking down this mesh`);
  }
}

/**
 * Joins the service's mesh, creating it when this session is the first. Returns the record and
 * whether this session created the shared objects.
 */
export async function joinMesh(input: JoinInput): Promise<{ record: MeshRecord; created: boolean }> {
  const { kube, api, namespace, service: name, sessionId, log } = input;
  const { KtctlError, ExitCode } = api.errors;
  let made: MeshRecord | undefined;
  const joined = await api.shared.join(kube, membership(api, namespace, name, sessionId, log), {
    async create(service) {
      if (!service) throw new KtctlError(`service ${namespace}/${name} not found`, ExitCode.notFound);
      const holder = api.scheme.markedBy(service);
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
          made = await input.create(service);
        } catch (error) {
          if (!(error instanceof ConcurrentCreation)) throw error;
          log.info(`${error.message}; waiting for it`);
          await input.waitForMesh(error);
          // Meshed by the other session (join it), or its leftovers gone (create it): read it again.
          return false;
        }
      }
      made.selector = { ...service.spec.selector };
      // Carries the resourceVersion read: a service changed meanwhile fails with 409 and is read again.
      await kube.mergePatch(servicePath(namespace, name), meshPatch(api, service, made, sessionId));
      return true;
    },
  });
  if (joined.created) return { record: made!, created: true };
  const record = meshRecordOf(api, joined.object)!;
  if (joined.holderChanged) await relabel(kube, api, record, joined.holderChanged, log);
  return { record, created: false };
}

export interface LeaveInput {
  kube: Kube;
  api: MembershipApi;
  record: Pick<MeshRecord, "namespace" | "name" | "router" | "companion" | "adminPort">;
  sessionId: string;
  log: MeshLog;
}

/**
 * Leaves the mesh: takes this session's route off the router, then either hands the mesh on to
 * the sessions that remain or, when none is left alive, restores the service exactly and deletes
 * the router and the companion. Idempotent, and safe for a session that never finished joining.
 */
export async function leaveMesh(input: LeaveInput): Promise<"restored" | "left" | "nothing"> {
  const { kube, api, record, sessionId, log } = input;
  const { namespace, name } = record;
  // The mesh's own record knows its admin port (a journal written before joining may not).
  const before = await kube.get(servicePath(namespace, name));
  const adminPort = meshRecordOf(api, before)?.adminPort ?? record.adminPort;
  const routeFailures = await deleteRouteEverywhere(kube, namespace, routerSelector(api, name), adminPort, sessionId).catch((error: Error) => [error.message]);
  // The route dies with the session anyway (its shadow goes, the router then skips it); not fatal.
  if (routeFailures.length) log.debug(`route of ${sessionId} not removed from every router: ${routeFailures.join("; ")}`);

  const left = await api.shared.leave(kube, membership(api, namespace, name, sessionId, log), {
    async last(service) {
      await kube.mergePatch(servicePath(namespace, name), restorePatch(api, service, meshRecordOf(api, service)!));
      log.info(`service ${namespace}/${name} restored; removing its mesh router`);
    },
  });
  if (left.outcome === "absent") {
    // Not meshed (any more, or not yet: this session died while creating). Remove what it made.
    await deleteShared(kube, api, record, (object) => api.scheme.markedBy(object) === sessionId, log);
    return "nothing";
  }
  const current = meshRecordOf(api, left.object)!;
  if (left.outcome === "last") {
    await deleteShared(kube, api, current, () => true, log);
    return "restored";
  }
  if (left.holderChanged) await relabel(kube, api, current, left.holderChanged, log);
  log.debug(`left the mesh of ${namespace}/${name}; ${left.holders.length} session(s) remain`);
  return "left";
}

/** Hands the router and the companion to another holder (their session label). */
async function relabel(kube: Kube, api: MembershipApi, record: Pick<MeshRecord, "namespace" | "router" | "companion">, holder: string, log: MeshLog): Promise<void> {
  const patch = { metadata: { labels: { [api.scheme.labels.session]: holder } } };
  for (const path of [deploymentPath(record.namespace, record.router), servicePath(record.namespace, record.companion)]) {
    try {
      await kube.mergePatch(path, patch);
    } catch (error) {
      if (api.errors.httpStatus(error) !== 404) throw error;
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
  api: MembershipApi,
  record: Pick<MeshRecord, "namespace" | "name" | "router" | "companion">,
  mine: (object: any) => boolean,
  log: MeshLog,
): Promise<void> {
  const { labels: keys } = api.scheme;
  const targets = [
    { path: deploymentPath(record.namespace, record.router), role: routerRole(api, record.name) },
    { path: servicePath(record.namespace, record.companion), role: companionRole(api, record.name) },
  ];
  for (const { path, role } of targets) {
    const object = await kube.get(path);
    if (!object) continue;
    const labels = object.metadata?.labels ?? {};
    if (labels[keys.managedBy] === undefined || labels[keys.role] !== role || !mine(object)) continue;
    try {
      await kube.request("DELETE", path, {
        apiVersion: "v1",
        kind: "DeleteOptions",
        propagationPolicy: "Background",
        preconditions: { uid: object.metadata.uid },
      });
      log.debug(`deleted ${path}`);
    } catch (error) {
      const status = api.errors.httpStatus(error);
      if (status !== 404 && status !== 409) throw error;
    }
  }
}
