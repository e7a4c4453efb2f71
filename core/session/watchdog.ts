// The watchdog: a small process started beside every session that undoes it if ktctl dies without
// closing it (SIGKILL, a crash, the terminal closed under it). It learns of the death from its stdin:
// the parent holds the only write end of that pipe, so end-of-file means the parent is gone; a clean
// close writes "closed" first. No polling, no timers.

import { spawn } from "node:child_process";
import { closeSync, openSync, writeSync } from "node:fs";
import { selfArgv, type SelfOrigin } from "../self.ts";
import type { ConsolaInstance } from "consola";
import type { GlobalOptions, Kube } from "../plugin-api.ts";
import { deleteLease } from "./lease.ts";
import { ktctlHome, pendingSteps, readLocalJournal, removeLocalJournal, watchdogLogPath, writeLocalJournal, type Journal } from "./journal.ts";
import { leaseName, isSessionId } from "./labels.ts";
import { createUndoRegistry, type UndoRegistry } from "./undo.ts";
import { rm } from "node:fs/promises";
import { releaseStartPages } from "../protocol/start-pages.ts";

/** The hidden command that reaches runWatchdog. */
export const WATCHDOG_COMMAND = "__watchdog";
export const CLOSED_LINE = "closed";

export { isCompiledBinary } from "../self.ts";

/**
 * The command line that starts the watchdog of `sessionId` from this very program: the compiled
 * binary is `<binary> __watchdog <id>`; from source it is `<bun> <script> __watchdog <id>`.
 */
export function watchdogArgv(sessionId: string, from?: SelfOrigin): string[] {
  return selfArgv([WATCHDOG_COMMAND, sessionId], from);
}

export interface WatchdogHandle {
  pid: number;
  /**
   * Resolves once the watchdog has started, found the journal and ignores terminal signals; rejects
   * if it exits or stays silent for `armTimeoutMs`. Steps wait for it: a watchdog that cannot start
   * is found out before anything changes.
   */
  armed: Promise<void>;
  /** Tells the watchdog the session closed itself, so it exits without doing anything. */
  notifyClosed(): Promise<void>;
  onExit(listener: (code: number | null) => void): void;
}

/** The file descriptor on which the watchdog reports that it is armed, named to it in REPORT_FD_ENV. */
export const ARMED_FD = 3;
const REPORT_FD_ENV = "KTCTL_WATCHDOG_REPORT_FD";
export const ARMED_LINE = "armed";

/**
 * Starts the watchdog detached: its own session and process group (no terminal SIGINT/SIGHUP reach
 * it, and it survives the parent's SIGKILL), stdout/stderr into a log file rather than the parent's
 * terminal, and nothing of it keeps the parent's event loop alive.
 */
export function spawnWatchdog(argv: string[], options: { home: string; logPath: string; armTimeoutMs?: number }): WatchdogHandle {
  const [command, ...args] = argv;
  if (!command) throw new Error("empty watchdog command line");
  const log = openSync(options.logPath, "a", 0o600);
  let child;
  try {
    child = spawn(command, args, {
      detached: true,
      stdio: ["pipe", log, log, "pipe"],
      env: { ...process.env, KTCTL_HOME: options.home, [REPORT_FD_ENV]: String(ARMED_FD) },
      windowsHide: true,
    });
  } finally {
    closeSync(log);
  }
  if (!child.pid) throw new Error(`cannot start ${command}`);
  child.unref();
  const stdin = child.stdin!;
  // The pipes must not keep ktctl alive, and a watchdog that died must not crash ktctl with EPIPE.
  const unref = (stream: unknown) => (stream as { _handle?: { unref?: () => void } })?._handle?.unref?.();
  unref(stdin);
  stdin.on("error", () => undefined);
  let exited = false;
  child.on("exit", () => (exited = true));

  const report = child.stdio[ARMED_FD] as (NodeJS.ReadableStream & { destroy(): void }) | null | undefined;
  unref(report);
  const armed = new Promise<void>((resolve, reject) => {
    // A platform that cannot hand over the extra pipe: the watchdog runs, it just cannot say so.
    if (!report) return resolve();
    let text = "";
    const timer = setTimeout(() => settle(new Error(`it did not report ready within ${(options.armTimeoutMs ?? 15_000) / 1000}s`)), options.armTimeoutMs ?? 15_000);
    timer.unref?.();
    const settle = (error?: Error) => {
      clearTimeout(timer);
      report.removeAllListeners("data");
      report.on("error", () => undefined);
      report.destroy();
      if (error) reject(error);
      else resolve();
    };
    report.on("data", (chunk: Buffer | string) => {
      text += chunk.toString();
      if (text.split("\n").includes(ARMED_LINE)) settle();
    });
    report.on("end", () => settle(new Error(`it exited before it was ready (see ${options.logPath})`)));
    report.on("error", (error: Error) => settle(error));
  });
  armed.catch(() => undefined);
  return {
    pid: child.pid,
    armed,
    notifyClosed: () =>
      new Promise<void>((done) => {
        if (exited || stdin.destroyed) return done();
        stdin.write(`${CLOSED_LINE}\n`, () => {
          stdin.end();
          done();
        });
      }),
    onExit: (listener) => child.on("exit", (code) => listener(code)),
  };
}

