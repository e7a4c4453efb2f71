// Which plugins a run loads, from the `plugins:` lists of the config files (user's first, then the
// project's). An entry is one of:
//   "!NAME"   switch the built-in NAME off
//   "NAME"    switch the built-in NAME on (for a built-in that ships off; harmless for one that is on)
//   anything else: a team's plugin, by file path or package name
// For a built-in, the last entry that names it wins, so a project's .ktctl.yaml overrides the user's
// file. To load a package that has a built-in's name, list its path instead.

import { pluginIdentity, type PluginRef } from "../config/load.ts";
import { ExitCode, KtctlError } from "../errors.ts";
import type { OffBuiltin, PluginLoadResult } from "./loader.ts";

export const DISABLE_PREFIX = "!";

export interface BuiltinState {
  name: string;
  enabled: boolean;
  /** The config file whose entry decided it; undefined when it is the built-in's default. */
  setIn?: string;
}

export interface PluginSelection {
  builtins: BuiltinState[];
  /** Team plugins to load, each once, in order. */
  external: PluginRef[];
  warnings: string[];
}

/** What an entry says about a built-in, or undefined when it names a team plugin. */
export function builtinChoice(spec: string, builtinNames: readonly string[]): { name: string; enabled: boolean } | undefined {
  const trimmed = spec.trim();
  if (trimmed.startsWith(DISABLE_PREFIX)) return { name: trimmed.slice(DISABLE_PREFIX.length).trim(), enabled: false };
  return builtinNames.includes(trimmed) ? { name: trimmed, enabled: true } : undefined;
}

export function selectPlugins(entries: readonly PluginRef[], builtins: Record<string, { enabledByDefault: boolean }>): PluginSelection {
  const names = Object.keys(builtins);
  const states = new Map<string, BuiltinState>(names.map((name) => [name, { name, enabled: builtins[name]!.enabledByDefault }]));
  const external: PluginRef[] = [];
  const seen = new Set<string>();
  const warnings: string[] = [];
  for (const ref of entries) {
    const choice = builtinChoice(ref.spec, names);
    if (!choice) {
      const identity = pluginIdentity(ref);
      if (!seen.has(identity)) external.push(ref);
      seen.add(identity);
      continue;
    }
    if (!states.has(choice.name)) {
      warnings.push(`"${ref.spec}" in ${ref.listedIn} names no built-in plugin (built-ins: ${names.join(", ")}); only built-ins can be switched off`);
      continue;
    }
    states.set(choice.name, { name: choice.name, enabled: choice.enabled, setIn: ref.listedIn });
  }
  return { builtins: [...states.values()], external, warnings };
}

/** Why a built-in is off, for messages: "switched off in FILE" or "off by default". */
export const offReason = (off: Pick<OffBuiltin, "setIn">): string => (off.setIn ? `switched off in ${off.setIn}` : "off by default");

/** The error for a command of a switched-off built-in (when no loaded plugin provides it). */
export function offCommandError(plugins: Pick<PluginLoadResult, "offBuiltins">, command: string): KtctlError | undefined {
  const off = plugins.offBuiltins.find((p) => p.commands.includes(command));
  if (!off) return undefined;
  return new KtctlError(
    `command "${command}" belongs to the built-in plugin "${off.name}", which is ${offReason(off)}`,
    ExitCode.pluginOff,
    `switch it on with "ktctl plugins enable ${off.name}"${off.setIn ? ` (or remove "${DISABLE_PREFIX}${off.name}" from ${off.setIn})` : ""}`,
  );
}
