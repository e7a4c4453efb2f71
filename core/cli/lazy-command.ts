// A top-level command built on first use. Every command, core or plugin, gets the global flags and
// takes its flag defaults from the config files (global values, then its own section); the
// module behind it is imported only when the command runs or its help is shown.

import type { ArgDef, ArgsDef, CommandDef, CommandMeta } from "citty";
import type { EffectiveConfig } from "../config/load.ts";
import { ExitCode, KtctlError } from "../errors.ts";
import { argsFor, globalOptions, GLOBAL_SCOPE, optionsFromArgs, type OptionSpec, type OptionValue } from "../options.ts";

export interface LazyCommand {
  name: string;
  /** The citty command, built once; a command that fails to build becomes one that reports why. */
  resolve(): Promise<CommandDef<any>>;
  /** The command's own flags as option rows (for config keys); empty when it failed to build. */
  ownOptions(): Promise<OptionSpec[]>;
}

const resolveValue = async <T>(value: T | Promise<T> | (() => T | Promise<T>) | undefined): Promise<T | undefined> =>
  typeof value === "function" ? (value as () => T | Promise<T>)() : value;

function withDefaults(args: ArgsDef, defaults: Record<string, OptionValue>): ArgsDef {
  const result: ArgsDef = {};
  for (const [name, def] of Object.entries(args)) {
    const fallback = defaults[name];
    if (def.type === "positional" || fallback === undefined) result[name] = def;
    else result[name] = { ...def, default: def.type === "boolean" ? Boolean(fallback) : String(fallback) } as ArgDef;
  }
  return result;
}

function unavailable(name: string, reason: string): CommandDef<any> {
  return {
    meta: { name, description: `(not available: ${reason})` },
    run() {
      throw new KtctlError(`command "${name}" is not available: ${reason}`, ExitCode.plugin);
    },
  };
}

export function lazyCommand(name: string, build: () => Promise<CommandDef<any>>, config: EffectiveConfig): LazyCommand {
  let built: Promise<{ def: CommandDef<any>; rows: OptionSpec[] }> | undefined;

  const load = () =>
    (built ??= (async () => {
      let def: CommandDef<any>;
      let ownArgs: ArgsDef;
      let meta: CommandMeta;
      try {
        def = await build();
        ownArgs = (await resolveValue(def.args)) ?? {};
        meta = (await resolveValue(def.meta)) ?? {};
      } catch (error) {
        const reason = (error instanceof Error ? error.message : String(error)).split("\n")[0]!;
        return { def: unavailable(name, reason), rows: [] };
      }
      const rows = optionsFromArgs(name, ownArgs);
      const defaults = config.defaultsFor(name, rows);
      const args = { ...argsFor(GLOBAL_SCOPE, defaults), ...withDefaults(ownArgs, defaults) };
      const run = def.run;
      return {
        rows,
        def: {
          ...def,
          meta: { ...meta, name },
          args,
          ...(run
            ? {
                run: (ctx: Parameters<typeof run>[0]) => {
                  // Global values (flags or config) are checked before any command acts on them.
                  globalOptions(ctx.args);
                  return run(ctx);
                },
              }
            : {}),
        },
      };
    })());

  return {
    name,
    resolve: async () => (await load()).def,
    ownOptions: async () => (await load()).rows,
  };
}
