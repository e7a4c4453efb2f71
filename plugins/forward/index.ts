// `ktctl forward`: local ports to a service, pod or deployment, through the session's tunnel.
import type { KtctlPlugin } from "../../core/plugin-api.ts";

export default {
  name: "forward",
  apiVersion: 1,
  description: "Forward local ports to a service, pod or deployment; follows pods that are replaced",
  commands: {
    forward: () => import("./forward.command.ts").then((m) => m.default),
  },
} satisfies KtctlPlugin;
