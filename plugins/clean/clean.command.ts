import type { CleanResult, CommandFactory } from "../../core/plugin-api.ts";

function summary(result: CleanResult): string {
  const lines = result.entries.map((e) => {
    const tail = e.detail ? `: ${e.detail}` : e.failures.length ? `: ${e.failures.join("; ")}` : "";
    return `session ${e.sessionId}: ${e.outcome}${tail}`;
  });
  lines.push(`${result.undone} step(s) undone, ${result.failed} failed`);
  return lines.join("\n");
}

const clean: CommandFactory = (api) =>
  api.defineCommand({
    meta: {
      name: "clean",
      description: "Undo sessions whose lease expired (by the API server's clock) or whose process is gone on this host",
    },
    args: {
      ...api.globalArgs,
      dryRun: { type: "boolean", description: "Only show what would be undone", default: false },
      localOnly: { type: "boolean", description: "Only this host's leftovers; do not touch the cluster", default: false },
      allNamespaces: { type: "boolean", alias: "A", description: "Look in every namespace", default: false },
    },
    async run({ args }) {
      const global = api.globalOptions(args);
      const localOnly = Boolean(args.localOnly);
      const kube = localOnly ? undefined : await api.kube(global);
      const plan = await api.sessions.planClean(kube, {
        namespace: global.namespace,
        allNamespaces: Boolean(args.allNamespaces),
        localOnly,
      });
      console.log(api.sessions.renderPlan(plan));
      if (args.dryRun || !plan.entries.length) return;
      const result = await api.sessions.executePlan(plan, kube);
      console.log(summary(result));
      if (result.entries.some((e) => e.outcome === "partial")) {
        throw new api.errors.KtctlError("some steps could not be undone (see above)", api.errors.ExitCode.failure, "fix the cause and run ktctl clean again");
      }
    },
  });

export default clean;
