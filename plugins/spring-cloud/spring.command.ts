// `ktctl spring run|config|doctor`.
import type { CommandFactory } from "../../core/plugin-api.ts";

const spring: CommandFactory = async (api) =>
  api.defineCommand({
    meta: { name: "spring", description: "Spring Cloud Kubernetes on this machine: run an app as in its namespace, its config, a doctor" },
    subCommands: {
      run: async () => (await import("./run.command.ts")).default(api),
      config: async () => (await import("./config.command.ts")).default(api),
      doctor: async () => (await import("./doctor.command.ts")).default(api),
    },
  });

export default spring;
