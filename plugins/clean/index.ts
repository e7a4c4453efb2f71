// `ktctl clean`: undo what dead or vanished sessions left behind, in the cluster and on this host.
import type { KtctlPlugin } from "../../core/plugin-api.ts";

export default {
  name: "clean",
  apiVersion: 1,
  description: "Undo what crashed or lost sessions left behind (expired leases, leftovers, local journals)",
  commands: {
    clean: () => import("./clean.command.ts").then((m) => m.default),
  },
} satisfies KtctlPlugin;
