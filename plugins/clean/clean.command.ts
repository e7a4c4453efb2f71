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
      const { KtctlError, ExitCode } = api.errors;
      const options = { allNamespaces: Boolean(args.allNamespaces) };
      let kube = args.localOnly ? undefined : await api.kube(global);
      let plan;
      try {
        plan = await api.sessions.planClean(kube, { ...options, localOnly: !kube });
      } catch (error) {
        // A laptop that lost the cluster can still put its own files and rules back.
        if (!(error instanceof KtctlError) || error.exitCode !== ExitCode.unreachable) throw error;
        api.logger.warn(`${error.message}; cleaning this host only`);
        kube = undefined;
        plan = await api.sessions.planClean(undefined, { ...options, localOnly: true });
      }
      console.log(api.sessions.renderPlan(plan));
      // A record that cannot be read is said last, in one line with its own exit code, after all
      // that the cluster's own marks describe has been restored.
      const damaged = plan.damaged ?? [];
      const refuseDamaged = () => {
        if (!damaged.length) return;
        throw new KtctlError(
          `${damaged[0]}${damaged.length > 1 ? ` (and ${damaged.length - 1} more record(s), listed above)` : ""}`,
          ExitCode.localState,
          "what the cluster's records describe was restored; the record is left as found: read it, undo what it names by hand, then remove it",
        );
      };
      if (args.dryRun || !plan.entries.length) return refuseDamaged();
      const result = await api.sessions.executePlan(plan, kube);
      console.log(summary(result));
      if (result.entries.some((e) => e.outcome === "partial")) {
        throw new KtctlError("some steps could not be undone (see above)", ExitCode.failure, "fix the cause and run ktctl clean again");
      }
      refuseDamaged();
    },
  });

export default clean;
