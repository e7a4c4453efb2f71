// `ktctl preview`: a local process published as a new service of the namespace.
import type { KtctlPlugin } from "../../core/plugin-api.ts";

export default {
  name: "preview",
  apiVersion: 1,
  description: "Publish a local process as a new service in the namespace (optionally reachable from outside)",
  commands: {
    preview: () => import("./preview.command.ts").then((m) => m.default),
  },
} satisfies KtctlPlugin;
