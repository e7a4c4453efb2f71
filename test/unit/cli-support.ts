// Runs the real CLI (`bun core/cli/main.ts`) as a user would, in a scratch directory with its own
// KTCTL_HOME, and gives back what the user would see.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";

export const MAIN = resolve(import.meta.dir, "../../core/cli/main.ts");

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** stderr's non-empty lines. */
  stderrLines: string[];
}

export interface Scratch {
  root: string;
  home: string;
  project: string;
  write(relativePath: string, text: string): string;
  run(args: string[], options?: { cwd?: string; env?: Record<string, string> }): Promise<RunResult>;
  remove(): void;
}

export function scratch(): Scratch {
  const root = mkdtempSync(join(tmpdir(), "ktctl-test-"));
  const home = join(root, "home");
  const project = join(root, "project");
  mkdirSync(home, { recursive: true });
  mkdirSync(project, { recursive: true });
  return {
    root,
    home,
    project,
    write(relativePath, text) {
      const path = join(root, relativePath);
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, text);
      return path;
    },
    async run(args, options = {}) {
      const proc = Bun.spawn(["bun", MAIN, ...args], {
        cwd: options.cwd ?? project,
        // No kubeconfig unless a test gives one: a developer's own cluster must not change the output.
        env: { ...process.env, KTCTL_HOME: home, NO_COLOR: "1", KUBECONFIG: join(root, "no-kubeconfig"), ...options.env },
        stdout: "pipe",
        stderr: "pipe",
      });
      const [stdout, stderr, exitCode] = await Promise.all([
        new Response(proc.stdout).text(),
        new Response(proc.stderr).text(),
        proc.exited,
      ]);
      const stderrLines = stderr.split("\n").filter((line) => line !== "");
      return { exitCode, stdout, stderr, stderrLines };
    },
    remove() {
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** A plugin module's source: plain objects, no imports, as a team would write one. */
export function pluginSource(name: string, apiVersion: number, commands: Record<string, string>): string {
  const entries = Object.entries(commands).map(([command, body]) => `    ${JSON.stringify(command)}: () => (api) => api.defineCommand(${body}),`);
  return `export default {\n  name: ${JSON.stringify(name)},\n  apiVersion: ${apiVersion},\n  commands: {\n${entries.join("\n")}\n  },\n};\n`;
}
