// `ktctl spring`: a Spring Cloud Kubernetes service runs on this machine as in its namespace. Built
// in but off until a config file enables it (`plugins: [spring-cloud]`). It composes the other modes
// by running this ktctl's own commands (api.self), so it needs no other plugin's code.
import type { KtctlPlugin } from "../../core/plugin-api.ts";

export default {
  name: "spring-cloud",
  apiVersion: 1,
  description: "Run a Spring Cloud Kubernetes service on this machine as in its namespace (spring run, config, doctor)",
  commands: {
    spring: () => import("./spring.command.ts").then((m) => m.default),
  },
} satisfies KtctlPlugin;
