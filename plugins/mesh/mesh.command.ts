import type { CommandFactory, Kube, PluginApi, Route, Session, Shadow } from "../../core/plugin-api.ts";
import { curlLine, generateMarkValue, parseMark, type Mark } from "./mark.ts";
import { joinMesh, meshRecordOf, participantsOf, servicePath, type MeshLog, type MeshRecord } from "./membership.ts";
import { MESH_LEAVE_KIND, companionName, developerRole, routerName, routerSelector } from "./names.ts";
import { configOfRouter } from "./objects.ts";
import { PortPlanError, describeMeshPort, planExposedPorts, planFromRouterConfig, planMeshPorts, routerOwnPorts, type ExposedPort, type MeshPort } from "./ports.ts";
import { RouteConflictError } from "./router-admin.ts";
import { RouteKeeper } from "./route-keeper.ts";
import { createMesh, readRouterDeployment, waitForEndpoints, waitForMeshOn, waitForRouterPod } from "./router-setup.ts";
import { sessionLiveness } from "./liveness.ts";
import { publishRoutesPanel } from "./ui-panel.ts";

type Mode = "auto" | "manual";

const mesh: CommandFactory = (api) =>
  api.defineCommand({
    meta: {
      name: "mesh",
      description: "Send only the requests that carry your mark (a header) to your laptop; everyone else keeps the cluster's pods",
    },
    args: {
      ...api.globalArgs,
      service: { type: "positional", description: "The service to mesh", required: true },
      expose: { type: "string", description: "LOCAL[:REMOTE] ports, comma-separated; REMOTE is a service port (default: same as LOCAL)", required: true },
      versionMark: { type: "string", description: "[KEY:]VALUE: the header that marks your requests (default key VERSION, value generated)" },
      mode: { type: "string", description: "auto (a router in front of the service) or manual (only your shadow, labelled, for Istio and the like)", default: "auto" },
      path: { type: "string", description: "Also require this path prefix (whole segments), e.g. /api/v2" },
    },
    async run({ args }) {
      const { KtctlError, ExitCode } = api.errors;
      const global = api.globalOptions(args);
      const mode = String(args.mode) as Mode;
      if (mode !== "auto" && mode !== "manual") throw new KtctlError(`--mode ${mode}: expected auto or manual`, ExitCode.usage);
      const mappings = api.parsePorts(String(args.expose));
      const kube = await api.kube(global);
      const namespace = kube.namespace; // settled once, from -n or the context
      const serviceName = String(args.service);
      const pathPrefix = args.path ? usage(api, () => api.router.checkPathPrefix(String(args.path))) : undefined;
      if (pathPrefix && mode === "manual") throw new KtctlError("--path works with --mode auto only (in manual mode your service mesh routes)", ExitCode.usage);

      const service = await getService(api, kube, namespace, serviceName);
      if (mode === "manual" && meshRecordOf(api, service)) {
        throw new KtctlError(
          `service ${namespace}/${serviceName} is meshed in auto mode by other developers; manual mode needs the service's own selector`,
          ExitCode.conflict,
          "use --mode auto to join their mesh",
        );
      }
      const plan = await portPlan(api, kube, namespace, service);
      const exposed = usage(api, () => planExposedPorts(api, plan, mappings, `${namespace}/${serviceName}`));
      if (mode === "manual") checkManualPorts(api, exposed);
      for (const e of exposed) {
        if (mode === "auto" && e.port.protocol === "tcp") {
          api.logger.warn(`service port ${e.port.servicePort} is a raw TCP port (by its name or appProtocol): it carries no marks, so all of it stays with the original pods`);
        }
      }

      // Checked before anything exists in the cluster; a generated value is named after the session's owner.
      const given = usage(api, () => parseMark(api.router, args.versionMark ? String(args.versionMark) : undefined, "dev"));
      if (mode === "manual") manualLabels(api, service, given.generated ? { ...given, value: "generated" } : given);
      const session = await api.startSession({ kube, mode: mode === "auto" ? "mesh" : "mesh-manual", target: `svc/${serviceName}`, global });
      const mark: Mark = given.generated ? { ...given, value: generateMarkValue(session.owner) } : given;
      const shadowLabels = mode === "manual" ? manualLabels(api, service, mark) : undefined;
      let reason = "failed to start";
      try {
        const shadow = await api.startShadow(session, {
          role: developerRole(serviceName),
          ports: exposed.map((e) => ({ port: e.shadowPort, ...(mode === "manual" && typeof e.port.targetPort === "string" ? { name: e.port.targetPort } : {}) })),
          ...(shadowLabels ? { labels: shadowLabels } : {}),
        });
        for (const e of exposed) {
          const local = { host: "127.0.0.1", port: e.local };
          const via = `mesh svc/${serviceName} :${e.shadowPort}`;
          await shadow.tunnel.addRemoteListener(e.shadowPort, local.host, local.port, (origin) =>
            api.ui.tap({ sessionId: session.id, via, local, remote: `${origin.address}:${origin.port}`, markHeader: mark.header }),
          );
        }

        let keeper: RouteKeeper | undefined;
        if (mode === "auto") keeper = await joinAndRoute(api, { kube, namespace, session, service, plan, exposed, shadow, mark, pathPrefix });
        else {
          await waitForEndpoints(
            { kube, api, namespace, timeoutMs: (global.podCreationTimeout ?? 60) * 1000 },
            serviceName,
            (pods) => pods.includes(shadow.podName),
            `your shadow to become an endpoint of service ${namespace}/${serviceName}`,
          );
        }
        report(api, { mode, namespace, serviceName, sessionId: session.id, mark, exposed, shadow, pathPrefix });
        reason = await session.ended;
        keeper?.close();
      } finally {
        await session.close(reason);
      }
    },
  });

