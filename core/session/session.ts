// A session: every change goes in as a journaled step with an undo, and close() takes them all back,
// last first. The journal is written BEFORE a step is applied (the local file always, the Lease too
// for a cluster step), so whichever way the process ends (close, signal, SIGKILL, a lost laptop)
// something can finish the undo.

import { hostname } from "node:os";
import type { ConsolaInstance } from "consola";
import type { Kube, Session, SessionOptions, StepSpec } from "../plugin-api.ts";
import { ExitCode, KtctlError, isKtctlError } from "../errors.ts";
import { leaseName, newSessionId, sessionLabels } from "./labels.ts";
import { createRightsChecker, type RightsChecker } from "./rights.ts";
import { LEASE_DURATION_SECONDS, LEASE_RENEW_SECONDS, SessionLease } from "./lease.ts";
import { ktctlHome, pendingSteps, removeLocalJournal, watchdogLogPath, writeLocalJournal, type Journal, type JournalStep, type SessionMeta } from "./journal.ts";
import { processIdentity } from "./processes.ts";
import { defaultOwner } from "./owner.ts";
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

/** A short lease for tests and flaky networks: KTCTL_SESSION_LEASE_SECONDS, a whole number > 0. */
export const LEASE_SECONDS_ENV = "KTCTL_SESSION_LEASE_SECONDS";
function leaseSecondsFromEnv(): number | undefined {
  const seconds = Number(process.env[LEASE_SECONDS_ENV]);
  return Number.isInteger(seconds) && seconds > 0 ? seconds : undefined;
}

const errorText = (error: unknown) => (error instanceof Error ? error.message : String(error));

export { defaultOwner };

/** The settings a session runs with, defaults filled in. */
interface SessionSettings {
  logger: ConsolaInstance;
  registry: UndoRegistry;
  home: string;
  owner: string;
  leaseDurationSeconds: number;
  renewSeconds: number;
  exit: (code: number) => void;
  settleTimeoutMs: number;
  /** Asks the API server, before a change, whether its undo is allowed (rights.ts). */
  rights: RightsChecker;
}

/** What the parts of a running session share: its records, and whether it is ending. */
interface SessionState {
  meta: SessionMeta;
  lease: SessionLease;
  /** The journal's steps; the same array is written to the file and (cluster steps) to the Lease. */
  steps: JournalStep[];
  /** Set once close() has begun: no new steps, no watchdog respawn. */
  closing: boolean;
  /** Why the Lease was lost (deleted or taken over from elsewhere), once it was. */
  readonly lostReason?: string;
}

export async function startSession(options: StartSessionOptions): Promise<LocalSession> {
  const kube = options.kube;
  const settings = settingsOf(options);
  const { logger } = settings;
  let closeFromLoss: ((reason: string) => void) | undefined;
  const loss: { reason?: string } = {};
  const steps: JournalStep[] = [];
  // Until the session's state exists, the watchdog's pid goes straight to the local file (no step
  // can be in it yet) and a watchdog that dies is started again.
  const link: WatchdogLink = { closing: () => false, persistMeta: (meta) => writeLocalJournal(settings.home, { version: 1, meta, steps }) };
  const { meta, lease, watchdog } = await recordSession(
    kube,
    options,
    settings,
    steps,
    (reason) => {
      loss.reason = reason;
      closeFromLoss?.(reason);
    },
    link,
  );
  const state: SessionState = {
    meta,
    lease,
    steps,
    closing: false,
    get lostReason() {
      return loss.reason;
    },
  };

  const journal = journalWriter(settings.home, state, logger);
  link.closing = () => state.closing;
  link.persistMeta = () => journal.persist(false);
  const stopRenewal = renewLease(settings, state);
  const runner = stepRunner(kube, settings, state, journal, watchdog);

  let resolveEnded!: (reason: string) => void;
  const ended = new Promise<string>((resolve) => (resolveEnded = resolve));
  let closePromise: Promise<void> | undefined;
  const signals = options.handleSignals !== false ? closeOnSignals(settings, () => closePromise !== undefined, (reason) => close(reason)) : () => undefined;
  const close = (reason = "closed"): Promise<void> => {
    closePromise ??= (async () => {
      state.closing = true;
      resolveEnded(reason);
      await unwind(reason, settings, state, journal, runner, watchdog, stopRenewal, signals);
    })();
    return closePromise;
  };
  closeFromLoss = (reason) => {
    if (closePromise) return; // closing anyway: a lease gone at the end is no news
    logger.warn(`session ended: ${reason}`);
    // The mode closes the session too once `ended` resolves, and reports how it went.
    close(reason).catch((error) => logger.debug(`closing the lost session: ${errorText(error)}`));
  };
  if (state.lostReason) closeFromLoss(state.lostReason);

  const labels = sessionLabels(meta.id, settings.owner);
  return {
    id: meta.id,
    owner: settings.owner,
    mode: options.mode,
    namespace: meta.namespace,
    kube,
    global: options.global,
    labels,
    step: runner.step,
    ended,
    close,
    get meta() {
      return meta;
    },
    get journal() {
      return { version: 1, meta, steps };
    },
    get watchdogPid() {
      return watchdog.handle()?.pid;
    },
  };
}

