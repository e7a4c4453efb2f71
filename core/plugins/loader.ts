// Loads built-in and configured plugins. A plugin that cannot load costs one warning line and
// nothing else: every other plugin and every core command keeps working.

import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { isPathSpec, type PluginRef } from "../config/load.ts";
import { PLUGIN_API_VERSION, type CommandFactory, type KtctlPlugin, type PluginApi } from "../plugin-api.ts";
import type { BuiltinPlugin } from "./builtin.ts";
import type { BuiltinState } from "./selection.ts";

export type PluginModuleLoader = () => Promise<unknown>;

export const BUILTIN_SOURCE = "built-in";

export interface LoadedPlugin {
  plugin: KtctlPlugin;
  /** "built-in" or the plugin's resolved file path. */
  source: string;
  /** The config file that enabled it (external plugins). */
  listedIn?: string;
  /** Commands this plugin provides (those lost to a name clash are not listed). */
  commands: string[];
}

export interface PluginCommand {
  name: string;
  plugin: LoadedPlugin;
  /** Imports the command module and returns its factory. */
  factory(): Promise<CommandFactory>;
}

/** A built-in that is switched off: not set up, its commands not added. */
export interface OffBuiltin {
  name: string;
  description?: string;
  apiVersion?: number;
  /** The config file that switched it off; undefined when it ships off. */
  setIn?: string;
  /** The commands it would add (read from its index module, which is all that is imported). */
  commands: string[];
}

export interface PluginLoadResult {
  plugins: LoadedPlugin[];
  /** Command name -> provider, in load order; the first provider of a name wins. */
  commands: Map<string, PluginCommand>;
  /** Built-ins switched off, in table order. */
  offBuiltins: OffBuiltin[];
  warnings: string[];
}

export interface LoadPluginsOptions {
  builtins: Record<string, BuiltinPlugin>;
  /** Which built-ins are on (selection.ts); each one's default when absent. */
  builtinStates?: readonly BuiltinState[];
  external: readonly PluginRef[];
  api: PluginApi;
  /** Command names the core owns; a plugin cannot take them. */
  reservedCommands: readonly string[];
}

interface Candidate {
  label: string;
  source: string;
  listedIn?: string;
  load: PluginModuleLoader;
}

const firstLine = (error: unknown) => (error instanceof Error ? error.message : String(error)).split("\n")[0]!.trim();

/** Where an external entry points: a file path (relative to its config file) or a package from there. */
export function resolvePluginRef(ref: PluginRef): string {
  if (isPathSpec(ref.spec)) {
    const expanded = ref.spec.startsWith("~/") || ref.spec.startsWith("~\\") ? resolve(homedir(), ref.spec.slice(2)) : ref.spec;
    const path = isAbsolute(expanded) ? expanded : resolve(ref.baseDir, expanded);
    if (!existsSync(path)) throw new Error(`file not found (listed in ${ref.listedIn})`);
    return path;
  }
  try {
    return Bun.resolveSync(ref.spec, ref.baseDir);
  } catch {
    throw new Error(`package not found from ${ref.baseDir} (listed in ${ref.listedIn}); install it there`);
  }
}

function externalCandidate(ref: PluginRef): Candidate {
  let path: string | undefined;
  let resolveError: unknown;
  try {
    path = resolvePluginRef(ref);
  } catch (error) {
    resolveError = error;
  }
  return {
    label: ref.spec,
    source: path ?? ref.spec,
    listedIn: ref.listedIn,
    load: () => (path ? import(pathToFileURL(path).href) : Promise.reject(resolveError)),
  };
}

/** Why a plugin cannot run on this host's API version, or undefined when it can. */
export function apiVersionMismatch(plugin: Pick<KtctlPlugin, "apiVersion" | "maxApiVersion">, host: number): string | undefined {
  const max = plugin.maxApiVersion ?? plugin.apiVersion;
  if (host >= plugin.apiVersion && host <= max) return undefined;
  const wanted = max === plugin.apiVersion ? `${plugin.apiVersion}` : `${plugin.apiVersion} to ${max}`;
  return `needs plugin API ${wanted}, ktctl has ${host}${host > max ? " (update the plugin)" : " (update ktctl)"}`;
}

function isPlugin(value: unknown): value is KtctlPlugin {
  if (typeof value !== "object" || value === null) return false;
  const p = value as Partial<KtctlPlugin>;
  if (typeof p.name !== "string" || p.name === "" || typeof p.apiVersion !== "number") return false;
  if (p.maxApiVersion !== undefined && (typeof p.maxApiVersion !== "number" || p.maxApiVersion < p.apiVersion)) return false;
  if (p.commands !== undefined && (typeof p.commands !== "object" || Object.values(p.commands).some((c) => typeof c !== "function"))) return false;
  return p.setup === undefined || typeof p.setup === "function";
}

