// `ktctl ui`: the local page. It uses only the plugin API: the channel, the traffic tap and the
// session listing all live in the core behind api.ui and api.sessions.
import type { KtctlPlugin } from "../../core/plugin-api.ts";

export default {
  name: "ui",
  apiVersion: 1,
  description: "A local web page: sessions, the traffic that reaches the laptop, mesh routes, connect's names",
  commands: {
    ui: () => import("./ui.command.ts").then((m) => m.default),
  },
} satisfies KtctlPlugin;