function settingsOf(options: StartSessionOptions): SessionSettings {
  const leaseDurationSeconds = options.leaseDurationSeconds ?? leaseSecondsFromEnv() ?? LEASE_DURATION_SECONDS;
  return {
    logger: options.logger,
    registry: options.registry ?? createUndoRegistry(),
    home: options.home ?? ktctlHome(),
    owner: options.owner ?? defaultOwner(),
    leaseDurationSeconds,
    renewSeconds: options.renewSeconds ?? Math.min(LEASE_RENEW_SECONDS, Math.max(1, Math.floor(leaseDurationSeconds / 3))),
    exit: options.exit ?? ((code: number) => process.exit(code)),
    settleTimeoutMs: options.settleTimeoutMs ?? 10_000,
    rights: createRightsChecker(options.kube),
  };
}

/**
 * Writes the journal in both places before anything else happens: the local file, then the Lease.
 * The watchdog starts as soon as the file exists, so that its process start (tens of ms) overlaps
 * the rights check and the Lease's creation instead of following them; a session that does not
 * come about dismisses it. A Lease name already taken (a 409) means the id is someone else's:
 * another id is drawn.
 */
async function recordSession(
  kube: Kube,
  options: StartSessionOptions,
  settings: SessionSettings,
  steps: JournalStep[],
  onLost: (reason: string) => void,
  link: WatchdogLink,
): Promise<{ meta: SessionMeta; lease: SessionLease; watchdog: WatchdogGuard }> {
  const namespace = kube.namespace;
  for (let attempt = 1; ; attempt++) {
    const id = newSessionId();
    const meta: SessionMeta = {
      id,
      owner: settings.owner,
      mode: options.mode,
      target: options.target,
      namespace,
      host: hostname(),
      pid: process.pid,
      pidStart: processIdentity(process.pid),
      started: new Date().toISOString(),
      leaseDurationSeconds: settings.leaseDurationSeconds,
      kube: {
        kubeconfig: options.global.kubeconfig ? resolve(options.global.kubeconfig) : undefined,
        kubeconfigEnv: process.env.KUBECONFIG || undefined,
        context: kube.context,
        namespace,
        server: kube.server,
      },
    };
    await writeLocalJournal(settings.home, { version: 1, meta, steps });
    const watchdog = await guardWithWatchdog(options, settings, meta, link);
    const lease = new SessionLease(kube, meta, onLost, Math.max(2, settings.renewSeconds) * 1000);
    try {
      // The Lease is renewed (patch) and removed at the end (delete): both, or no session at all.
      const leaseRef = { apiVersion: "coordination.k8s.io/v1", kind: "Lease", namespace, name: leaseName(id) };
      await settings.rights.require(
        (["patch", "delete"] as const).map((verb) => ({ verb, ref: leaseRef })),
        `record session ${id} in a Lease`,
      );
      const created = await lease.create(steps);
      if (typeof created?.metadata?.creationTimestamp === "string") meta.started = created.metadata.creationTimestamp;
      return { meta, lease, watchdog };
    } catch (error) {
      await watchdog.dismiss();
      await removeLocalJournal(settings.home, id);
      if (httpStatus(error) === 409 && attempt < MAX_ID_ATTEMPTS) continue;
      throw isKtctlError(error) ? error : new KtctlError(`cannot record the session in namespace ${namespace}: ${errorText(error)}`, ExitCode.failure);
    }
  }
}

