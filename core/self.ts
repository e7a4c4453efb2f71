// How this very program is started again as a child process (the watchdog, a plugin's own ktctl
// commands): the compiled binary is `<binary> ARGS...`; from source it is `<bun> <script> ARGS...`.

import { resolve } from "node:path";

/** Where this process came from: what decides how to start it again. */
export interface SelfOrigin {
  execPath: string;
  main: string;
  argv: readonly string[];
}

const thisProcess = (): SelfOrigin => ({ execPath: process.execPath, main: Bun.main, argv: process.argv });

/** True inside a `bun build --compile` binary, whose own modules live in Bun's virtual filesystem. */
export function isCompiledBinary(main: string = Bun.main): boolean {
  return main.startsWith("/$bunfs/") || /^[A-Za-z]:[\\/]~BUN[\\/]/.test(main);
}

/** The argv that runs this same ktctl with `args`. */
export function selfArgv(args: readonly string[], from: SelfOrigin = thisProcess()): string[] {
  if (isCompiledBinary(from.main)) return [from.execPath, ...args];
  const script = from.argv[1] ? resolve(from.argv[1]) : from.main;
  return [from.execPath, script, ...args];
}