/** A command entry may return the factory, a promise of it, or a module whose default export it is. */
async function factoryOf(entry: NonNullable<KtctlPlugin["commands"]>[string], command: string, plugin: string): Promise<CommandFactory> {
  const loaded = (await entry()) as unknown;
  const factory = typeof loaded === "function" ? loaded : (loaded as { default?: unknown } | null)?.default;
  if (typeof factory !== "function")
    throw new Error(`command "${command}" of plugin "${plugin}" does not export a command factory`);
  return factory as CommandFactory;
}

/** The built-ins to load, and the ones switched off. */
function splitBuiltins(options: LoadPluginsOptions): { on: Candidate[]; off: (BuiltinState & { load: PluginModuleLoader })[] } {
  const on: Candidate[] = [];
  const off: (BuiltinState & { load: PluginModuleLoader })[] = [];
  for (const [name, builtin] of Object.entries(options.builtins)) {
    const state = options.builtinStates?.find((s) => s.name === name) ?? { name, enabled: builtin.enabledByDefault };
    if (state.enabled) on.push({ label: name, source: BUILTIN_SOURCE, load: builtin.load });
    else off.push({ ...state, load: builtin.load });
  }
  return { on, off };
}

/** What an off built-in would add, so its commands can say how to switch it on. Never set up. */
async function describeOff(off: BuiltinState & { load: PluginModuleLoader }): Promise<OffBuiltin> {
  const described: OffBuiltin = { name: off.name, setIn: off.setIn, commands: [] };
  try {
    const plugin = ((await off.load()) as { default?: unknown } | null)?.default;
    if (isPlugin(plugin)) Object.assign(described, { description: plugin.description, apiVersion: plugin.apiVersion, commands: Object.keys(plugin.commands ?? {}) });
  } catch {
    // An off built-in that cannot even be read costs nothing: it is off.
  }
  return described;
}

export async function loadPlugins(options: LoadPluginsOptions): Promise<PluginLoadResult> {
  const builtins = splitBuiltins(options);
  const candidates: Candidate[] = [...builtins.on, ...options.external.map(externalCandidate)];
  // Import in parallel; register in order so the first provider of a command name is stable.
  const [modules, offBuiltins] = await Promise.all([
    Promise.allSettled(candidates.map((c) => c.load())),
    Promise.all(builtins.off.map(describeOff)),
  ]);

  const result: PluginLoadResult = { plugins: [], commands: new Map(), offBuiltins, warnings: [] };
  const reserved = new Set(options.reservedCommands);
  const byName = new Map<string, LoadedPlugin>();

  for (const [i, candidate] of candidates.entries()) {
    const outcome = modules[i]!;
    const refuse = (label: string, reason: string) =>
      result.warnings.push(`plugin "${label}" (${candidate.source}) not loaded: ${reason}`);
    if (outcome.status === "rejected") {
      refuse(candidate.label, `import failed: ${firstLine(outcome.reason)}`);
      continue;
    }
    const plugin = (outcome.value as { default?: unknown } | null)?.default;
    if (!isPlugin(plugin)) {
      refuse(candidate.label, "its default export is not a ktctl plugin ({ name, apiVersion, commands, setup? })");
      continue;
    }
    const unsupported = apiVersionMismatch(plugin, PLUGIN_API_VERSION);
    if (unsupported) {
      refuse(plugin.name, unsupported);
      continue;
    }
    const sameName = byName.get(plugin.name);
    if (sameName) {
      refuse(plugin.name, `a plugin with this name is already loaded (${sameName.source})`);
      continue;
    }
    try {
      await plugin.setup?.(options.api);
    } catch (error) {
      refuse(plugin.name, `setup failed: ${firstLine(error)}`);
      continue;
    }

    const loaded: LoadedPlugin = { plugin, source: candidate.source, listedIn: candidate.listedIn, commands: [] };
    byName.set(plugin.name, loaded);
    result.plugins.push(loaded);
    for (const [command, entry] of Object.entries(plugin.commands ?? {})) {
      const owner = reserved.has(command) ? "ktctl itself" : result.commands.get(command)?.plugin;
      if (owner) {
        const ownerText = typeof owner === "string" ? owner : `plugin "${owner.plugin.name}" (${owner.source})`;
        result.warnings.push(`plugin "${plugin.name}" (${candidate.source}): command "${command}" not added, already provided by ${ownerText}`);
        continue;
      }
      loaded.commands.push(command);
      result.commands.set(command, { name: command, plugin: loaded, factory: () => factoryOf(entry, command, plugin.name) });
    }
  }
  return result;
}
