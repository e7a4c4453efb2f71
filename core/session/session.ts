// A session: every change goes in as a journaled step with an undo, and close() takes them all back,
// last first. The journal is written (local file and Lease) BEFORE a step is applied, so whichever
// way the process ends (close, signal, SIGKILL, a lost laptop) something can finish the undo.

import { readFileSync } from "node:fs";
import { hostname, userInfo } from "node:os";
import type { ConsolaInstance } from "consola";
import type { Kube, Session, SessionOptions, StepSpec } from "../plugin-api.ts";
import { ExitCode, KtctlError, isKtctlError } from "../errors.ts";
import { newSessionId, sessionLabels } from "./labels.ts";
import { LEASE_DURATION_SECONDS, LEASE_RENEW_SECONDS, SessionLease } from "./lease.ts";
import { ktctlHome, pendingSteps, removeLocalJournal, watchdogLogPath, writeLocalJournal, type Journal, type JournalStep, type SessionMeta } from "./journal.ts";
import { processIdentity } from "./processes.ts";
import { httpStatus } from "../kube/objects.ts";
import { createUndoRegistry, type UndoRegistry } from "./undo.ts";
import { spawnWatchdog, watchdogArgv, type WatchdogHandle } from "./watchdog.ts";
import { rm } from "node:fs/promises";
import { resolve } from "node:path";

export interface StartSessionOptions extends SessionOptions {
  logger: ConsolaInstance;
  /** The process's undo kinds (core plus what plugins registered); a fresh core-only one by default. */
  registry?: UndoRegistry;
  /** Where local journals live; KTCTL_HOME or ~/.ktctl by default. */
  home?: string;
  /** Human owner; "<user>@<host>" by default. */
  owner?: string;
  leaseDurationSeconds?: number;
  renewSeconds?: number;
  /** Command line that starts the watchdog of a session id (watchdogArgv by default); false for none. */
  watchdog?: ((sessionId: string) => string[]) | false;
  /** SIGINT/SIGTERM/SIGHUP close the session, then exit 130/143/129 (default true). */
  handleSignals?: boolean;
  /** Called with the exit code after a signal-driven close; process.exit by default. */
  exit?: (code: number) => void;
  /** Upper bound on waiting for in-flight applies before undoing them anyway. */
  settleTimeoutMs?: number;
}

/** The session object, with what the host (not plugins) may also use. */
export interface LocalSession extends Session {
  readonly meta: Readonly<SessionMeta>;
  readonly journal: Readonly<Journal>;
  readonly watchdogPid?: number;
}

const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };
const MAX_ID_ATTEMPTS = 3;
const MAX_WATCHDOG_RESPAWNS = 3;

/** The login name of a uid from /etc/passwd (Bun's userInfo() may not know it, e.g. for root). */
function passwdName(uid: number | undefined): string | undefined {
  if (uid === undefined) return undefined;
  try {
    const line = readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .find((l) => l.split(":")[2] === String(uid));
    return line?.split(":")[0] || undefined;
  } catch {
    return undefined;
  }
}

/** A short lease for tests and flaky networks: KTCTL_SESSION_LEASE_SECONDS, a whole number > 0. */
export const LEASE_SECONDS_ENV = "KTCTL_SESSION_LEASE_SECONDS";
function leaseSecondsFromEnv(): number | undefined {
  const seconds = Number(process.env[LEASE_SECONDS_ENV]);
  return Number.isInteger(seconds) && seconds > 0 ? seconds : undefined;
}

export function defaultOwner(env: Record<string, string | undefined> = process.env): string {
  let user = env.USER || env.LOGNAME || env.USERNAME || "";
  if (!user) {
    try {
      user = userInfo().username;
    } catch {
      // No passwd entry (some containers): "unknown" it is.
    }
  }
  if (!user || user === "unknown") user = passwdName(process.getuid?.()) ?? user;
  return `${user || "unknown"}@${hostname()}`;
}

const errorText = (error: unknown) => (error instanceof Error ? error.message : String(error));

