import type { CommandFactory, SessionInfo } from "../../core/plugin-api.ts";

const age = (seconds: number | undefined) => {
  if (seconds === undefined) return "-";
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
};

/** A kubectl-like table. */
export function renderTable(sessions: SessionInfo[], allNamespaces: boolean): string {
  if (!sessions.length) return "no ktctl sessions";
  const header = [...(allNamespaces ? ["NAMESPACE"] : []), "SESSION", "OWNER", "MODE", "TARGET", "AGE", "RENEWED", "STATE", "STEPS"];
  const rows = sessions.map((s) => [
    ...(allNamespaces ? [s.namespace] : []),
    s.id,
    s.owner,
    s.mode,
    s.target ?? "-",
    age(s.ageSeconds),
    s.renewedSecondsAgo !== undefined ? `${age(s.renewedSecondsAgo)} ago` : "-",
    s.state,
    String(s.pendingSteps),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join("   ").trimEnd()).join("\n");
}

const status: CommandFactory = (api) =>
  api.defineCommand({
    meta: { name: "status", description: "List ktctl sessions with owner, mode, target, age, last renewal and state" },
    args: {
      ...api.globalArgs,
      output: { type: "string", alias: "o", description: "Output format: table or json", default: "table" },
      allNamespaces: { type: "boolean", alias: "A", description: "List sessions of every namespace", default: false },
    },
    async run({ args }) {
      const output = String(args.output);
      if (output !== "table" && output !== "json") {
        throw new api.errors.KtctlError(`invalid output "${output}": use table or json`, api.errors.ExitCode.usage);
      }
      const global = api.globalOptions(args);
      const kube = await api.kube(global);
      const all = Boolean(args.allNamespaces);
      const sessions = await api.sessions.list(kube, { allNamespaces: all });
      console.log(output === "json" ? JSON.stringify(sessions, null, 2) : renderTable(sessions, all));
    },
  });

export default status;
