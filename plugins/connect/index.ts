// `ktctl connect`: the namespace's services, ClusterIPs and pod IPs reachable from this machine.
import type { KtctlPlugin } from "../../core/plugin-api.ts";

export default {
  name: "connect",
  apiVersion: 1,
  description: "Reach a namespace's services by name, ClusterIP and pod IP from this machine",
  commands: {
    connect: () => import("./connect.command.ts").then((m) => m.default),
  },
} satisfies KtctlPlugin;
