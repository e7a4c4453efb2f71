// The core's own commands, one module each, imported only when used (name -> import).

import type { CommandDef } from "citty";
import type { EffectiveConfig } from "../../config/load.ts";
import type { OptionSpec } from "../../options.ts";
import type { PluginApi } from "../../plugin-api.ts";
import type { PluginLoadResult } from "../../plugins/loader.ts";
import type { SessionHost } from "../../session/index.ts";
import type { LazyCommand } from "../lazy-command.ts";

export interface CoreContext {
  api: PluginApi;
  sessionHost(): Promise<SessionHost>;
  config: EffectiveConfig;
  plugins: PluginLoadResult;
  /** Every top-level command, plugin commands included (for completion). */
  commands(): LazyCommand[];
  /** Option rows of every command (core table and plugin commands' own flags), for config keys. */
  commandOptions(): Promise<OptionSpec[]>;
}

export type CoreCommandFactory = (ctx: CoreContext) => CommandDef<any> | Promise<CommandDef<any>>;

export const CORE_COMMANDS: Record<string, () => Promise<{ default: CoreCommandFactory }>> = {
  version: () => import("./version.ts"),
  config: () => import("./config.ts"),
  plugins: () => import("./plugins.ts"),
  completion: () => import("./completion.ts"),
  __complete: () => import("./complete.ts"),
  __watchdog: () => import("./watchdog.ts"),
};
