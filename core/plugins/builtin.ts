// Built-in plugins, each a static import so `bun build --compile` bundles it. They are loaded
// through the same contract as a team's own plugin. Only folders that exist may be listed: a
// missing one fails the compiled build (and warns when run from source).

import type { PluginModuleLoader } from "./loader.ts";

export const BUILTIN_PLUGINS: Record<string, PluginModuleLoader> = {
  forward: () => import("../../plugins/forward/index.ts"),
  connect: () => import("../../plugins/connect/index.ts"),
  clean: () => import("../../plugins/clean/index.ts"),
  status: () => import("../../plugins/status/index.ts"),
  exchange: () => import("../../plugins/exchange/index.ts"),
  preview: () => import("../../plugins/preview/index.ts"),
  mesh: () => import("../../plugins/mesh/index.ts"),
  // Off until a config file enables it (plugins: [spring-cloud]); the flag is wired at merge.
  "spring-cloud": () => import("../../plugins/spring-cloud/index.ts"),
};