export default mesh;


function usage<T>(api: PluginApi, fn: () => T): T {
  const { KtctlError, ExitCode } = api.errors;
  try {
    return fn();
  } catch (error) {
    if (error instanceof api.router.ContractError) throw new KtctlError(error.message, ExitCode.usage);
    if (error instanceof PortPlanError) throw new KtctlError(error.message, ExitCode.usage, error.hint);
    throw error;
  }
}

async function getService(api: PluginApi, kube: Kube, namespace: string, name: string): Promise<any> {
  const { KtctlError, ExitCode } = api.errors;
  const service = await kube.request<any>("GET", servicePath(namespace, name));
  if (service.spec?.type === "ExternalName") throw new KtctlError(`service ${namespace}/${name} is an ExternalName service: it has no pods to route between`, ExitCode.usage);
  if (!meshRecordOf(api, service) && Object.keys(service.spec?.selector ?? {}).length === 0) {
    throw new KtctlError(`service ${namespace}/${name} has no selector, so there are no pods to route between`, ExitCode.usage);
  }
  return service;
}

/** The mesh's ports: as the running router serves them, or worked out from the service and its pods. */
async function portPlan(api: PluginApi, kube: Kube, namespace: string, service: any): Promise<MeshPort[]> {
  const name: string = service.metadata.name;
  if (meshRecordOf(api, service)) {
    const config = configOfRouter(api, await readRouterDeployment(kube, namespace, routerName(name)));
    if (config) return planFromRouterConfig(config.listeners, service);
  }
  const selector = meshRecordOf(api, service)?.selector ?? service.spec.selector;
  const query = new URLSearchParams({ labelSelector: Object.entries(selector).map(([k, v]) => `${k}=${v}`).join(",") });
  const pods = await kube.request<any>("GET", `/api/v1/namespaces/${namespace}/pods?${query}`);
  return usage(api, () => planMeshPorts(api, service, pods.items ?? []));
}

function checkManualPorts(api: PluginApi, exposed: ExposedPort[]): void {
  const { KtctlError, ExitCode } = api.errors;
  for (const e of exposed) {
    if (e.shadowPort !== e.port.routerPort) {
      throw new KtctlError(
        `manual mode needs your shadow to listen on target port ${e.port.routerPort} itself, which an unprivileged shadow cannot`,
        ExitCode.usage,
        "use --mode auto, or a target port above 1023 other than 2222",
      );
    }
  }
}

/** Manual mode: the shadow joins the service's pods (its selector labels) and carries the mark as a version label. */
function manualLabels(api: PluginApi, service: any, mark: Mark): Record<string, string> {
  const { KtctlError, ExitCode } = api.errors;
  const key = mark.header.toLowerCase();
  if (!/^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$/.test(key) || key.length > 63) throw new KtctlError(`"${mark.header}" cannot be a label key`, ExitCode.usage);
  if (!/^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(mark.value) || mark.value.length > 63) {
    throw new KtctlError(`"${mark.value}" cannot be a label value (manual mode puts it on your shadow as ${key}=...)`, ExitCode.usage);
  }
  return { ...service.spec.selector, [key]: mark.value };
}

interface JoinContext {
  kube: Kube;
  namespace: string;
  session: Session;
  service: any;
  plan: MeshPort[];
  exposed: ExposedPort[];
  shadow: Shadow;
  mark: Mark;
  pathPrefix?: string;
}