interface JournalWriter {
  /** Writes the current steps to the local file and, with toLease, to the Lease (unless it is lost). */
  persist(toLease: boolean): Promise<void>;
  /**
   * Brings the Lease's copy up to date without anyone waiting on it. For laptop steps: only this
   * machine can undo them, from the local file (the watchdog, `clean`); the Lease only counts them
   * for a `clean` elsewhere, so a round trip to the API server before each is time for nothing.
   */
  copyToLease(): void;
  /** Resolves when every write asked for so far has finished. */
  drained(): Promise<unknown>;
}

/** One queue per place, so the file and the Lease each always get the latest state, in order. */
function journalWriter(home: string, state: SessionState, logger: ConsolaInstance): JournalWriter {
  let files: Promise<unknown> = Promise.resolve();
  let leases: Promise<unknown> = Promise.resolve();
  const snapshot = () => state.steps.map((s) => ({ ...s }));
  /** A Lease write queued behind `after` (a file write it must not overtake). */
  const toLease = (after?: Promise<unknown>) => {
    const run = leases.then(async () => {
      await after;
      if (!state.lostReason) await state.lease.writeSteps(snapshot());
    });
    leases = run.catch(() => undefined);
    return run;
  };
  return {
    persist(withLease) {
      const file = files.then(() => writeLocalJournal(home, { version: 1, meta: state.meta, steps: snapshot() }));
      files = file.catch(() => undefined);
      return withLease ? toLease(file) : file;
    },
    copyToLease() {
      toLease().catch((error) => logger.debug(`the Lease's copy of the journal lags: ${errorText(error)}`));
    },
    drained: () => Promise.all([files, leases]),
  };
}

interface WatchdogGuard {
  /** Steps wait for this: resolves when the watchdog is armed, or when it is known not to be. */
  ready(): Promise<void>;
  handle(): WatchdogHandle | undefined;
  /** For a session that did not come about: the watchdog exits without doing anything, its log goes. */
  dismiss(): Promise<void>;
}

/** What the watchdog guard needs of the session, which does not exist yet when the guard starts. */
interface WatchdogLink {
  /** True once close() has begun: a watchdog that exits then is not started again. */
  closing(): boolean;
  /** Writes the meta (with the watchdog's pid) to the local journal. */
  persistMeta(meta: SessionMeta): Promise<unknown>;
}

/**
 * The watchdog: a process of its own that finishes the undo if this one is killed outright. One that
 * dies while the session lives is started again a few times.
 */
async function guardWithWatchdog(options: StartSessionOptions, settings: SessionSettings, meta: SessionMeta, link: WatchdogLink): Promise<WatchdogGuard> {
  const { logger, home } = settings;
  let watchdog: WatchdogHandle | undefined;
  let watchdogReady: Promise<void> = Promise.resolve();
  let respawns = 0;
  let dismissed = false;
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
      (error) => {
        if (!dismissed) logger.warn(`the session watchdog is not running (${errorText(error)}); if ktctl is killed, run ktctl clean`);
      },
    );
    handle.onExit((code) => {
      if (dismissed || link.closing() || watchdog !== handle) return;
      // A watchdog that dies while the session lives leaves it unguarded against SIGKILL.
      if (respawns++ < MAX_WATCHDOG_RESPAWNS) {
        logger.warn(`the session watchdog exited (${code}); starting it again`);
        void startWatchdog();
      } else logger.warn("the session watchdog keeps exiting; if ktctl is killed, run ktctl clean");
    });
    await link.persistMeta(meta);
  };
  await startWatchdog();
  return {
    ready: () => watchdogReady,
    handle: () => watchdog,
    dismiss: async () => {
      dismissed = true;
      if (!watchdog) return;
      // Armed (or gone) first: one told "closed" before it has read the journal could log a miss.
      await watchdogReady;
      await watchdog.notifyClosed();
      await rm(watchdogLogPath(home, meta.id), { force: true });
    },
  };
}

