// The top-level error handler. A user sees one line (`ktctl: <message>`) and perhaps a hint, never
// a stack trace unless they asked for --debug; the exit code tells scripts what went wrong.

import { ExitCode, isKtctlError } from "../errors.ts";

const ANSI = /\x1b\[[0-9;]*m/g;

/** citty's own parse errors (missing argument, bad enum value, unknown sub-command). */
const isCittyUsageError = (error: unknown): error is Error & { code: string } =>
  error instanceof Error && error.name === "CLIError" && typeof (error as { code?: unknown }).code === "string";

export interface ErrorReport {
  lines: string[];
  exitCode: number;
}

/** What to print for an error and which code to exit with. */
export function describeError(error: unknown, debug: boolean, command = "ktctl"): ErrorReport {
  if (isKtctlError(error)) {
    const lines = [`ktctl: ${error.message}`];
    if (error.hint) lines.push(`hint: ${error.hint}`);
    if (debug && error.stack) lines.push(error.stack);
    return { lines, exitCode: error.exitCode };
  }
  if (isCittyUsageError(error)) {
    const message = error.message.replace(ANSI, "");
    const lines = [`ktctl: ${message.charAt(0).toLowerCase()}${message.slice(1)}`, `hint: run "${command} --help" for usage`];
    return { lines, exitCode: ExitCode.usage };
  }
  const message = error instanceof Error ? error.message.split("\n")[0] || error.name : String(error);
  const lines = [`ktctl: unexpected error: ${message}`];
  if (debug) lines.push(error instanceof Error && error.stack ? error.stack : String(error));
  else lines.push("hint: run again with --debug for details");
  return { lines, exitCode: ExitCode.failure };
}

export function exitWithError(error: unknown, debug: boolean, command?: string): never {
  const { lines, exitCode } = describeError(error, debug, command);
  process.stderr.write(`${lines.join("\n")}\n`);
  process.exit(exitCode);
}
