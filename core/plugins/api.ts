// The PluginApi object handed to every plugin. Heavy parts (kube client, sessions, shadow) are
// imported on first use so that `ktctl --help` and every command that does not need the cluster
// start without loading them.

import { defineCommand } from "citty";
import type { ConsolaInstance } from "consola";
import type { EffectiveConfig } from "../config/load.ts";
import { ExitCode, KtctlError } from "../errors.ts";
import { argsFor, globalOptions, GLOBAL_SCOPE } from "../options.ts";
import { PLUGIN_API_VERSION, type GlobalOptions, type Kube, type PluginApi, type SessionsApi } from "../plugin-api.ts";
import { isLocalPortListening, parsePorts } from "../ports.ts";
import { parseTarget } from "../targets.ts";
import { selfArgv } from "../self.ts";
import type { SessionHost } from "../session/index.ts";
import { createUndoRegistry } from "../session/undo.ts";
import { errorText, httpStatus } from "../kube/objects.ts";
import { SCHEME, STEP_BUILDERS } from "./scheme-api.ts";
import { servingMembers } from "./serving-api.ts";
import { proxyInstructions, proxyUsage } from "../laptop/proxy-usage.ts";
import { carry } from "../laptop/carry.ts";
import { ROUTER_API, SHADOW_PODS_API } from "./router-api.ts";
import { sharedObjectsApi } from "./shared-api.ts";
import { VERSION } from "../protocol/version.ts";
import { createUiMembers } from "../ui/api.ts";

export interface PluginApiDeps {
  config: EffectiveConfig;
  logger: ConsolaInstance;
}

/** The plugins' API, and what only the core uses: the session machinery itself (for the watchdog). */
export interface HostApi {
  api: PluginApi;
  sessionHost(): Promise<SessionHost>;
}

async function kube(global: GlobalOptions): Promise<Kube> {
  const { connectKube } = await import("../kube/index.ts");
  return connectKube({ kubeconfig: global.kubeconfig, context: global.context, namespace: global.namespace });
}

/** When the pages only a start needed go back to the kernel (see startPagesReleaser). */
interface StartPagesReleaser {
  /** A session is up: release once the process has been idle a whole interval. */
  arm(): void;
  /** A shadow is starting: its wait is no idle time (an image pull can take longer than the interval). */
  hold(): void;
  /** The shadow start is over (up or failed): the idle interval starts again from now. */
  resume(): void;
}

/**
 * A mode with a session runs until Ctrl-C: the pages only its start needed go back to the kernel
 * (core/protocol/start-pages.ts) once the process is idle, so not in the middle of the traffic a
 * user starts right away, nor while a shadow starts (what the tunnel's start loads would stay
 * resident). Once per process. Armed by the first session, not the first shadow: a forward
 * straight to the pods has none.
 */
function startPagesReleaser(logger: ConsolaInstance): StartPagesReleaser {
  let wanted = false;
  let released = false;
  let holds = 0;
  /** An idle wait is pending (its module may still be loading). */
  let waiting = false;
  /** Bumped by every hold: a wait whose module loads after it is void. */
  let generation = 0;
  let cancel: (() => void) | undefined;
  const schedule = () => {
    if (!wanted || released || holds > 0 || waiting) return;
    waiting = true;
    const mine = generation;
    void import("../protocol/start-pages.ts").then(({ whenIdle, releaseStartPages }) => {
      if (mine !== generation) return;
      cancel = whenIdle(async () => {
        released = true;
        cancel = undefined;
        const result = await releaseStartPages().catch(() => undefined);
        if (result) logger.debug(`start pages released: resident ${Math.round(result.beforeKiB / 1024)} -> ${Math.round(result.afterKiB / 1024)} MiB`);
      });
    });
  };
  return {
    arm() {
      wanted = true;
      schedule();
    },
    hold() {
      holds++;
      generation++;
      waiting = false;
      cancel?.();
      cancel = undefined;
    },
    resume() {
      holds--;
      schedule();
    },
  };
}

export function createHostApi({ config, logger }: PluginApiDeps): HostApi {
  // One undo registry per process, made now: plugins register their undo kinds in setup(), before
  // any session exists; the session machinery that uses it loads on first use.
  const registry = createUndoRegistry();
  let host: Promise<SessionHost> | undefined;
  let loadedHost: SessionHost | undefined;
  const sessionHost = () =>
    (host ??= import("../session/index.ts").then((m) => (loadedHost = m.createSessionHost({ logger, registry }))));

  const sessions: SessionsApi = {
    list: async (k, options) => (await sessionHost()).sessions.list(k, options),
    planClean: async (k, options) => (await sessionHost()).sessions.planClean(k, options),
    executePlan: async (plan, k) => (await sessionHost()).sessions.executePlan(plan, k),
    renderPlan: (plan) => {
      // A plan only comes from planClean, which has loaded the session machinery already.
      if (!loadedHost) throw new KtctlError("renderPlan needs a plan made by sessions.planClean", ExitCode.failure);
      return loadedHost.sessions.renderPlan(plan);
    },
    registerUndoKind: (kind, definition) => registry.register(kind, definition),
  };

  const { ui, reportShadow } = createUiMembers(logger);
  const startPages = startPagesReleaser(logger);
  const api: PluginApi = {
    version: VERSION,
    apiVersion: PLUGIN_API_VERSION,
    defineCommand,
    globalArgs: argsFor(GLOBAL_SCOPE, config.defaultsFor(GLOBAL_SCOPE)),
    logger,
    errors: { KtctlError, ExitCode, httpStatus, text: errorText },
    scheme: SCHEME,
    steps: STEP_BUILDERS,
    config: { get: (key) => config.get(key), all: () => config.all() },
    globalOptions: (args) => globalOptions(args),
    kube,
    startSession: async (options) => {
      const session = await (await sessionHost()).startSession(options);
      startPages.arm();
      return session;
    },
    beginSession: (options) => {
      const session = api.startSession(options);
      session.catch(() => undefined); // reported by whoever awaits it, after any refusal
      return {
        session,
        abandon: async (refusal) => {
          const started = await session.catch(() => undefined);
          await started?.close(`${options.mode} refused: ${errorText(refusal)}`).catch((error) => logger.warn(errorText(error)));
        },
      };
    },
    sessions,
    startShadow: async (session, options) => {
      startPages.hold();
      try {
        return reportShadow(session, await (await import("../shadow/index.ts")).startShadow(session, options, { logger }));
      } finally {
        startPages.resume();
      }
    },
    forwardLocal: async (options) => (await import("../forwarding/local-forward.ts")).forwardLocal(options),
    proxy: {
      start: async (options) => (await import("../laptop/proxy-server.ts")).startProxyServer(options),
      usage: proxyUsage,
      instructions: proxyInstructions,
    },
    // Imported up front (it is small): a lazy import would wire the sockets a tick late, and a
    // caller that resumes the socket right after calling carry would lose the first bytes.
    carry,
    parsePorts: (spec) => parsePorts(spec),
    parseTarget: (text) => parseTarget(text),
    isLocalPortListening: (port, host) => isLocalPortListening(port, host),
    ...servingMembers(() => api),
    router: ROUTER_API,
    shadowPods: SHADOW_PODS_API,
    shared: sharedObjectsApi(sessions),
    ui,
    self: { argv: (args) => selfArgv(args) },
  };
  return { api, sessionHost };
}