/** Renews the Lease while the session lives; returns the function that stops renewing. */
function renewLease(settings: SessionSettings, state: SessionState): () => void {
  const { logger, renewSeconds, leaseDurationSeconds } = settings;
  let renewFailures = 0;
  const renewTimer = setInterval(() => {
    state.lease.renew().then(
      () => {
        if (renewFailures) logger.info("lease renewal works again");
        renewFailures = 0;
      },
      (error) => {
        if (state.lostReason) return;
        renewFailures++;
        // One miss is routine (a slow API server); a whole lease duration of misses is worth saying.
        if (renewFailures * renewSeconds >= leaseDurationSeconds / 2) logger.warn(`cannot renew the session lease: ${errorText(error)}`);
        else logger.debug(`lease renewal failed: ${errorText(error)}`);
      },
    );
  }, renewSeconds * 1000);
  renewTimer.unref?.();
  return () => clearInterval(renewTimer);
}

interface StepRunner {
  step<T>(spec: StepSpec, apply: () => Promise<T>): Promise<T>;
  /** Undoes one step, recording the outcome on it; false when the undo failed. */
  undoOne(step: JournalStep): Promise<boolean>;
  /** Waits (boundedly) for applies still running, so an undo never overtakes its change. */
  settle(timeoutMs: number): Promise<void>;
}

/** session.step: journal first (file and Lease), then apply; a failed apply is undone at once. */
function stepRunner(kube: Kube, settings: SessionSettings, state: SessionState, journal: JournalWriter, watchdog: WatchdogGuard): StepRunner {
  const { logger, registry } = settings;
  const meta = state.meta;
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
    if (state.closing) throw new KtctlError(`session ${meta.id} is closing; "${spec.describe}" was not done`, ExitCode.interrupted);
    if (!registry.get(spec.kind)) throw new KtctlError(`no undo runner for step kind "${spec.kind}"`, ExitCode.plugin);
    JSON.stringify(spec.undo); // throws now, not in the watchdog, if the undo is not serialisable
    await Promise.all([watchdog.ready(), settings.rights.require(registry.get(spec.kind)?.rights?.(spec.undo) ?? [], spec.describe)]);
    if (state.closing) throw new KtctlError(`session ${meta.id} is closing; "${spec.describe}" was not done`, ExitCode.interrupted);
    const entry: JournalStep = {
      seq: ++seq,
      kind: spec.kind,
      describe: spec.describe,
      undo: spec.undo,
      where: registry.where(spec.kind),
      state: "recorded",
    };
    state.steps.push(entry);
    try {
      await journal.persist(entry.where === "cluster");
      if (entry.where !== "cluster") journal.copyToLease();
    } catch (error) {
      state.steps.splice(state.steps.indexOf(entry), 1);
      throw isKtctlError(error) ? error : new KtctlError(`cannot journal "${spec.describe}": ${errorText(error)}`);
    }
    // close() may have begun while the journal was written: its undo saw nothing in flight, so a
    // change applied now would land after the restore and stay (a hosts block left behind).
    if (state.closing) throw new KtctlError(`session ${meta.id} is closing; "${spec.describe}" was not done`, ExitCode.interrupted);
    const running = apply();
    inFlight.add(running);
    try {
      const result = await running;
      entry.state = "applied";
      await journal.persist(false);
      return result;
    } catch (error) {
      logger.debug(`"${spec.describe}" failed (${errorText(error)}); undoing it`);
      if (await undoOne(entry)) await journal.persist(entry.where === "cluster").catch(() => undefined);
      throw error;
    } finally {
      inFlight.delete(running);
    }
  };

  const settle = async (timeoutMs: number) => {
    if (!inFlight.size) return;
    // Undoing a create before it lands would leave the object behind: let applies finish first.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const bound = new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)));
    await Promise.race([Promise.allSettled([...inFlight]), bound]);
    clearTimeout(timer);
  };

  return { step, undoOne, settle };
}

