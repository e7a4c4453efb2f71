// `ktctl status`: the sessions in a namespace (or all), alive or expired, and this host's journals.
import type { KtctlPlugin } from "../../core/plugin-api.ts";

export default {
  name: "status",
  apiVersion: 1,
  description: "List ktctl sessions: owner, mode, target, age, last renewal, alive or expired",
  commands: {
    status: () => import("./status.command.ts").then((m) => m.default),
  },
} satisfies KtctlPlugin;
