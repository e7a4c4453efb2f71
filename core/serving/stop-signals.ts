// A mode that restores things in an order of its own (exchange hands the traffic back before the
// shadow goes) takes SIGINT/SIGTERM/SIGHUP over from the session's generic handler.

import type { PluginApi, StopSignals } from "../plugin-api.ts";

/** Exit codes of a signal-driven end, as the shell reports them. */
const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };

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

/** Leaves the process with the signal's exit code when a signal ended the session. */
export function exitForSignal(stop: StopSignals): void {
  stop.dispose();
  const code = stop.exitCode();
  if (code !== undefined) process.exit(code);
}
