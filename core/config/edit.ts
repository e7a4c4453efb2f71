// `config set` and `config unset` on one file. Comments in the file are not kept (the YAML
// library does not carry them through a rewrite).

import { existsSync } from "node:fs";
import { join } from "node:path";
import { isMapping, readConfigFile, writeConfigFile, type ConfigData } from "./file.ts";
import { PLUGINS_KEY } from "./load.ts";
import type { ConfigKey } from "./keys.ts";
import { findProjectConfig, PROJECT_CONFIG_NAME, userConfigPath, type ConfigEnv } from "./paths.ts";

/** The file `config set/unset` writes: ~/.ktctl/config.yaml, or with `local` the nearest .ktctl.yaml (new in cwd if none). */
export function targetConfigPath(local: boolean, { env = process.env, cwd = process.cwd() }: ConfigEnv = {}): string {
  if (!local) return userConfigPath(env);
  return findProjectConfig(cwd) ?? join(cwd, PROJECT_CONFIG_NAME);
}

export function setConfigValue(path: string, key: ConfigKey, value: unknown): void {
  const data: ConfigData = readConfigFile(path) ?? {};
  let node: Record<string, unknown> = data;
  for (const part of key.path.slice(0, -1)) {
    if (!isMapping(node[part])) node[part] = {};
    node = node[part] as Record<string, unknown>;
  }
  node[key.path[key.path.length - 1]!] = value;
  writeConfigFile(path, data);
}

/** Removes the key (and a command section left empty). Returns false when the file did not set it. */
export function unsetConfigValue(path: string, key: ConfigKey): boolean {
  if (!existsSync(path)) return false;
  const data: ConfigData = readConfigFile(path) ?? {};
  const parents: Record<string, unknown>[] = [data];
  for (const part of key.path.slice(0, -1)) {
    const next = parents[parents.length - 1]![part];
    if (!isMapping(next)) return false;
    parents.push(next);
  }
  const leaf = key.path[key.path.length - 1]!;
  const owner = parents[parents.length - 1]!;
  if (!(leaf in owner)) return false;
  delete owner[leaf];
  for (let i = parents.length - 1; i > 0; i--) {
    if (Object.keys(parents[i]!).length > 0) break;
    delete parents[i - 1]![key.path[i - 1]!];
  }
  writeConfigFile(path, data);
  return true;
}

/**
 * Rewrites one file's `plugins:` entries about one built-in: every "NAME" and "!NAME" goes, then
 * `entry` (when given) is added at the end. The list is removed when nothing is left in it.
 * Returns whether the file changed.
 */
export function setPluginEntry(path: string, name: string, entry: string | undefined): boolean {
  const data: ConfigData = readConfigFile(path) ?? {};
  const before = Array.isArray(data[PLUGINS_KEY]) ? (data[PLUGINS_KEY] as unknown[]) : [];
  const about = (spec: unknown) => typeof spec === "string" && spec.trim().replace(/^!\s*/, "") === name;
  const after = [...before.filter((spec) => !about(spec)), ...(entry === undefined ? [] : [entry])];
  if (JSON.stringify(after) === JSON.stringify(before)) return false;
  if (after.length) data[PLUGINS_KEY] = after;
  else delete data[PLUGINS_KEY];
  writeConfigFile(path, data);
  return true;
}