/** Joins (or creates) the mesh as a journaled step, then puts this developer's route on the router. */
async function joinAndRoute(api: PluginApi, ctx: JoinContext): Promise<RouteKeeper> {
  const { KtctlError, ExitCode } = api.errors;
  const { kube, namespace, session, service, plan } = ctx;
  const name: string = service.metadata.name;
  const log: MeshLog = api.logger;
  const live = sessionLiveness(api, kube, namespace);
  const timeoutMs = (session.global.podCreationTimeout ?? 60) * 1000;
  // The ports a router made by this session would use; a mesh that exists already says its own.
  const ownPorts = routerOwnPorts(api, plan);
  const setup = { kube, api, namespace, sessionId: session.id, global: session.global, labels: session.labels, plan, ownPorts, live, log, timeoutMs };

  const undo: MeshRecord = {
    apiVersion: "v1",
    kind: "Service",
    namespace,
    name,
    router: routerName(name),
    companion: companionName(name),
    adminPort: ownPorts.admin,
  };
  const { record, created } = await session.step(
    { kind: MESH_LEAVE_KIND, describe: `leave the mesh of service ${namespace}/${name}`, undo: { ...undo } },
    () =>
      joinMesh({
        kube,
        api,
        namespace,
        service: name,
        sessionId: session.id,
        log,
        create: (current) => createMesh(setup, current),
        // A companion in the way may be going with a mesh being taken down; a router in the way is
        // only ever made after its companion, by a session that is still creating the mesh.
        waitForMesh: (conflict) => waitForMeshOn(setup, name, conflict.object.kind === "Service" ? conflict.object.name : undefined),
      }),
  );
  api.logger.debug(created ? `created the mesh of ${namespace}/${name}` : `joined the mesh of ${namespace}/${name}`);

  const route = (): Route => ({
    id: session.id,
    owner: session.owner,
    header: ctx.mark.header,
    value: ctx.mark.value,
    ...(ctx.pathPrefix ? { pathPrefix: ctx.pathPrefix } : {}),
    upstreams: Object.fromEntries(ctx.exposed.map((e) => [String(e.port.routerPort), { host: ctx.shadow.podIP, port: e.shadowPort }])),
  });
  const keeper = new RouteKeeper(kube, namespace, routerSelector(api, name), record.adminPort, route, log, (conflict) => {
    api.logger.error(`${conflict.message}; ending this session`);
    void session.close("mark taken by another session");
  });
  try {
    await waitForRouterPod(setup, name);
    await keeper.pushAll();
    keeper.follow();
    // The service's traffic goes through the router once its endpoints are the router pods.
    const routerPods = `${routerName(name)}-`;
    await waitForEndpoints(setup, name, (pods) => pods.length > 0 && pods.every((p) => p.startsWith(routerPods)), `service ${namespace}/${name} to point at its mesh router`);
  } catch (error) {
    keeper.close();
    if (error instanceof RouteConflictError) throw new KtctlError(error.message, ExitCode.conflict, "pick another mark with --versionMark");
    throw error;
  }

  // A replaced shadow pod has a new address: the route must follow it.
  let routedTo = ctx.shadow.podIP;
  ctx.shadow.tunnel.onStateChange((state) => {
    if (state !== "connected" || ctx.shadow.podIP === routedTo) return;
    routedTo = ctx.shadow.podIP;
    api.logger.info(`your shadow moved to ${routedTo}; updating the route`);
    void keeper.refresh();
  });
  watchMembership(api, kube, namespace, name, session);
  publishRoutesPanel(api, { kube, namespace, service: name, routerPods: routerSelector(api, name), adminPort: record.adminPort, session });
  return keeper;
}

/** Ends the session if the mesh disappears under it (restored by hand, or by `clean` that judged this session gone). */
function watchMembership(api: PluginApi, kube: Kube, namespace: string, name: string, session: Session): void {
  const stop = new AbortController();
  void session.ended.then(() => stop.abort());
  void kube
    .watch(
      `/api/v1/namespaces/${namespace}/services`,
      { fieldSelector: `metadata.name=${name}` },
      (type, service) => {
        if (stop.signal.aborted) return;
        const gone = type === "DELETED" || !meshRecordOf(api, service) || !participantsOf(api, service).includes(session.id);
        if (!gone) return;
        stop.abort();
        api.logger.warn(`service ${namespace}/${name} is no longer meshed for this session; stopping`);
        void session.close("the mesh was removed");
      },
      stop.signal,
    )
    .catch((error: Error) => api.logger.debug(`stopped watching service ${namespace}/${name}: ${error.message}`));
}

function report(
  api: PluginApi,
  input: { mode: Mode; namespace: string; serviceName: string; sessionId: string; mark: Mark; exposed: ExposedPort[]; shadow: Shadow; pathPrefix?: string },
): void {
  const { mode, namespace, serviceName, mark, exposed, shadow, pathPrefix } = input;
  const first = exposed[0]!;
  if (mode === "auto") {
    api.logger.success(
      `Meshed service ${namespace}/${serviceName}: requests with header "${mark.header}: ${mark.value}"${pathPrefix ? ` under ${pathPrefix}` : ""} come to this laptop (session ${input.sessionId})`,
    );
  } else {
    api.logger.success(
      `Your shadow ${shadow.podName} joined the pods of service ${namespace}/${serviceName} with label ${mark.header.toLowerCase()}=${mark.value}; ` +
        `route to that subset in your service mesh (session ${input.sessionId})`,
    );
  }
  for (const e of exposed) api.logger.info(`  port ${describeMeshPort(e.port)} -> localhost:${e.local}`);
  api.logger.log(`MARK ${mark.header}: ${mark.value}`);
  api.logger.log(`Try it from a pod in ${namespace}: ${curlLine(mark, serviceName, namespace, first.port.servicePort, pathPrefix ?? "/")}`);
  api.logger.log(`gRPC: send metadata ${mark.header.toLowerCase()}=${mark.value}`);
  api.logger.info("Press Ctrl-C to stop; everything ktctl changed is restored on exit.");
}
