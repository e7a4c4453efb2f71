// The session machinery as the host wires it: one undo registry per process, shared by the sessions
// it starts, by `clean`, `status` and the watchdog, so a plugin's undo kinds work in all of them.

import type { ConsolaInstance } from "consola";
import type { SessionOptions, SessionsApi } from "../plugin-api.ts";
import { executePlan, planClean, renderPlan } from "./clean.ts";
import { ktctlHome } from "./journal.ts";
import { startSession, type LocalSession, type StartSessionOptions } from "./session.ts";
import { listSessions } from "./status.ts";
import { createUndoRegistry, type UndoRegistry } from "./undo.ts";
import { runWatchdog, type WatchdogHost } from "./watchdog.ts";

export interface SessionHost {
  registry: UndoRegistry;
  home: string;
  startSession(options: SessionOptions & Partial<StartSessionOptions>): Promise<LocalSession>;
  /** The `sessions` member of PluginApi. */
  sessions: SessionsApi;
  /** Body of the hidden `__watchdog` command. */
  runWatchdog(rawArgs: readonly string[], host: WatchdogHost): Promise<number>;
}

export function createSessionHost(deps: { logger: ConsolaInstance; home?: string; registry?: UndoRegistry }): SessionHost {
  const registry = deps.registry ?? createUndoRegistry();
  const home = deps.home ?? ktctlHome();
  const ctx = { home, registry, logger: deps.logger };
  return {
    registry,
    home,
    startSession: (options) => startSession({ logger: deps.logger, registry, home, ...options }),
    sessions: {
      list: (kube, options = {}) => listSessions(kube, options, ctx),
      planClean: (kube, options = {}) => planClean(kube, options, ctx),
      executePlan: (plan, kube) => executePlan(plan, kube, ctx),
      renderPlan,
      registerUndoKind: (kind, definition) => registry.register(kind, definition),
    },
    runWatchdog: (rawArgs, host) => runWatchdog(rawArgs, host, { home, registry }),
  };
}

export * from "./labels.ts";
export { createUndoRegistry, type UndoRegistry, type UndoKind } from "./undo.ts";
export { deleteObjectStep, patchObjectStep, scaleStep, restoreFileStep, runStep } from "./steps.ts";
export { startSession, type LocalSession, type StartSessionOptions } from "./session.ts";
export { runWatchdog, watchdogArgv, WATCHDOG_COMMAND } from "./watchdog.ts";
export type { SessionInfo, StatusOptions } from "./status.ts";
export type { CleanPlan, CleanOptions, CleanResult } from "./clean.ts";
