// The one logger: info and above by default, debug with --debug (or `debug: true` in config).

import { createConsola, type ConsolaInstance } from "consola";
import { colorWanted } from "./color.ts";

const INFO = 3;
const DEBUG = 4;

export function createLogger(debug: boolean): ConsolaInstance {
  return createConsola({ level: debug ? DEBUG : INFO, formatOptions: { date: false, colors: colorWanted(process.stderr) } });
}

/**
 * Whether --debug is on, read before citty parses anything so that plugin loading and config
 * errors already honour it. A flag wins over the config file; `--` ends the flags.
 */
export function debugRequested(rawArgs: readonly string[], configDefault: unknown): boolean {
  let debug = configDefault === true;
  for (const arg of rawArgs) {
    if (arg === "--") break;
    if (arg === "-d" || arg === "--debug" || arg === "--debug=true") debug = true;
    else if (arg === "--no-debug" || arg === "--debug=false") debug = false;
  }
  return debug;
}
