// Built-in plugins, each a static import so `bun build --compile` bundles it. They are loaded
// through the same contract as a team's own plugin, and like one they can be switched off: the
// `plugins:` list of a config file disables one with "!NAME" and enables one with "NAME"
// (selection.ts). Only folders that exist may be listed: a missing one fails the compiled build
// (and warns when run from source).

import type { PluginModuleLoader } from "./loader.ts";

export interface BuiltinPlugin {
  load: PluginModuleLoader;
  /** On unless a config file says "!NAME"; an off one ships dark until a config file says "NAME". */
  enabledByDefault: boolean;
}

export const BUILTIN_PLUGINS: Record<string, BuiltinPlugin> = {
  forward: { load: () => import("../../plugins/forward/index.ts"), enabledByDefault: true },
  connect: { load: () => import("../../plugins/connect/index.ts"), enabledByDefault: true },
  clean: { load: () => import("../../plugins/clean/index.ts"), enabledByDefault: true },
  status: { load: () => import("../../plugins/status/index.ts"), enabledByDefault: true },
  exchange: { load: () => import("../../plugins/exchange/index.ts"), enabledByDefault: true },
  preview: { load: () => import("../../plugins/preview/index.ts"), enabledByDefault: true },
  mesh: { load: () => import("../../plugins/mesh/index.ts"), enabledByDefault: true },
  ui: { load: () => import("../../plugins/ui/index.ts"), enabledByDefault: true },
  "spring-cloud": { load: () => import("../../plugins/spring-cloud/index.ts"), enabledByDefault: false },
};
