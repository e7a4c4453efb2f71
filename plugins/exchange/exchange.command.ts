// `ktctl exchange TARGET --expose LOCAL[:REMOTE][,...]`: every request that reaches the target's
// service inside the cluster is served by the process on this machine's LOCAL port.
//   selector mode: the service's selector is pointed at the shadow (the original pods keep running);
//   scale mode: the workload goes to 0 and the shadow carries its pod labels.
// Every change is a journaled step whose undo restores the object exactly, and the object carries
// its own undo record, so `clean`, `recover` and the next session can restore it without a journal.

import type { CommandFactory, Kube, PluginApi, ServingShadow, Session } from "../../core/plugin-api.ts";
import { readEnvironment, writeEnvFile } from "./env-file.ts";
import { PortPlanError, planShadowPorts, type ShadowPortPlan } from "./ports.ts";
import { declaredContainerPorts, listObjects, podTemplateLabels, resolveTarget, selects, type ResolvedTarget } from "./target.ts";

type Mode = "selector" | "scale";

/** Upper bound on waiting for the endpoints to show the shadow only (kube-proxy follows them). */
const ENDPOINTS_WAIT_MS = 30_000;
/** Upper bound on waiting for the endpoints, then kube-proxy, to let go of the shadow before it is removed. */
const DRAIN_WAIT_MS = 10_000;
/**
 * The shadow is drained when no connection has reached it for this long after the endpoints let
 * go of it: kube-proxy rewrites its rules at most about once a second (its default minSyncPeriod).
 */
const DRAIN_QUIET_MS = 1_200;

const servicesPath = (kube: Kube) => `/api/v1/namespaces/${encodeURIComponent(kube.namespace)}/services`;
const servicePath = (kube: Kube, name: string) => `${servicesPath(kube)}/${encodeURIComponent(name)}`;
const deploymentPath = (kube: Kube, name: string) => `/apis/apps/v1/namespaces/${encodeURIComponent(kube.namespace)}/deployments/${encodeURIComponent(name)}`;
const podPath = (kube: Kube, name: string) => `/api/v1/namespaces/${encodeURIComponent(kube.namespace)}/pods/${encodeURIComponent(name)}`;

