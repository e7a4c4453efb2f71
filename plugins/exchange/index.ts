// `ktctl exchange` (a service's in-cluster traffic served by this machine) and `ktctl recover`
// (one service put back from the cluster's own records).
import type { KtctlPlugin } from "../../core/plugin-api.ts";

export default {
  name: "exchange",
  apiVersion: 1,
  description: "Serve a service's in-cluster traffic from this machine; recover a service from ktctl's records",
  commands: {
    exchange: () => import("./exchange.command.ts").then((m) => m.default),
    recover: () => import("./recover.command.ts").then((m) => m.default),
  },
} satisfies KtctlPlugin;
