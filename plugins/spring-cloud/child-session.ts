// A ktctl session (connect, exchange, mesh) run as a child process of `ktctl spring run`: its
// output is shown with a prefix, readiness is the line it prints when ready, and it ends by SIGTERM
// (a ktctl session restores everything on SIGTERM as on Ctrl-C). Children run in their own process
// group, so a Ctrl-C in the terminal reaches COMMAND first; spring run stops them afterwards, in order.

import { spawn, type ChildProcess } from "node:child_process";
import type { PluginApi } from "../../core/plugin-api.ts";

export interface ChildSession {
  label: string;
  /** Resolves with the first match of `pattern` in the child's output; rejects if it exits first. */
  waitFor(pattern: RegExp): Promise<RegExpExecArray>;
  /** Everything the child printed so far. */
  output(): string;
  /** Resolves with the exit code once the child is gone. */
  readonly exited: Promise<number>;
  /** SIGTERM, then waits for the child to have restored what it changed and exited. */
  stop(): Promise<number>;
}

export function startChildSession(api: PluginApi, label: string, args: string[], write: (line: string) => void): ChildSession {
  const [command, ...rest] = api.self.argv(args);
  const child: ChildProcess = spawn(command!, rest, { stdio: ["ignore", "pipe", "pipe"], detached: true, env: process.env });
  let text = "";
  const waiters = new Set<() => void>();
  let exitCode: number | undefined;
  const exited = new Promise<number>((resolve) =>
    child.once("close", (code, signal) => {
      exitCode = code ?? (signal ? 128 : 1);
      for (const notify of waiters) notify();
      resolve(exitCode);
    }),
  );
  child.once("error", (error) => {
    text += `${api.errors.text(error)}\n`;
  });
  const pending: Record<string, string> = { stdout: "", stderr: "" };
  const pump = (name: "stdout" | "stderr") => (chunk: Buffer) => {
    const data = chunk.toString("utf8");
    text += data;
    const lines = (pending[name] + data).split("\n");
    pending[name] = lines.pop()!;
    for (const line of lines) if (line.trim()) write(`[${label}] ${line}`);
    for (const notify of waiters) notify();
  };
  child.stdout!.on("data", pump("stdout"));
  child.stderr!.on("data", pump("stderr"));

  return {
    label,
    output: () => text,
    exited,
    waitFor(pattern) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = pattern.exec(text);
          if (match) {
            waiters.delete(check);
            resolve(match);
          } else if (exitCode !== undefined) {
            waiters.delete(check);
            const last = text.trim().split("\n").filter((l) => !/^\s*$/.test(l)).at(-1)?.replace(/^\W*(ERROR|error)\W*/, "") ?? "";
            reject(new api.errors.KtctlError(`ktctl ${label} ended (exit ${exitCode}) before it was ready${last ? `: ${last}` : ""}`, exitCode || api.errors.ExitCode.failure));
          }
        };
        waiters.add(check);
        check();
      });
    },
    async stop() {
      if (exitCode === undefined) child.kill("SIGTERM");
      return exited;
    },
  };
}
