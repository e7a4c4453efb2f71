// Loads built-in and configured plugins. A plugin that cannot load costs one warning line and
// nothing else: every other plugin and every core command keeps working.

import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { isPathSpec, type PluginRef } from "../config/load.ts";
import { PLUGIN_API_VERSION, type CommandFactory, type KtctlPlugin, type PluginApi } from "../plugin-api.ts";

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

export interface PluginLoadResult {
  plugins: LoadedPlugin[];
  /** Command name -> provider, in load order; the first provider of a name wins. */
  commands: Map<string, PluginCommand>;
  warnings: string[];
}

export interface LoadPluginsOptions {
  builtins: Record<string, PluginModuleLoader>;
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

function isPlugin(value: unknown): value is KtctlPlugin {
  if (typeof value !== "object" || value === null) return false;
  const p = value as Partial<KtctlPlugin>;
  if (typeof p.name !== "string" || p.name === "" || typeof p.apiVersion !== "number") return false;
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

export async function loadPlugins(options: LoadPluginsOptions): Promise<PluginLoadResult> {
  const candidates: Candidate[] = [
    ...Object.entries(options.builtins).map(([name, load]) => ({ label: name, source: BUILTIN_SOURCE, load })),
    ...options.external.map(externalCandidate),
  ];
  // Import in parallel; register in order so the first provider of a command name is stable.
  const modules = await Promise.allSettled(candidates.map((c) => c.load()));

  const result: PluginLoadResult = { plugins: [], commands: new Map(), warnings: [] };
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
    if (plugin.apiVersion !== PLUGIN_API_VERSION) {
      refuse(plugin.name, `needs plugin API ${plugin.apiVersion}, ktctl has ${PLUGIN_API_VERSION}`);
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
