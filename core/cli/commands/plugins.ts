// `ktctl plugins`: what is loaded, from where, and which built-ins are switched off.
// `ktctl plugins enable|disable NAME [--local]` switches a built-in on or off in a config file.

import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { defineCommand } from "citty";
import { loadConfig } from "../../config/load.ts";
import { setPluginEntry, targetConfigPath } from "../../config/edit.ts";
import { ExitCode, KtctlError } from "../../errors.ts";
import { argsFor } from "../../options.ts";
import { BUILTIN_PLUGINS } from "../../plugins/builtin.ts";
import { BUILTIN_SOURCE, type PluginLoadResult } from "../../plugins/loader.ts";
import { DISABLE_PREFIX, offReason, selectPlugins, type BuiltinState } from "../../plugins/selection.ts";
import type { CoreCommandFactory } from "./index.ts";

export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ")).join("\n");
}

function listPlugins(plugins: PluginLoadResult, output: unknown): void {
  const loaded = plugins.plugins.map(({ plugin, source, listedIn, commands }) => ({
    name: plugin.name,
    apiVersion: plugin.apiVersion,
    description: plugin.description ?? "",
    source,
    ...(listedIn ? { listedIn } : {}),
    commands,
    ...(source === BUILTIN_SOURCE ? { state: "on" } : {}),
  }));
  const off = plugins.offBuiltins.map((p) => ({
    name: p.name,
    ...(p.apiVersion !== undefined ? { apiVersion: p.apiVersion } : {}),
    description: p.description ?? "",
    source: BUILTIN_SOURCE,
    commands: p.commands,
    state: "off",
    ...(p.setIn ? { setIn: p.setIn } : {}),
  }));
  if (output === "json") {
    console.log(JSON.stringify([...loaded, ...off], null, 2));
    return;
  }
  if (loaded.length + off.length === 0) {
    console.log("no plugins loaded");
    return;
  }
  console.log(formatTable(
    ["NAME", "API", "COMMANDS", "SOURCE"],
    [
      ...loaded.map((p) => [p.name, String(p.apiVersion), p.commands.join(", ") || "-", p.source]),
      ...plugins.offBuiltins.map((p) => [p.name, p.apiVersion === undefined ? "-" : String(p.apiVersion), p.commands.join(", ") || "-", `${BUILTIN_SOURCE}, off (${offReason(p)})`]),
    ],
  ));
}

/** A built-in's state as the config files decide it now. */
function currentState(name: string): BuiltinState {
  return selectPlugins(loadConfig().pluginEntries(), BUILTIN_PLUGINS).builtins.find((b) => b.name === name)!;
}

/**
 * Switches a built-in on or off in one file: that file's entries about it go, and an entry is
 * written only where the other files and the default would not give the wanted state anyway.
 */
function switchBuiltin(name: string, enable: boolean, local: boolean): string {
  if (!(name in BUILTIN_PLUGINS)) {
    throw new KtctlError(
      `"${name}" is not a built-in plugin (built-ins: ${Object.keys(BUILTIN_PLUGINS).join(", ")})`,
      ExitCode.usage,
      "a team's plugin is switched on by listing its path or package under plugins: (ktctl config set plugins ...)",
    );
  }
  const path = targetConfigPath(local);
  const original = existsSync(path) ? readFileSync(path) : undefined;
  setPluginEntry(path, name, undefined);
  if (currentState(name).enabled !== enable) setPluginEntry(path, name, enable ? name : `${DISABLE_PREFIX}${name}`);
  const state = currentState(name);
  if (state.enabled !== enable) {
    // An edit that cannot win is not left behind.
    if (original) writeFileSync(path, original);
    else rmSync(path, { force: true });
    throw new KtctlError(
      `${name} stays ${state.enabled ? "on" : "off"}: ${state.setIn} says so and takes precedence over ${path}`,
      ExitCode.config,
      local ? `edit ${state.setIn}` : `run "ktctl plugins ${enable ? "enable" : "disable"} ${name} --local"`,
    );
  }
  const where = state.setIn ? `in ${state.setIn}` : "its default";
  return `${name}: ${enable ? "on" : "off"} (${where})`;
}

const pluginsCommand: CoreCommandFactory = ({ plugins }) =>
  defineCommand({
    meta: { name: "plugins", description: "List loaded plugins, their commands and where they come from; enable or disable a built-in" },
    args: {
      action: { type: "positional", required: false, description: "enable or disable (none: list)" },
      name: { type: "positional", required: false, description: "The built-in plugin to switch on or off" },
      ...argsFor("plugins"),
      ...argsFor("config"),
    },
    run({ args }) {
      const action = args.action as string | undefined;
      if (action === undefined) return listPlugins(plugins, args.output);
      if (action !== "enable" && action !== "disable") {
        throw new KtctlError(`unknown plugins action "${action}"`, ExitCode.usage, 'use "ktctl plugins", "ktctl plugins enable NAME" or "ktctl plugins disable NAME"');
      }
      const name = args.name as string | undefined;
      if (!name) throw new KtctlError(`which plugin? e.g. "ktctl plugins ${action} exchange"`, ExitCode.usage);
      console.log(switchBuiltin(name, action === "enable", Boolean(args.local)));
    },
  });

export default pluginsCommand;
