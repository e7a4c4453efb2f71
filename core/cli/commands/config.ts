// `ktctl config get|set|unset|list`: flag defaults kept in ~/.ktctl/config.yaml or, with --local,
// the project's .ktctl.yaml. Keys and values are checked against the options table.

import { dirname, isAbsolute, relative, resolve, sep } from "node:path";
import { defineCommand } from "citty";
import { isPathSpec } from "../../config/load.ts";
import { configKeys, resolveConfigKey, parseConfigValue, type ConfigKey } from "../../config/keys.ts";
import { setConfigValue, targetConfigPath, unsetConfigValue } from "../../config/edit.ts";
import { ExitCode, KtctlError } from "../../errors.ts";
import { argsFor, OPTIONS } from "../../options.ts";
import type { CoreCommandFactory, CoreContext } from "./index.ts";
import { formatTable } from "./plugins.ts";

async function knownKeys(ctx: CoreContext): Promise<ConfigKey[]> {
  return configKeys([...OPTIONS, ...(await ctx.commandOptions())]);
}

/** A plugin path typed relative to the working directory, rewritten relative to the file it goes into. */
function relativeToConfigFile(spec: string, configPath: string): string {
  if (!isPathSpec(spec) || isAbsolute(spec) || spec.startsWith("~")) return spec;
  const fromConfig = relative(dirname(configPath), resolve(spec)).split(sep).join("/");
  return fromConfig.startsWith("../") ? fromConfig : `./${fromConfig}`;
}

const show = (value: unknown) => (Array.isArray(value) ? value.join(",") : String(value));

const configCommand: CoreCommandFactory = (ctx) =>
  defineCommand({
    meta: { name: "config", description: "Read and write flag defaults in ~/.ktctl/config.yaml or .ktctl.yaml" },
    subCommands: {
      get: defineCommand({
        meta: { name: "get", description: "Print a setting's effective value" },
        args: { key: { type: "positional", required: true, description: 'Option name, or "<command>.<option>"' } },
        async run({ args }) {
          const key = resolveConfigKey(args.key, await knownKeys(ctx));
          const value = ctx.config.get(key.key) ?? key.spec?.default;
          if (value === undefined) throw new KtctlError(`"${key.key}" is not set`, ExitCode.notFound);
          console.log(Array.isArray(value) ? value.join("\n") : String(value));
        },
      }),
      set: defineCommand({
        meta: { name: "set", description: "Store a setting" },
        args: {
          key: { type: "positional", required: true, description: 'Option name, or "<command>.<option>"' },
          value: { type: "positional", required: true, description: "Value (plugins: comma-separated)" },
          ...argsFor("config"),
        },
        async run({ args }) {
          const key = resolveConfigKey(args.key, await knownKeys(ctx));
          const path = targetConfigPath(Boolean(args.local));
          const parsed = parseConfigValue(key, args.value);
          const value = Array.isArray(parsed) ? parsed.map((spec) => relativeToConfigFile(spec, path)) : parsed;
          setConfigValue(path, key, value);
          console.log(`${key.key} = ${show(value)} (in ${path})`);
        },
      }),
      unset: defineCommand({
        meta: { name: "unset", description: "Remove a setting" },
        args: {
          key: { type: "positional", required: true, description: 'Option name, or "<command>.<option>"' },
          ...argsFor("config"),
        },
        async run({ args }) {
          const key = resolveConfigKey(args.key, await knownKeys(ctx));
          const path = targetConfigPath(Boolean(args.local));
          const removed = unsetConfigValue(path, key);
          console.log(removed ? `${key.key} removed (from ${path})` : `${key.key} was not set in ${path}`);
        },
      }),
      list: defineCommand({
        meta: { name: "list", description: "Show effective settings and where each comes from" },
        args: { all: { type: "boolean", description: "Also list keys that have no value" } },
        async run({ args }) {
          const rows: string[][] = [];
          for (const key of await knownKeys(ctx)) {
            // The plugin list is the union of both files, so it names every file that adds to it.
            const source = key.spec ? ctx.config.sourceOf(key.key) : [...new Set(ctx.config.plugins().map((p) => p.listedIn))].join(", ") || undefined;
            const value = ctx.config.get(key.key);
            if (value !== undefined && source) rows.push([key.key, show(value), source]);
            else if (!key.path.slice(0, -1).length && key.spec?.default !== undefined) rows.push([key.key, show(key.spec.default), "default"]);
            else if (args.all) rows.push([key.key, "-", "-"]);
          }
          console.log(formatTable(["KEY", "VALUE", "SOURCE"], rows));
        },
      }),
    },
  });

export default configCommand;
