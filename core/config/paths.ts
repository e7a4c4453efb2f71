// Where configuration lives: the user's file under KTCTL_HOME (default ~/.ktctl) and the nearest
// project file `.ktctl.yaml` in the working directory or one of its parents.

import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";

export const PROJECT_CONFIG_NAME = ".ktctl.yaml";
export const USER_CONFIG_NAME = "config.yaml";

export interface ConfigEnv {
  env?: Record<string, string | undefined>;
  cwd?: string;
}

/** ktctl's own directory (config, session journals). KTCTL_HOME moves it, e.g. for tests. */
export function ktctlHome(env: Record<string, string | undefined> = process.env): string {
  return env.KTCTL_HOME ? resolve(env.KTCTL_HOME) : join(homedir(), ".ktctl");
}

export function userConfigPath(env: Record<string, string | undefined> = process.env): string {
  return join(ktctlHome(env), USER_CONFIG_NAME);
}

/** The nearest `.ktctl.yaml` from `cwd` upwards, or undefined. */
export function findProjectConfig(cwd: string = process.cwd()): string | undefined {
  let dir = resolve(cwd);
  for (;;) {
    const candidate = join(dir, PROJECT_CONFIG_NAME);
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}
