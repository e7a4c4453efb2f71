// Creating a service's mesh (first developer only): the companion service, the router Deployment,
// and the wait until a router pod is ready. Objects a dead session left half made are cleared; a
// live session making them at the same moment wins, and this one joins its mesh instead.

import type { GlobalOptions, Kube, PluginApi } from "../../core/plugin-api.ts";
import { ConcurrentCreation, deploymentPath, meshRecordOf, servicePath, type Liveness, type MeshLog, type MeshRecord } from "./membership.ts";
import { companionName, labelSelectorText, routerName, routerSelector } from "./names.ts";
import { companionService, routerConfig, routerDeployment } from "./objects.ts";
import { isRouterPodReady } from "./router-admin.ts";
import type { MeshPort } from "./ports.ts";

export interface SetupContext {
  kube: Kube;
  api: Pick<PluginApi, "errors" | "scheme" | "shadowPods" | "waits">;
  namespace: string;
  sessionId: string;
  /** This session's global flags: the router is a shadow made with them. */
  global: GlobalOptions;
  /** Labels of this session (managed-by, session, owner): the creator holds the mesh first. */
  labels: Record<string, string>;
  plan: MeshPort[];
  ownPorts: { tunnel: number; admin: number };
  live: Liveness;
  log: MeshLog;
  timeoutMs: number;
}

/** Waiting reasons that mean a pod will not start by itself. */
const HOPELESS = new Set(["ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName", "CreateContainerConfigError", "CrashLoopBackOff"]);

/** Creates the object, or settles what already holds its name. */
async function createOwned(ctx: SetupContext, collection: string, object: any): Promise<void> {
  const path = `${collection}/${object.metadata.name}`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await ctx.kube.request("POST", collection, object);
      return;
    } catch (error) {
      if (ctx.api.errors.httpStatus(error) !== 409) throw error;
    }
    const existing = await ctx.kube.get(path);
    if (!existing) continue; // deleted meanwhile: create again
    const holder = ctx.api.scheme.markedBy(existing);
    if (holder === ctx.sessionId) return; // ours, from an attempt that was interrupted
    if (!ctx.api.scheme.isCreatedByKtctl(existing)) {
      const { KtctlError, ExitCode } = ctx.api.errors;
      throw new KtctlError(`${object.kind} ${ctx.namespace}/${object.metadata.name} already exists and is not ktctl's`, ExitCode.conflict, "rename or remove it, then mesh again");
    }
    if (holder && (await ctx.live([holder])).has(holder)) throw new ConcurrentCreation(holder, { kind: object.kind, name: object.metadata.name });
    ctx.log.info(`removing ${object.kind.toLowerCase()} ${object.metadata.name} left by session ${holder ?? "unknown"}, which is gone`);
    await ctx.kube
      .request("DELETE", path, { apiVersion: "v1", kind: "DeleteOptions", propagationPolicy: "Background", preconditions: { uid: existing.metadata.uid } })
      .catch((error) => {
        const status = ctx.api.errors.httpStatus(error);
        if (status !== 404 && status !== 409) throw error;
      });
  }
  throw new ConcurrentCreation(undefined, { kind: object.kind, name: object.metadata.name });
}

/** Makes the companion and the router of `service` and waits until the router serves. */
export async function createMesh(ctx: SetupContext, service: any): Promise<MeshRecord> {
  const { kube, namespace } = ctx;
  const name: string = service.metadata.name;
  const record: MeshRecord = {
    apiVersion: "v1",
    kind: "Service",
    namespace,
    name,
    router: routerName(name),
    companion: companionName(name),
    adminPort: ctx.ownPorts.admin,
  };

  await createOwned(ctx, `/api/v1/namespaces/${namespace}/services`, companionService(ctx.api, { name: record.companion, original: service, labels: ctx.labels }));
  const companion = await kube.request<any>("GET", servicePath(namespace, record.companion));
  const config = routerConfig(ctx.plan, companion.spec.clusterIP, `${namespace}/${name}`, ctx.ownPorts.admin);
  await createOwned(
    ctx,
    `/apis/apps/v1/namespaces/${namespace}/deployments`,
    routerDeployment(ctx.api, {
      name: record.router,
      namespace,
      service: name,
      labels: ctx.labels,
      global: ctx.global,
      config,
      plan: ctx.plan,
      tunnelPort: ctx.ownPorts.tunnel,
    }),
  );
  await waitForRouterPod(ctx, name);
  return record;
}

/** Resolves with a ready router pod of the service; fails at once on a pod that cannot start. */
export function waitForRouterPod(ctx: Pick<SetupContext, "kube" | "api" | "namespace" | "timeoutMs">, service: string): Promise<any> {
  const { KtctlError, ExitCode } = ctx.api.errors;
  return ctx.api.waits.until(
    ctx.kube,
    `/api/v1/namespaces/${ctx.namespace}/pods`,
    { labelSelector: labelSelectorText(routerSelector(ctx.api, service)) },
    (pods) => {
      for (const pod of pods.values()) {
        if (isRouterPodReady(pod)) return pod;
        for (const status of pod.status?.containerStatuses ?? []) {
          const reason = status.state?.waiting?.reason;
          if (reason && HOPELESS.has(reason)) {
            throw new KtctlError(
              `the mesh router pod ${pod.metadata.name} cannot start: ${reason}${status.state.waiting.message ? ` (${status.state.waiting.message})` : ""}`,
              reason.includes("Image") ? ExitCode.image : ExitCode.failure,
              `kubectl -n ${ctx.namespace} logs ${pod.metadata.name}`,
            );
          }
        }
      }
      return undefined;
    },
    { timeoutMs: ctx.timeoutMs, what: `a ready mesh router pod for service ${ctx.namespace}/${service}` },
  );
}

/**
 * Resolves once another session's mesh shows on the service, or once `orGone` (a companion service
 * that stood in the way) is gone: a live session that is taking its mesh down removes the router
 * and then the companion, so its companion's end says this session may create the mesh itself.
 */
export function waitForMeshOn(ctx: Pick<SetupContext, "kube" | "api" | "namespace" | "timeoutMs">, service: string, orGone?: string): Promise<void> {
  return ctx.api.waits
    .until(
      ctx.kube,
      `/api/v1/namespaces/${ctx.namespace}/services`,
      orGone ? {} : { fieldSelector: `metadata.name=${service}` },
      (services) => (meshRecordOf(ctx.api, services.get(service)) || (orGone && !services.has(orGone)) ? true : undefined),
      { timeoutMs: ctx.timeoutMs, what: `the mesh of service ${ctx.namespace}/${service} to be set up by another session` },
    )
    .then(() => undefined);
}

export const readRouterDeployment = (kube: Kube, namespace: string, name: string): Promise<any | undefined> => kube.get(deploymentPath(namespace, name));

/**
 * Resolves once the service's endpoints are what `wanted` says (judged on the ready endpoints'
 * pod names). kube-proxy follows the EndpointSlices within its own sync period, which no API shows.
 */
export function waitForEndpoints(
  ctx: Pick<SetupContext, "kube" | "api" | "namespace" | "timeoutMs">,
  service: string,
  wanted: (readyPods: string[]) => boolean,
  what: string,
): Promise<void> {
  return ctx.api.waits
    .forEndpoints(ctx.kube, service, (ready) => wanted([...ready]), { timeoutMs: ctx.timeoutMs, what, by: "pod" })
    .then(() => undefined);
}