export interface WatchdogOptions {
  home?: string;
  registry?: UndoRegistry;
  /** The pipe from the parent; process.stdin by default. */
  input?: NodeJS.ReadableStream;
}

/** What the watchdog needs of the host: a logger and a way to reconnect to the cluster. */
export interface WatchdogHost {
  logger: Pick<ConsolaInstance, "debug" | "info" | "warn" | "error">;
  kube(global: GlobalOptions): Promise<Kube>;
}

/** Tells the parent (through ARMED_FD, if it gave one) that the watchdog is in place. */
function reportArmed() {
  // Only a descriptor the parent named: started any other way, fd 3 may be anything.
  const fd = Number(process.env[REPORT_FD_ENV]);
  delete process.env[REPORT_FD_ENV];
  if (!Number.isInteger(fd) || fd < 3) return;
  try {
    writeSync(fd, `${ARMED_LINE}\n`);
    closeSync(fd);
  } catch {
    // The parent is gone already; end of input will say so.
  }
}

/** Resolves on "closed" (true) or on end of input without it (false). */
export function waitForParent(input: NodeJS.ReadableStream): Promise<boolean> {
  return new Promise((done) => {
    let buffer = "";
    const onData = (chunk: Buffer | string) => {
      buffer += chunk.toString();
      if (buffer.split("\n").some((line) => line.trim() === CLOSED_LINE)) finish(true);
    };
    const finish = (closed: boolean) => {
      input.off("data", onData);
      input.off("end", onEnd);
      input.off("error", onEnd);
      done(closed);
    };
    const onEnd = () => finish(false);
    input.on("data", onData);
    input.on("end", onEnd);
    input.on("error", onEnd);
    input.resume?.();
  });
}

/**
 * Undoes every pending step of a local journal, last first, writing progress back after each step;
 * when nothing is left, deletes the Lease and the journal. Returns the number of steps left.
 * Shared by the watchdog and `clean` (for sessions whose process is gone).
 */
export async function unwindLocalJournal(
  journal: Journal,
  ctx: { home: string; kube?: Kube; registry: UndoRegistry; logger?: Pick<ConsolaInstance, "debug" | "info" | "warn">; laptopOnly?: boolean },
): Promise<number> {
  const undoCtx = { kube: ctx.kube, sessionId: journal.meta.id, logger: ctx.logger };
  for (const step of pendingSteps(journal.steps)) {
    if (step.where === "cluster" && (ctx.laptopOnly || !ctx.kube)) continue;
    try {
      await ctx.registry.run(undoCtx, step);
      step.state = "undone";
      delete step.error;
      ctx.logger?.info(`undone: ${step.describe}`);
    } catch (error) {
      step.error = error instanceof Error ? error.message : String(error);
      ctx.logger?.warn(`could not undo "${step.describe}": ${step.error}`);
    }
    await writeLocalJournal(ctx.home, journal);
  }
  const left = pendingSteps(journal.steps).length;
  if (left === 0 && ctx.kube && !ctx.laptopOnly) {
    await deleteLease(ctx.kube, journal.meta.namespace, leaseName(journal.meta.id));
  }
  if (left === 0) await removeLocalJournal(ctx.home, journal.meta.id);
  return left;
}

