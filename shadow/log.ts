// One line per event on stdout, logfmt-style, so `kubectl logs` reads well and grep works:
//   2025-01-01T10:00:00.000Z info tunnel.listening host=0.0.0.0 port=2222

export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type LogFields = Record<string, string | number | boolean | undefined>;

export interface ShadowLog {
  debug(event: string, fields?: LogFields): void;
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  error(event: string, fields?: LogFields): void;
}

/** Writes to stdout; a broken log pipe must never take the tunnel down with it. */
function writeStdout(line: string): void {
  try {
    process.stdout.write(line);
  } catch {
    // nowhere left to report it
  }
}

export function createShadowLog(level: LogLevel, write: (line: string) => void = writeStdout): ShadowLog {
  if (write === writeStdout && process.stdout.listenerCount("error") === 0) process.stdout.on("error", () => {});
  const threshold = LOG_LEVELS.indexOf(level);
  const emit = (at: LogLevel) => (event: string, fields?: LogFields) => {
    if (LOG_LEVELS.indexOf(at) < threshold) return;
    let line = `${new Date().toISOString()} ${at} ${event}`;
    for (const [key, value] of Object.entries(fields ?? {})) {
      if (value === undefined) continue;
      const text = String(value);
      line += ` ${key}=${/^[^\s"=]+$/.test(text) ? text : JSON.stringify(text)}`;
    }
    write(line + "\n");
  };
  return { debug: emit("debug"), info: emit("info"), warn: emit("warn"), error: emit("error") };
}
