import { defineCommand } from "citty";
import { argsFor } from "../../options.ts";
import type { CoreCommandFactory } from "./index.ts";

export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ")).join("\n");
}

const pluginsCommand: CoreCommandFactory = ({ plugins }) =>
  defineCommand({
    meta: { name: "plugins", description: "List loaded plugins, their commands and where they come from" },
    args: argsFor("plugins"),
    run({ args }) {
      const list = plugins.plugins.map(({ plugin, source, listedIn, commands }) => ({
        name: plugin.name,
        apiVersion: plugin.apiVersion,
        description: plugin.description ?? "",
        source,
        ...(listedIn ? { listedIn } : {}),
        commands,
      }));
      if (args.output === "json") {
        console.log(JSON.stringify(list, null, 2));
        return;
      }
      if (list.length === 0) {
        console.log("no plugins loaded");
        return;
      }
      console.log(formatTable(
        ["NAME", "API", "COMMANDS", "SOURCE"],
        list.map((p) => [p.name, String(p.apiVersion), p.commands.join(", ") || "-", p.source]),
      ));
    },
  });

export default pluginsCommand;