/**
 * The watchdog's body: waits for the parent; if the parent died without closing, undoes the session
 * from the local journal with the parent's own kube target. Returns the process exit code.
 * `sessionOrArgs` is the session id or the hidden command's raw arguments (the first is the id).
 */
export async function runWatchdog(sessionOrArgs: string | readonly string[], host: WatchdogHost, options: WatchdogOptions = {}): Promise<number> {
  const sessionId = typeof sessionOrArgs === "string" ? sessionOrArgs : sessionOrArgs.find((a) => !a.startsWith("-") && a !== WATCHDOG_COMMAND);
  const logger = host.logger;
  if (!sessionId || !isSessionId(sessionId)) {
    logger.error(`watchdog: bad session id ${JSON.stringify(sessionId)}`);
    return (process.exitCode = 2);
  }
  // The terminal's signals are the parent's business: the parent closes on them, or dies and the
  // pipe tells us. (The own session from spawnWatchdog already keeps the terminal's away.)
  const ignore = () => undefined;
  process.on("SIGINT", ignore);
  process.on("SIGHUP", ignore);

  const home = options.home ?? ktctlHome();
  if (!(await readLocalJournal(home, sessionId))) {
    logger.error(`watchdog: no journal of session ${sessionId} in ${home}`);
    return (process.exitCode = 1);
  }
  reportArmed();
  // The watchdog waits, usually for the whole session: what it loaded to start goes back to the
  // kernel now (which also lets the session's own process give back the pages both touched). The
  // cluster client loads only for a restore, which is rare and not in a hurry.
  void releaseStartPages().catch(() => undefined);
  const closed = await waitForParent(options.input ?? process.stdin);
  const stamp = () => new Date().toISOString();
  if (closed) {
    logger.debug(`${stamp()} watchdog ${sessionId}: session closed normally`);
    return (process.exitCode = 0);
  }

  const journal = await readLocalJournal(home, sessionId);
  if (!journal) {
    logger.debug(`${stamp()} watchdog ${sessionId}: no journal left, nothing to undo`);
    return (process.exitCode = 0);
  }
  logger.info(`${stamp()} watchdog ${sessionId}: ktctl (pid ${journal.meta.pid}) died; undoing ${pendingSteps(journal.steps).length} step(s)`);

  // Always reconnect, with the parent's own kubeconfig and context: cluster steps need it, and the
  // Lease goes once everything is undone.
  let kube: Kube | undefined;
  try {
    const target = journal.meta.kube;
    if (!target.kubeconfig && target.kubeconfigEnv) process.env.KUBECONFIG = target.kubeconfigEnv;
    kube = await host.kube({ kubeconfig: target.kubeconfig, context: target.context, namespace: target.namespace });
  } catch (error) {
    logger.error(`watchdog ${sessionId}: cannot reach the cluster (${(error as Error).message}); cluster steps are left for ktctl clean`);
  }
  const registry = options.registry ?? createUndoRegistry();
  let left: number;
  try {
    left = await unwindLocalJournal(journal, { home, kube, registry, logger, laptopOnly: false });
  } catch (error) {
    logger.error(`watchdog ${sessionId}: ${(error as Error).message}`);
    return (process.exitCode = 1);
  }
  if (left) {
    logger.warn(`${stamp()} watchdog ${sessionId}: ${left} step(s) left; run ktctl clean`);
    return (process.exitCode = 1);
  }
  logger.info(`${stamp()} watchdog ${sessionId}: session undone`);
  await rm(watchdogLogPath(home, sessionId), { force: true });
  return (process.exitCode = 0);
}
