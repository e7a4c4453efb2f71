// Builds the root command: plugin commands (modes first, in load order) and the core's commands,
// every one of them lazy.

import type { CommandDef } from "citty";
import type { EffectiveConfig } from "../config/load.ts";
import { OPTIONS, GLOBAL_SCOPE, type OptionSpec } from "../options.ts";
import type { PluginApi } from "../plugin-api.ts";
import type { PluginLoadResult } from "../plugins/loader.ts";
import type { SessionHost } from "../session/index.ts";
import { VERSION } from "../protocol/version.ts";
import { CORE_COMMANDS, type CoreContext } from "./commands/index.ts";
import { lazyCommand, type LazyCommand } from "./lazy-command.ts";
import { programName } from "./program.ts";

export interface RootParts {
  api: PluginApi;
  sessionHost(): Promise<SessionHost>;
  config: EffectiveConfig;
  plugins: PluginLoadResult;
}

export function buildCommands({ api, sessionHost, config, plugins }: RootParts): LazyCommand[] {
  const commands: LazyCommand[] = [];
  for (const command of plugins.commands.values()) {
    commands.push(lazyCommand(command.name, async () => (await command.factory())(api), config));
  }
  const context: CoreContext = {
    api,
    sessionHost,
    config,
    plugins,
    commands: () => commands,
    commandOptions: async () => {
      const pluginRows = await Promise.all(commands.map((c) => c.ownOptions()));
      const coreRows = OPTIONS.filter((o) => o.scope !== GLOBAL_SCOPE);
      // Core rows first: they are the table's own; plugin rows add the plugin commands' flags.
      return [...coreRows, ...pluginRows.flat().filter((r) => !coreRows.some((c) => c.scope === r.scope && c.name === r.name))] as OptionSpec[];
    },
  };
  for (const [name, importer] of Object.entries(CORE_COMMANDS)) {
    commands.push(lazyCommand(name, async () => (await importer()).default(context), config));
  }
  return commands;
}

export function buildRootCommand(parts: RootParts, commands: LazyCommand[]): CommandDef<any> {
  return {
    meta: {
      name: programName(),
      version: VERSION,
      description: "Run one service on your laptop as if it were inside a Kubernetes namespace",
    },
    args: parts.api.globalArgs,
    subCommands: Object.fromEntries(commands.map((c) => [c.name, () => c.resolve()])),
  };
}