export async function startSession(options: StartSessionOptions): Promise<LocalSession> {
  const kube = options.kube;
  const logger = options.logger;
  const registry = options.registry ?? createUndoRegistry();
  const home = options.home ?? ktctlHome();
  const namespace = kube.namespace;
  const owner = options.owner ?? defaultOwner();
  const leaseDurationSeconds = options.leaseDurationSeconds ?? leaseSecondsFromEnv() ?? LEASE_DURATION_SECONDS;
  const renewSeconds = options.renewSeconds ?? Math.min(LEASE_RENEW_SECONDS, Math.max(1, Math.floor(leaseDurationSeconds / 3)));
  const exit = options.exit ?? ((code: number) => process.exit(code));

  // --- journal in both places before anything else happens ---------------------------------
  let meta!: SessionMeta;
  let lease!: SessionLease;
  const steps: JournalStep[] = [];
  let lostReason: string | undefined;
  let closeFromLoss: ((reason: string) => void) | undefined;
  const onLost = (reason: string) => {
    lostReason = reason;
    closeFromLoss?.(reason);
  };

  for (let attempt = 1; ; attempt++) {
    const id = newSessionId();
    meta = {
      id,
      owner,
      mode: options.mode,
      target: options.target,
      namespace,
      host: hostname(),
      pid: process.pid,
      pidStart: processIdentity(process.pid),
      started: new Date().toISOString(),
      leaseDurationSeconds,
      kube: {
        kubeconfig: options.global.kubeconfig ? resolve(options.global.kubeconfig) : undefined,
        kubeconfigEnv: process.env.KUBECONFIG || undefined,
        context: kube.context,
        namespace,
        server: kube.server,
      },
    };
    await writeLocalJournal(home, { version: 1, meta, steps });
    lease = new SessionLease(kube, meta, onLost);
    try {
      const created = await lease.create(steps);
      if (typeof created?.metadata?.creationTimestamp === "string") meta.started = created.metadata.creationTimestamp;
      break;
    } catch (error) {
      await removeLocalJournal(home, id);
      if (httpStatus(error) === 409 && attempt < MAX_ID_ATTEMPTS) continue;
      throw isKtctlError(error) ? error : new KtctlError(`cannot record the session in namespace ${namespace}: ${errorText(error)}`, ExitCode.failure);
    }
  }

  // --- persistence: one queue, so the file and the Lease always get the latest state in order ---
  let persistQueue: Promise<unknown> = Promise.resolve();
  const persist = (toLease: boolean): Promise<void> => {
    const run = persistQueue.then(async () => {
      const snapshot = steps.map((s) => ({ ...s }));
      await writeLocalJournal(home, { version: 1, meta, steps: snapshot });
      if (toLease && !lostReason) await lease.writeSteps(snapshot);
    });
    persistQueue = run.catch(() => undefined);
    return run;
  };

  // --- watchdog ------------------------------------------------------------------------------
  let watchdog: WatchdogHandle | undefined;
  /** Steps wait for this: resolves when the watchdog is armed, or when it is known not to be. */
  let watchdogReady: Promise<void> = Promise.resolve();
  let closing = false;
  let respawns = 0;
  const startWatchdog = async () => {
    if (options.watchdog === false) return;
    const argv = (options.watchdog ?? watchdogArgv)(meta.id);
    let handle: WatchdogHandle;
    try {
      handle = spawnWatchdog(argv, { home, logPath: watchdogLogPath(home, meta.id) });
    } catch (error) {
      logger.warn(`could not start the watchdog (${errorText(error)}); if ktctl is killed, run ktctl clean`);
      return;
    }
    watchdog = handle;
    meta.watchdogPid = handle.pid;
    meta.watchdogPidStart = processIdentity(handle.pid);
    watchdogReady = handle.armed.then(
      () => logger.debug(`watchdog ${handle.pid} armed`),
      (error) => logger.warn(`the session watchdog is not running (${errorText(error)}); if ktctl is killed, run ktctl clean`),
    );
    handle.onExit((code) => {
      if (closing || watchdog !== handle) return;
      // A watchdog that dies while the session lives leaves it unguarded against SIGKILL.
      if (respawns++ < MAX_WATCHDOG_RESPAWNS) {
        logger.warn(`the session watchdog exited (${code}); starting it again`);
        void startWatchdog();
      } else logger.warn("the session watchdog keeps exiting; if ktctl is killed, run ktctl clean");
    });
    await persist(false);
  };
  await startWatchdog();

  // --- renewal -------------------------------------------------------------------------------
  let renewFailures = 0;
  const renewTimer = setInterval(() => {
    lease.renew().then(
      () => {
        if (renewFailures) logger.info("lease renewal works again");
        renewFailures = 0;
      },
      (error) => {
        if (lostReason) return;
        renewFailures++;
        // One miss is routine (a slow API server); a whole lease duration of misses is worth saying.
        if (renewFailures * renewSeconds >= leaseDurationSeconds / 2) logger.warn(`cannot renew the session lease: ${errorText(error)}`);
        else logger.debug(`lease renewal failed: ${errorText(error)}`);
      },
    );
  }, renewSeconds * 1000);
  renewTimer.unref?.();

  // --- steps ---------------------------------------------------------------------------------
  let seq = 0;
  const inFlight = new Set<Promise<unknown>>();
  const undoCtx = { kube, sessionId: meta.id, logger };

  const undoOne = async (step: JournalStep): Promise<boolean> => {
    try {
      await registry.run(undoCtx, step);
      step.state = "undone";
      delete step.error;
      logger.debug(`undone: ${step.describe}`);
      return true;
    } catch (error) {
      step.error = errorText(error);
      logger.warn(`could not undo "${step.describe}": ${step.error}`);
      return false;
    }
  };

  const step = async <T>(spec: StepSpec, apply: () => Promise<T>): Promise<T> => {
    if (closing) throw new KtctlError(`session ${meta.id} is closing; "${spec.describe}" was not done`, ExitCode.interrupted);
    if (!registry.get(spec.kind)) throw new KtctlError(`no undo runner for step kind "${spec.kind}"`, ExitCode.plugin);
    JSON.stringify(spec.undo); // throws now, not in the watchdog, if the undo is not serialisable
    await watchdogReady;
    if (closing) throw new KtctlError(`session ${meta.id} is closing; "${spec.describe}" was not done`, ExitCode.interrupted);
    const entry: JournalStep = {
      seq: ++seq,
      kind: spec.kind,
      describe: spec.describe,
      undo: spec.undo,
      where: registry.where(spec.kind),
      state: "recorded",
    };
    steps.push(entry);
    try {
      await persist(true);
    } catch (error) {
      steps.splice(steps.indexOf(entry), 1);
      throw isKtctlError(error) ? error : new KtctlError(`cannot journal "${spec.describe}": ${errorText(error)}`);
    }
    const running = apply();
    inFlight.add(running);
    try {
      const result = await running;
      entry.state = "applied";
      await persist(false);
      return result;
    } catch (error) {
      logger.debug(`"${spec.describe}" failed (${errorText(error)}); undoing it`);
      if (await undoOne(entry)) await persist(entry.where === "cluster").catch(() => undefined);
      throw error;
    } finally {
      inFlight.delete(running);
    }
  };

  // --- close ---------------------------------------------------------------------------------
  let resolveEnded!: (reason: string) => void;
  const ended = new Promise<string>((resolve) => (resolveEnded = resolve));
  let closePromise: Promise<void> | undefined;

  const settleInFlight = async () => {
    if (!inFlight.size) return;
    // Undoing a create before it lands would leave the object behind: let applies finish first.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const bound = new Promise((resolve) => (timer = setTimeout(resolve, options.settleTimeoutMs ?? 10_000)));
    await Promise.race([Promise.allSettled([...inFlight]), bound]);
    clearTimeout(timer);
  };

  const doClose = async (reason: string) => {
    closing = true;
    resolveEnded(reason);
    logger.debug(`closing session ${meta.id}: ${reason}`);
    await settleInFlight();
    const failed: JournalStep[] = [];
    for (const entry of pendingSteps(steps)) {
      if (!(await undoOne(entry))) failed.push(entry);
      await persist(entry.where === "cluster").catch((error) => logger.debug(`journal update failed: ${errorText(error)}`));
    }
    await persistQueue;
    // Renewal kept the lease fresh while undoing (so no `clean` elsewhere started on it); now it may
    // go: deleted when all is undone, left to expire otherwise so `clean` finishes the rest.
    clearInterval(renewTimer);
    if (!failed.length) {
      try {
        await lease.delete();
      } catch (error) {
        // 409: `clean` claimed it meanwhile and will delete it; anything else: it expires by itself.
        if (httpStatus(error) !== 409) logger.warn(`could not delete the session lease: ${errorText(error)}`);
      }
    }
    if (!failed.length) await removeLocalJournal(home, meta.id);
    if (watchdog) {
      await watchdog.notifyClosed();
      if (!failed.length) await rm(watchdogLogPath(home, meta.id), { force: true });
    }
    removeSignalHandlers();
    if (failed.length) {
      throw new KtctlError(
        `${failed.length} step(s) of session ${meta.id} could not be undone: ${failed.map((s) => `${s.describe} (${s.error})`).join("; ")}`,
        ExitCode.failure,
        "run `ktctl clean` once the cause is fixed",
      );
    }
  };

  const close = (reason = "closed"): Promise<void> => {
    closePromise ??= doClose(reason);
    return closePromise;
  };
  closeFromLoss = (reason) => {
    if (closePromise) return; // closing anyway: a lease gone at the end is no news
    logger.warn(`session ended: ${reason}`);
    close(reason).catch((error) => logger.error(errorText(error)));
  };
  if (lostReason) closeFromLoss(lostReason);

  // --- signals -------------------------------------------------------------------------------
  const handlers = new Map<NodeJS.Signals, () => void>();
  function removeSignalHandlers() {
    for (const [signal, handler] of handlers) process.off(signal, handler);
    handlers.clear();
  }
  if (options.handleSignals !== false) {
    for (const signal of Object.keys(SIGNAL_EXIT) as NodeJS.Signals[]) {
      if (process.platform === "win32" && signal !== "SIGINT") continue;
      const handler = () => {
        if (closePromise) {
          logger.info("still restoring what this session changed; please wait");
          return;
        }
        logger.info(`${signal}: restoring what this session changed`);
        close(`signal ${signal}`).then(
          () => exit(SIGNAL_EXIT[signal]!),
          (error) => {
            logger.error(errorText(error));
            exit(SIGNAL_EXIT[signal]!);
          },
        );
      };
      handlers.set(signal, handler);
      process.on(signal, handler);
    }
  }

  const labels = sessionLabels(meta.id, owner);
  return {
    id: meta.id,
    owner,
    mode: options.mode,
    namespace,
    kube,
    global: options.global,
    labels,
    step,
    ended,
    close,
    get meta() {
      return meta;
    },
    get journal() {
      return { version: 1, meta, steps };
    },
    get watchdogPid() {
      return watchdog?.pid;
    },
  };
}