/**
 * close(): undo every step last-first, then remove the session's records. When something could not
 * be undone the records stay (the Lease expires) so `clean` finishes the rest.
 *
 * A session whose Lease was lost (deleted, or claimed by a `clean` that judged it expired while this
 * laptop could not reach the API server) undoes only its laptop steps: the cluster steps now belong
 * to whoever took the Lease over. Undoing them too would fight that `clean`, and could hand a
 * service back over the head of a developer who exchanged it since. It ends with an error saying so.
 */
async function unwind(
  reason: string,
  settings: SessionSettings,
  state: SessionState,
  journal: JournalWriter,
  steps: StepRunner,
  watchdog: WatchdogGuard,
  stopRenewal: () => void,
  removeSignalHandlers: () => void,
): Promise<void> {
  const { logger, home } = settings;
  const meta = state.meta;
  logger.debug(`closing session ${meta.id}: ${reason}`);
  await steps.settle(settings.settleTimeoutMs);
  // A mode that ends its session because what it set up is gone (mesh: the mesh was removed) may be
  // seeing a `clean` from elsewhere before the renewals saw the lease go: one more renewal tells,
  // and the session then ends as lost (exit 10, the cluster left to whoever cleaned it).
  if (!state.lostReason) await state.lease.renew().catch(() => undefined);
  const failed: JournalStep[] = [];
  const lost = state.lostReason;
  const handedOver: JournalStep[] = [];
  for (const entry of pendingSteps(state.steps)) {
    if (lost && entry.where === "cluster") {
      handedOver.push(entry);
      continue;
    }
    if (!(await steps.undoOne(entry))) failed.push(entry);
    await journal.persist(entry.where === "cluster").catch((error) => logger.debug(`journal update failed: ${errorText(error)}`));
  }
  await journal.drained();
  // Renewal kept the lease fresh while undoing (so no `clean` elsewhere started on it); now it may
  // go: deleted when all is undone, left to expire otherwise so `clean` finishes the rest.
  stopRenewal();
  if (!failed.length) {
    try {
      await state.lease.delete();
    } catch (error) {
      // 409: `clean` claimed it meanwhile and will delete it; anything else: it expires by itself.
      if (httpStatus(error) !== 409) logger.warn(`could not delete the session lease: ${errorText(error)}`);
    }
  }
  if (!failed.length) await removeLocalJournal(home, meta.id);
  const handle = watchdog.handle();
  if (handle) {
    await handle.notifyClosed();
    if (!failed.length) await rm(watchdogLogPath(home, meta.id), { force: true });
  }
  removeSignalHandlers();
  if (lost && !failed.length) {
    throw new KtctlError(
      `session ${meta.id} ended: ${lost}; the laptop is restored, its ${handedOver.length} cluster change(s) were left to whoever took the session over`,
      ExitCode.conflict,
      "the API server judged the session dead while this machine could not reach it; start it again",
    );
  }
  if (failed.length) {
    throw new KtctlError(
      `${failed.length} step(s) of session ${meta.id} could not be undone: ${failed.map((s) => `${s.describe} (${s.error})`).join("; ")}`,
      ExitCode.failure,
      "run `ktctl clean` once the cause is fixed",
    );
  }
}

/**
 * SIGINT/SIGTERM/SIGHUP close the session, then exit with the signal's code; a second signal while
 * closing only says to wait. Returns the function that removes the handlers.
 */
function closeOnSignals(settings: SessionSettings, isClosing: () => boolean, close: (reason: string) => Promise<void>): () => void {
  const { logger, exit } = settings;
  const handlers = new Map<NodeJS.Signals, () => void>();
  for (const signal of Object.keys(SIGNAL_EXIT) as NodeJS.Signals[]) {
    if (process.platform === "win32" && signal !== "SIGINT") continue;
    const handler = () => {
      if (isClosing()) {
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
  return () => {
    for (const [signal, handler] of handlers) process.off(signal, handler);
    handlers.clear();
  };
}
