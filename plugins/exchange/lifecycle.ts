// The life of an exchange or preview session on the laptop: the session started with this mode's own
// signal handling (scale mode restores the workload BEFORE the shadow goes, which the session's
// generic handler cannot know), the shadow with its remote listeners, and the wait for the end.

import type { PluginApi, Session, SessionOptions, Shadow } from "../../core/plugin-api.ts";
import { startCountingRelay, type CountingRelay } from "./relay.ts";

/** Exit codes of a signal-driven end, as the shell reports them. */
const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };

export interface StopSignals {
  /** Resolves with the first SIGINT, SIGTERM or SIGHUP. */
  readonly received: Promise<NodeJS.Signals>;
  readonly signal: NodeJS.Signals | undefined;
  exitCode(): number | undefined;
  dispose(): void;
}

/** Takes over SIGINT/SIGTERM/SIGHUP: the first starts the end, later ones only say it is under way. */
export function listenForStop(logger: PluginApi["logger"]): StopSignals {
  let first: NodeJS.Signals | undefined;
  let resolveReceived!: (signal: NodeJS.Signals) => void;
  const received = new Promise<NodeJS.Signals>((resolve) => (resolveReceived = resolve));
  const handlers = new Map<NodeJS.Signals, () => void>();
  for (const signal of Object.keys(SIGNAL_EXIT) as NodeJS.Signals[]) {
    if (process.platform === "win32" && signal !== "SIGINT") continue;
    const handler = () => {
      if (first) {
        logger.info("still restoring what this session changed; please wait");
        return;
      }
      first = signal;
      logger.info(`${signal}: restoring what this session changed`);
      resolveReceived(signal);
    };
    handlers.set(signal, handler);
    process.on(signal, handler);
  }
  return {
    received,
    get signal() {
      return first;
    },
    exitCode: () => (first ? SIGNAL_EXIT[first] : undefined),
    dispose() {
      for (const [signal, handler] of handlers) process.off(signal, handler);
      handlers.clear();
    },
  };
}

/** Starts the session with signal handling left to the caller: traffic goes back before the undo. */
export async function startModeSession(api: PluginApi, options: SessionOptions): Promise<Session> {
  return api.startSession({ ...options, handleSignals: false });
}

export interface ServedPort {
  shadowPort: number;
  name?: string;
  localPort: number;
}

export interface ServingShadow {
  shadow: Shadow;
  /** Connections the cluster sent to the laptop so far. */
  connections(): number;
  /**
   * Once the services no longer list the shadow: resolves when no connection has arrived for
   * `quietMs` (kube-proxy has caught up), or after `maxMs` at the latest.
   */
  drained(quietMs: number, maxMs: number): Promise<boolean>;
  /** Closes the local relays (after the session closed). */
  close(): Promise<void>;
}

/**
 * Starts the shadow declaring `ports` and makes each of them forward to the laptop's local port,
 * through a loopback relay that watches the arrivals (see relay.ts).
 */
export async function startServingShadow(
  api: PluginApi,
  session: Session,
  options: { role: string; labels?: Record<string, string>; ports: ServedPort[]; localHost: string },
): Promise<ServingShadow> {
  const relays: CountingRelay[] = [];
  const closeRelays = () => Promise.all(relays.map((r) => r.close())).then(() => undefined);
  try {
    for (const port of options.ports) {
      const target = `${options.localHost}:${port.localPort}`;
      relays.push(
        await startCountingRelay(
          { host: options.localHost, port: port.localPort },
          {
            refused: (error) => api.logger.warn(`${target} refused a connection from the cluster (${errorText(error)}); is the local process running?`),
            recovered: () => api.logger.info(`${target} accepts connections again`),
          },
        ),
      );
    }
    const shadow = await api.startShadow(session, {
      role: options.role,
      labels: options.labels,
      ports: options.ports.map((p) => (p.name ? { name: p.name, port: p.shadowPort } : { port: p.shadowPort })),
    });
    for (const [i, port] of options.ports.entries()) await shadow.tunnel.addRemoteListener(port.shadowPort, relays[i]!.host, relays[i]!.port);
    return {
      shadow,
      connections: () => relays.reduce((sum, r) => sum + r.connections(), 0),
      drained: async (quietMs, maxMs) => (await Promise.all(relays.map((r) => r.quiet(quietMs, maxMs)))).every(Boolean),
      close: closeRelays,
    };
  } catch (error) {
    await closeRelays();
    throw error;
  }
}

/** Resolves when the tunnel gives up for good (it reconnects by itself otherwise). */
export function tunnelClosed(shadow: Shadow): Promise<string> {
  return new Promise((resolve) => shadow.tunnel.onStateChange((state, detail) => state === "closed" && resolve(`tunnel closed${detail ? ` (${detail})` : ""}`)));
}

/** Runs `setup` with the session; any failure (or a signal meanwhile) undoes everything before rethrowing. */
export async function setUp<T>(session: Session, stop: StopSignals, logger: PluginApi["logger"], setup: () => Promise<T>): Promise<T> {
  let settingUp = true;
  // A signal during setup ends the session at once: its steps settle, then unwind. Later signals
  // are the caller's: it may have to restore things in an order of its own first.
  void stop.received.then((signal) => {
    if (settingUp) session.close(`signal ${signal}`).catch(() => undefined);
  });
  try {
    return await setup();
  } catch (error) {
    try {
      await session.close(stop.signal ? `signal ${stop.signal}` : `setup failed: ${errorText(error)}`);
    } catch (closeError) {
      logger.error(errorText(closeError));
    }
    throw error;
  } finally {
    settingUp = false;
  }
}

export const errorText = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/** Leaves the process with the signal's exit code when a signal ended the session. */
export function exitForSignal(stop: StopSignals): void {
  stop.dispose();
  const code = stop.exitCode();
  if (code !== undefined) process.exit(code);
}
