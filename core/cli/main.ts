#!/usr/bin/env bun
// ktctl's entry. Start-up stays small: config files, the tiny plugin index modules and citty. The
// kube client, ssh and the session machinery load only inside the command that needs them.

import { loadConfig, type EffectiveConfig } from "../config/load.ts";
import { createHostApi } from "../plugins/api.ts";
import { BUILTIN_PLUGINS } from "../plugins/builtin.ts";
import { loadPlugins } from "../plugins/loader.ts";
import { offCommandError, selectPlugins } from "../plugins/selection.ts";
import { CORE_COMMANDS } from "./commands/index.ts";
import { commandPath, dispatch } from "./dispatch.ts";
import { exitWithError } from "./errors.ts";
import { createLogger, debugRequested } from "./logger.ts";
import { buildCommands, buildRootCommand } from "./root.ts";

export async function main(rawArgs: string[]): Promise<void> {
  let config: EffectiveConfig;
  try {
    config = loadConfig();
  } catch (error) {
    exitWithError(error, debugRequested(rawArgs, false));
  }
  const debug = debugRequested(rawArgs, config.get("debug"));
  const logger = createLogger(debug);
  // Errors that escape a command's promise chain still get the one-line treatment, not Bun's dump.
  process.on("unhandledRejection", (error) => exitWithError(error, debug));
  process.on("uncaughtException", (error) => exitWithError(error, debug));
  let root;
  try {
    const { api, sessionHost } = createHostApi({ config, logger });
    const selection = selectPlugins(config.pluginEntries(), BUILTIN_PLUGINS);
    const plugins = await loadPlugins({
      builtins: BUILTIN_PLUGINS,
      builtinStates: selection.builtins,
      external: selection.external,
      api,
      reservedCommands: Object.keys(CORE_COMMANDS),
    });
    // One plain line each, whatever the terminal: a broken plugin must not drown the command's output.
    for (const warning of [...selection.warnings, ...plugins.warnings]) process.stderr.write(`ktctl: warning: ${warning}\n`);
    const parts = { api, sessionHost, config, plugins };
    root = buildRootCommand(parts, buildCommands(parts));
    await dispatch(root, rawArgs, { unknownCommand: (name) => offCommandError(plugins, name) });
  } catch (error) {
    exitWithError(error, debug, root ? await commandPath(root, rawArgs) : "ktctl");
  }
}

if (import.meta.main) await main(process.argv.slice(2));
