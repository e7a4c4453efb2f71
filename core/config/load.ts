// The effective configuration: the user's file overridden by the project's file. Values are flag
// defaults by option name, at the top level (global options) or in a section named after a command
// (that command's options, or a global option for that command only); `plugins:` lists plugins.

import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { isKtctlError } from "../errors.ts";
import { coerceOption, GLOBAL_SCOPE, OPTIONS, optionsInScope, type OptionSpec, type OptionValue } from "../options.ts";
import { configError, isMapping, lineOfKey, parseConfigText, type ConfigData } from "./file.ts";
import { findProjectConfig, userConfigPath, type ConfigEnv } from "./paths.ts";

export const PLUGINS_KEY = "plugins";

export interface ConfigLayer {
  path: string;
  kind: "user" | "project";
  data: ConfigData;
  /** The file's text, kept to point messages at a line. */
  text: string;
}

/** A `plugins:` entry and where relative paths and package names are resolved from. */
export interface PluginRef {
  spec: string;
  baseDir: string;
  listedIn: string;
}

function readLayer(path: string, kind: ConfigLayer["kind"]): ConfigLayer | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw configError(path, `cannot read: ${(error as Error).message}`);
  }
  return { path, kind, data: parseConfigText(text, path), text };
}

function coerceFromLayer(spec: OptionSpec, raw: unknown, layer: ConfigLayer, shownKey: string): OptionValue {
  try {
    return coerceOption(spec, raw);
  } catch (error) {
    if (!isKtctlError(error)) throw error;
    // A top-level key is already named by the message; a section key gets its section in front.
    const message = shownKey === spec.name ? error.message : `${shownKey}: ${error.message}`;
    throw configError(layer.path, message, lineOfKey(layer.text, spec.name));
  }
}

/** Checks what can be checked without plugins loaded: global options and the plugin list. */
function checkLayer(layer: ConfigLayer, globals: readonly OptionSpec[]): void {
  for (const [key, value] of Object.entries(layer.data)) {
    if (key === PLUGINS_KEY) {
      if (!Array.isArray(value) || value.some((entry) => typeof entry !== "string" || entry.trim() === ""))
        throw configError(layer.path, 'plugins: expected a list of plugin file paths or package names, or built-in names ("!NAME" switches one off)', lineOfKey(layer.text, key));
      continue;
    }
    const spec = globals.find((o) => o.name === key);
    if (spec) {
      if (value !== null) layer.data[key] = coerceFromLayer(spec, value, layer, key);
      continue;
    }
    if (isMapping(value)) {
      for (const [inner, innerValue] of Object.entries(value)) {
        const innerSpec = globals.find((o) => o.name === inner);
        if (innerSpec && innerValue !== null) value[inner] = coerceFromLayer(innerSpec, innerValue, layer, `${key}.${inner}`);
      }
    }
  }
}

export class EffectiveConfig {
  constructor(
    /** Lowest precedence first: the user's file, then the project's. */
    readonly layers: readonly ConfigLayer[],
    readonly userPath: string,
    readonly projectPath: string | undefined,
  ) {}

  /** All settings merged; command sections are merged key by key. */
  all(): Record<string, unknown> {
    const merged: Record<string, unknown> = {};
    for (const layer of this.layers) {
      for (const [key, value] of Object.entries(layer.data)) {
        if (value === null) continue;
        if (key === PLUGINS_KEY) continue;
        merged[key] = isMapping(value) && isMapping(merged[key]) ? { ...merged[key], ...value } : value;
      }
    }
    const plugins = this.plugins().map((p) => p.spec);
    if (plugins.length > 0) merged[PLUGINS_KEY] = plugins;
    return merged;
  }

  /** A setting by dotted path, e.g. "namespace" or "forward.address". */
  get<T = unknown>(key: string): T | undefined {
    let value: unknown = this.all();
    for (const part of key.split(".")) {
      if (!isMapping(value)) return undefined;
      value = value[part];
    }
    return value as T | undefined;
  }

  /** Which file sets a dotted key, the project's winning over the user's. */
  sourceOf(key: string): string | undefined {
    for (const layer of [...this.layers].reverse()) {
      let value: unknown = layer.data;
      for (const part of key.split(".")) value = isMapping(value) ? value[part] : undefined;
      if (value !== undefined && value !== null) return layer.path;
    }
    return undefined;
  }

  /**
   * Flag defaults for one command: for each file in precedence order its global values, then its
   * section for the command. `commandOptions` types the section's own keys.
   */
  defaultsFor(scope: string, commandOptions: readonly OptionSpec[] = []): Record<string, OptionValue> {
    const defaults: Record<string, OptionValue> = {};
    const globals = optionsInScope(GLOBAL_SCOPE);
    for (const layer of this.layers) {
      for (const spec of globals) {
        const value = layer.data[spec.name];
        if (value !== undefined && value !== null) defaults[spec.name] = value as OptionValue;
      }
      const section = scope === GLOBAL_SCOPE ? undefined : layer.data[scope];
      if (!isMapping(section)) continue;
      for (const [key, value] of Object.entries(section)) {
        if (value === undefined || value === null) continue;
        const spec = commandOptions.find((o) => o.name === key) ?? globals.find((o) => o.name === key);
        if (spec) defaults[key] = coerceFromLayer(spec, value, layer, `${scope}.${key}`);
      }
    }
    return defaults;
  }

  /** Plugin entries from all files, user's first; the same entry listed twice is given once. */
  plugins(): PluginRef[] {
    const seen = new Set<string>();
    return this.pluginEntries().filter((ref) => {
      const identity = pluginIdentity(ref);
      if (seen.has(identity)) return false;
      seen.add(identity);
      return true;
    });
  }

  /**
   * Every plugin entry of every file, user's first, repeats kept: for a built-in switched on in one
   * file and off in another, the order is the answer (core/plugins/selection.ts).
   */
  pluginEntries(): PluginRef[] {
    const refs: PluginRef[] = [];
    for (const layer of this.layers) {
      const list = layer.data[PLUGINS_KEY];
      if (!Array.isArray(list)) continue;
      const baseDir = dirname(layer.path);
      for (const spec of list as string[]) refs.push({ spec, baseDir, listedIn: layer.path });
    }
    return refs;
  }
}

/** What makes two entries the same plugin: the resolved file for a path, the name for a package. */
export const pluginIdentity = (ref: Pick<PluginRef, "spec" | "baseDir">): string => (isPathSpec(ref.spec) ? resolve(ref.baseDir, ref.spec) : ref.spec);

/** True for entries that name a file rather than a package: absolute, ./ ../ ~/, or with a script extension. */
export function isPathSpec(spec: string): boolean {
  return /^(\/|\.{1,2}[\\/]|~[\\/]|[A-Za-z]:[\\/]|\\\\)/.test(spec) || /\.(m?[jt]s|[jt]sx|c[jt]s)$/.test(spec);
}

export function loadConfig({ env = process.env, cwd = process.cwd() }: ConfigEnv = {}): EffectiveConfig {
  const userPath = userConfigPath(env);
  const projectPath = findProjectConfig(cwd);
  const layers: ConfigLayer[] = [];
  const user = readLayer(userPath, "user");
  if (user) layers.push(user);
  if (projectPath) {
    const project = readLayer(projectPath, "project");
    if (project) layers.push(project);
  }
  const globals = optionsInScope(GLOBAL_SCOPE, OPTIONS);
  for (const layer of layers) checkLayer(layer, globals);
  return new EffectiveConfig(layers, userPath, projectPath);
}