const formatSelector = (selector: Record<string, string> | undefined) =>
  Object.entries(selector ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(",") || "(none)";

/** The merge patch that turns selector `from` into exactly `to` (a plain merge would keep old keys). */
export function replaceSelectorPatch(from: Record<string, string> | undefined, to: Record<string, string>): Record<string, string | null> {
  const patch: Record<string, string | null> = {};
  for (const key of Object.keys(from ?? {})) if (!(key in to)) patch[key] = null;
  return Object.assign(patch, to);
}

/** Reads the target and checks it suits the mode; returns the services the session takes over. */
async function prepareTarget(api: PluginApi, kube: Kube, targetText: string, mode: Mode) {
  const { KtctlError, ExitCode } = api.errors;
  const namespace = kube.namespace;
  const target = await resolveTarget(kube, api.parseTarget(targetText), api);
  let services = target.services;
  if (mode === "selector") {
    const bare = services.filter((s) => !Object.keys(s.spec?.selector ?? {}).length);
    if (bare.length) {
      throw new KtctlError(
        `service ${namespace}/${bare[0].metadata.name} has no selector (its endpoints are managed by hand): ktctl cannot point it at the shadow`,
        ExitCode.usage,
      );
    }
  } else {
    if (target.otherWorkloads.length) {
      throw new KtctlError(
        `service ${namespace}/${target.ref.name} selects the pods of several deployments (${target.otherWorkloads.join(", ")}); scale mode needs one`,
        ExitCode.usage,
        "name it: ktctl exchange deployment/NAME --mode scale",
      );
    }
    if (!target.workload) {
      throw new KtctlError(`${target.label} is not backed by a deployment: scale mode has nothing to scale`, ExitCode.usage, "use --mode selector");
    }
    // The shadow carries the workload's pod labels, so it takes over EVERY service selecting them.
    const labels = podTemplateLabels(target.workload);
    const all = await listObjects(kube, servicesPath(kube));
    const names = all.filter((s) => s.spec?.type !== "ExternalName" && selects(s.spec?.selector, labels)).map((s) => s.metadata.name as string);
    const extra = names.filter((n) => !services.some((s) => s.metadata.name === n));
    if (extra.length) {
      api.logger.warn(`scale mode also takes over service(s) ${extra.join(", ")}: they select the same pods`);
      services = [...services, ...all.filter((s) => extra.includes(s.metadata.name))];
    }
  }
  return { target, services };
}

function planPorts(api: PluginApi, target: ResolvedTarget, services: any[], mappings: { local: number; remote: number }[]): ShadowPortPlan {
  try {
    return planShadowPorts(
      services.map((s) => ({ name: s.metadata.name, ports: s.spec?.ports ?? [] })),
      mappings,
      declaredContainerPorts(target),
    );
  } catch (error) {
    if (error instanceof PortPlanError) throw new api.errors.KtctlError(error.message, api.errors.ExitCode.usage, error.hint);
    throw error;
  }
}

const exchange: CommandFactory = (api) =>
  api.defineCommand({
    meta: {
      name: "exchange",
      description: "Serve a service's in-cluster traffic from this machine (TARGET: NAME, svc/NAME, deployment/NAME or pod/NAME)",
    },
    args: {
      ...api.globalArgs,
      target: { type: "positional", description: "NAME, svc/NAME, deployment/NAME or pod/NAME", required: true },
      expose: { type: "string", valueHint: "LOCAL[:REMOTE],...", description: "LOCAL[:REMOTE],... : REMOTE is a port of the service, LOCAL a port on this machine", required: true },
      mode: { type: "enum", options: ["selector", "scale"], default: "selector", description: "selector: point the service at the shadow; scale: scale the workload to 0" },
      recoverWaitTime: { type: "string", valueHint: "seconds", default: "120", description: "Scale mode: seconds to wait for the original replicas to be ready again on exit" },
      localHost: { type: "string", valueHint: "address", default: "127.0.0.1", description: "Address of the local process" },
      waitLocal: { type: "boolean", default: false, description: "Wait until something listens on the LOCAL ports instead of failing" },
      waitLocalTime: { type: "string", valueHint: "seconds", default: "0", description: "With --waitLocal: give up after this many seconds (0: never)" },
      envFile: { type: "string", valueHint: "file", description: "Write the target container's environment to this file (dotenv; JSON for *.json)" },
      container: { type: "string", valueHint: "name", description: "Container whose environment --envFile writes (default: the one serving the exposed ports)" },
      connect: { type: "boolean", default: false, description: "Let the local process reach the cluster too: a SOCKS5/HTTP proxy through this session (its settings go into --envFile)" },
      proxyPort: { type: "string", valueHint: "port", default: "0", description: "With --connect: the proxy's loopback port (0: a free one)" },
    },
    async run({ args }) {
      const { KtctlError, ExitCode } = api.errors;
      const global = api.globalOptions(args);
      const mode = String(args.mode) as Mode;
      const recoverWaitSeconds = Number(args.recoverWaitTime);
      const waitLocalSeconds = Number(args.waitLocalTime);
      if (!Number.isFinite(recoverWaitSeconds) || recoverWaitSeconds < 0) throw new KtctlError(`invalid recoverWaitTime "${args.recoverWaitTime}": expected seconds`, ExitCode.usage);
      if (!Number.isFinite(waitLocalSeconds) || waitLocalSeconds < 0) throw new KtctlError(`invalid waitLocalTime "${args.waitLocalTime}": expected seconds`, ExitCode.usage);
      const localHost = String(args.localHost);
      const mappings = api.parsePorts(String(args.expose));
      const started = performance.now();

      const kube = await api.kube(global);
      const namespace = kube.namespace;
      let { target, services } = await prepareTarget(api, kube, String(args.target), mode);
      const plan = planPorts(api, target, services, mappings);
      if (plan.unexposed.length) api.logger.warn(`not exposed, refused while exchanged: ${plan.unexposed.join(", ")}`);

      const proxyPort = Number(args.proxyPort);
      if (!Number.isInteger(proxyPort) || proxyPort < 0 || proxyPort > 65535) throw new KtctlError(`invalid proxyPort "${args.proxyPort}"`, ExitCode.usage);
      const connectBack = args.connect ? await api.serving.connectBack(proxyPort) : undefined;
      const session = await (async () => {
        try {
          // The environment comes first: with --waitLocal the local process is started with it.
          if (args.envFile) await writeTargetEnv(api, kube, target, plan, String(args.envFile), args.container ? String(args.container) : undefined, connectBack?.env ?? []);
          await api.serving.requireLocalListeners(localHost, mappings.map((m) => m.local), { enabled: Boolean(args.waitLocal), seconds: waitLocalSeconds, flag: "--waitLocal" });
          // Nobody else may hold these objects; a dead holder is cleaned first (then read them again).
          const held = mode === "scale" ? [...services, target.workload] : services;
          if (await api.ownership.ensureNotHeld(kube, held)) {
            ({ target, services } = await prepareTarget(api, kube, String(args.target), mode));
          }
          // The mode handles the signals: traffic goes back before the session's undo runs.
          return await api.startSession({ kube, mode: "exchange", target: target.label, global, handleSignals: false });
        } catch (error) {
          connectBack?.fail(error);
          await connectBack?.close();
          throw error;
        }
      })();

      const stop = api.serving.stopSignals();
      const role = `exchange-${target.ref.name}`;
      const workload = target.workload;
      const originalReplicas: number = workload?.spec?.replicas ?? 1;

      let serving: ServingShadow | undefined;
      const shadow = await api.serving.setUp(session, stop, async () => {
        if (mode === "scale") {
          // The lock: the service carries this session's mark while the workload is scaled away.
          for (const service of services) {
            const { spec, marks } = api.steps.patchObject(session.id, service, [], `mark service ${namespace}/${service.metadata.name} as exchanged`);
            await session.step(spec, () => kube.mergePatch(servicePath(kube, service.metadata.name), { metadata: { ...marks, resourceVersion: service.metadata.resourceVersion } }));
          }
        }
        serving = await api.serving.startShadow(session, {
          role,
          labels: mode === "scale" ? podTemplateLabels(workload) : undefined,
          ports: plan.listeners,
          localHost,
          describe: `exchange ${target.label}`,
        });
        const shadow = serving.shadow;
        if (mode === "selector") {
          const selector = api.scheme.shadowSelector(session.id, role);
          for (const service of services) {
            const name = service.metadata.name;
            const { spec, marks } = api.steps.patchObject(session.id, service, [["spec", "selector"]], `point service ${namespace}/${name} at the shadow (selector was ${formatSelector(service.spec.selector)})`);
            await session.step(spec, () =>
              kube.mergePatch(
                servicePath(kube, name),
                // resourceVersion: if anyone changed the service since it was checked, nothing is patched.
                { metadata: { ...marks, resourceVersion: service.metadata.resourceVersion }, spec: { selector: replaceSelectorPatch(service.spec.selector, selector) } },
              ),
            );
          }
        } else {
          // The deployment was read before the shadow started: its controller bumps resourceVersion
          // with every status update meanwhile (a rollout settling), which would fail the guarded
          // patch as a conflict. Read it again right before scaling; retry a status race.
          const path = deploymentPath(kube, workload.metadata.name);
          for (let attempt = 1; ; attempt++) {
            const current = (await kube.get<any>(path)) ?? workload;
            const holder = api.scheme.markedBy(current);
            if (holder && holder !== session.id) throw new KtctlError(`deployment ${namespace}/${workload.metadata.name} is taken by session ${holder}`, ExitCode.conflict);
            const { spec, marks } = api.steps.scale(session.id, { ...current, spec: { ...current.spec, replicas: originalReplicas } }, `scale deployment ${namespace}/${workload.metadata.name} to 0 (from ${originalReplicas})`);
            try {
              await session.step(spec, () => kube.mergePatch(path, { metadata: { ...marks, resourceVersion: current.metadata.resourceVersion }, spec: { replicas: 0 } }));
              break;
            } catch (error) {
              if (api.errors.httpStatus(error) !== 409 || attempt >= 3) throw error;
              api.logger.debug(`deployment ${namespace}/${workload.metadata.name} changed while scaling (${api.errors.text(error)}); reading it again`);
            }
          }
        }
        return shadow;
      }).catch(async (error) => {
        connectBack?.fail(error);
        await connectBack?.close();
        await serving?.close();
        throw error;
      });
      connectBack?.attach(shadow);

      // Ctrl-C while the endpoints switch must not wait for them.
      const switched = await Promise.race([
        Promise.all(services.map((s) => api.waits.forEndpoints(kube, s.metadata.name, api.waits.exactly(() => [shadow.podIP]), { timeoutMs: ENDPOINTS_WAIT_MS }))),
        stop.received.then(() => services.map(() => true)),
      ]);
      const late = services.filter((_, i) => !switched[i]).map((s) => s.metadata.name);
      if (late.length) api.logger.warn(`the endpoints of ${late.join(", ")} do not show the shadow alone yet; requests may still reach the original pods`);
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      for (const listener of plan.listeners) {
        api.logger.success(`${listener.serves.join(", ")} in ${namespace} -> ${localHost}:${listener.localPort} on this machine`);
      }
      if (connectBack) {
        api.logger.success(`the local process reaches the cluster through the proxy on ${connectBack.proxy.host}:${connectBack.proxy.port}:`);
        for (const line of connectBack.instructions) api.logger.log(`  ${line}`);
      }
      api.logger.info(`exchanged ${target.label} in ${seconds}s (${mode} mode, session ${session.id}); Ctrl-C restores it`);

      const reason = await Promise.race([session.ended, stop.received.then((s) => `signal ${s}`), api.serving.tunnelClosed(shadow)]);
      await connectBack?.close();
      await finish(api, kube, session, serving!, {
        mode,
        services,
        shadowSelector: api.scheme.shadowSelector(session.id, role),
        workload,
        originalReplicas,
        recoverWaitSeconds,
        reason,
        lost: !stop.signal && !reason.startsWith("tunnel"),
      });
      api.serving.exitForSignal(stop);
    },
  });

/** Writes the target container's environment (plus the proxy settings of --connect) to `path`. */
async function writeTargetEnv(api: PluginApi, kube: Kube, target: ResolvedTarget, plan: ShadowPortPlan, path: string, container: string | undefined, extra: [string, string][]) {
  const env = await readEnvironment(api, kube, target, { container, targetPorts: plan.listeners.map((l) => l.shadowPort) });
  if ("missing" in env) throw new api.errors.KtctlError(`cannot write ${path}: ${env.missing}`, api.errors.ExitCode.usage);
  const vars = new Map(env.result.vars);
  for (const [k, v] of extra) vars.set(k, v);
  await writeEnvFile(path, { vars: [...vars], notes: env.result.notes }, `environment of ${target.label} (container ${env.containerName}) in ${target.namespace}, written by ktctl exchange`);
  for (const note of env.result.notes) api.logger.warn(`env: ${note}`);
  api.logger.success(`wrote ${vars.size} variables of container ${env.containerName} to ${path}`);
}

/**
 * Ends the session. Unless the session was lost, the traffic goes back BEFORE the shadow goes: the
 * original pods are selected again (scale mode: scaled back and ready), the endpoints let go of the
 * shadow, and only then does the session undo its steps (which find the objects as they were, and
 * take away the marks). Requests in flight meanwhile are still answered by the laptop.
 */
async function finish(
  api: PluginApi,
  kube: Kube,
  session: Session,
  serving: ServingShadow,
  end: { mode: Mode; services: any[]; shadowSelector: Record<string, string>; workload?: any; originalReplicas: number; recoverWaitSeconds: number; reason: string; lost: boolean },
) {
  const { mode, workload, originalReplicas } = end;
  const namespace = kube.namespace;
  const shadow = serving.shadow;
  let ready = false;
  const replicasReady = () =>
    api.waits.forReplicas(kube, workload.metadata.name, originalReplicas, {
      timeoutMs: end.recoverWaitSeconds * 1000,
      onProgress: (summary) => api.logger.info(`deployment ${namespace}/${workload?.metadata?.name}: ${summary}`),
    });
  if (!end.lost) {
    try {
      if (mode === "selector") {
        for (const service of end.services) {
          const patch = { spec: { selector: replaceSelectorPatch(end.shadowSelector, service.spec.selector) } };
          await kube.mergePatch(servicePath(kube, service.metadata.name), patch);
        }
      } else {
        await kube.mergePatch(deploymentPath(kube, workload.metadata.name), { spec: { replicas: originalReplicas } });
        ready = await replicasReady();
        // The shadow leaves the services by dropping the workload's labels (it is deleted next anyway).
        const labels = Object.fromEntries(Object.keys(podTemplateLabels(workload)).map((k) => [k, null]));
        await kube.mergePatch(podPath(kube, shadow.podName), { metadata: { labels } });
      }
      await Promise.all(end.services.map((s) => api.waits.forEndpoints(kube, s.metadata.name, api.waits.without(() => shadow.podIP), { timeoutMs: DRAIN_WAIT_MS })));
      // kube-proxy applies that a little later: connections landing on the shadow meanwhile are
      // still served; it goes once they stop.
      await serving.drained(DRAIN_QUIET_MS, DRAIN_WAIT_MS);
    } catch (error) {
      api.logger.warn(`could not hand the traffic back before removing the shadow: ${api.errors.text(error)}`);
    }
  }
  await session.close(end.reason);
  await serving.close();
  if (mode === "scale" && !ready) {
    // Everything is restored by now; waiting for the replicas is a courtesy. A user who may not
    // watch deployments is told, not failed after the fact.
    ready = await replicasReady().catch((error) => {
      api.logger.warn(`cannot wait for deployment ${namespace}/${workload.metadata.name} to be ready again: ${api.errors.text(error)}`);
      return true;
    });
  }
  if (mode === "scale" && !ready) {
    api.logger.warn(`deployment ${namespace}/${workload.metadata.name} is back to ${originalReplicas} replicas but not all ready after ${end.recoverWaitSeconds}s`);
  }
  api.logger.success(`restored (${end.reason}); the laptop served ${serving.connections()} connection(s) from the cluster`);
}

export default exchange;
