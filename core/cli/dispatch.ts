// Runs the root command the way citty's runMain does (help, --version, sub-commands), but with
// ktctl's error handling, global flags accepted before the command name, and a suggestion for a
// mistyped command.

import { renderUsage, runCommand, type ArgsDef, type CommandDef } from "citty";
import { suggestKey } from "../config/keys.ts";
import { ExitCode, KtctlError } from "../errors.ts";
import { checkArgs } from "./strict-args.ts";
import { colorWanted, stripAnsi } from "./color.ts";

type AnyCommand = CommandDef<any>;

const resolveValue = async <T>(value: T | Promise<T> | (() => T | Promise<T>) | undefined): Promise<T | undefined> =>
  typeof value === "function" ? (value as () => T | Promise<T>)() : value;

const camel = (name: string) => name.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());

function takesValue(flag: string, args: ArgsDef): boolean {
  const name = flag.replace(/^-{1,2}/, "");
  return Object.entries(args).some(([key, def]) => {
    if (def.type !== "string" && def.type !== "enum") return false;
    const aliases = Array.isArray(def.alias) ? def.alias : def.alias ? [def.alias] : [];
    return camel(name) === key || aliases.includes(name);
  });
}

/** Index of the first word that is not a flag or a flag's value, or -1. */
export function commandIndex(rawArgs: readonly string[], args: ArgsDef): number {
  for (let i = 0; i < rawArgs.length; i++) {
    const arg = rawArgs[i]!;
    if (arg === "--") return -1;
    if (arg.startsWith("-")) {
      if (!arg.includes("=") && takesValue(arg, args)) i++;
      continue;
    }
    return i;
  }
  return -1;
}

async function findSubCommand(cmd: AnyCommand, name: string): Promise<AnyCommand | undefined> {
  const subCommands = (await resolveValue(cmd.subCommands)) ?? {};
  if (name in subCommands) return resolveValue(subCommands[name]);
  for (const sub of Object.values(subCommands)) {
    const resolved = await resolveValue(sub);
    const meta = await resolveValue(resolved?.meta);
    const aliases = meta?.alias === undefined ? [] : Array.isArray(meta.alias) ? meta.alias : [meta.alias];
    if (aliases.includes(name)) return resolved;
  }
  return undefined;
}

/**
 * The command the words select, the names leading to it ("ktctl config set"), and its words. Flags
 * given between the names of a group and its sub-command ("ktctl spring -n x run") belong to the
 * sub-command: they come first in `rest`, where it parses them.
 */
async function selectCommand(root: AnyCommand, rawArgs: readonly string[]): Promise<{ cmd: AnyCommand; path: string[]; rest: string[] }> {
  let cmd = root;
  const path = [await programOf(root)];
  let rest = [...rawArgs];
  let carried: string[] = [];
  const rootArgs = (await resolveValue(root.args)) ?? {};
  for (;;) {
    if (!cmd.subCommands) return { cmd, path, rest: [...carried, ...rest] };
    const index = commandIndex(rest, { ...rootArgs, ...((await resolveValue(cmd.args)) ?? {}) });
    if (index === -1) return { cmd, path, rest: [...carried, ...rest] };
    const sub = await findSubCommand(cmd, rest[index]!);
    if (!sub) return { cmd, path, rest: [...carried, ...rest] };
    path.push(rest[index]!);
    cmd = sub;
    carried = [...carried, ...rest.slice(0, index)];
    rest = rest.slice(index + 1);
  }
}

/** "ktctl", or "kubectl ktctl" when run as the kubectl plugin: the root command's name. */
const programOf = async (root: AnyCommand) => (await resolveValue(root.meta))?.name ?? "ktctl";

/** Moves global flags given before the command name to just after it, where the command parses them. */
export function moveLeadingFlags(rawArgs: readonly string[], rootArgs: ArgsDef): string[] {
  const index = commandIndex(rawArgs, rootArgs);
  if (index <= 0) return [...rawArgs];
  return [rawArgs[index]!, ...rawArgs.slice(0, index), ...rawArgs.slice(index + 1)];
}

async function printUsage(cmd: AnyCommand, path: string[], version?: string) {
  const parent: AnyCommand | undefined = path.length > 1 ? { meta: { name: path.slice(0, -1).join(" "), version } } : undefined;
  const usage = await renderUsage(cmd, parent);
  console.log(`${colorWanted(process.stdout) ? usage : stripAnsi(usage)}\n`);
}

export interface DispatchOptions {
  /** A more helpful error for a command that is not there (e.g. one of a switched-off plugin). */
  unknownCommand?(name: string): KtctlError | undefined;
}

/** Runs the CLI; resolves when the command finished, throws what the command threw. */
export async function dispatch(root: AnyCommand, rawArgs: readonly string[], options: DispatchOptions = {}): Promise<void> {
  const rootArgs = (await resolveValue(root.args)) ?? {};
  const rootMeta = await resolveValue(root.meta);
  const args = moveLeadingFlags(rawArgs, rootArgs);
  const flags = args.includes("--") ? args.slice(0, args.indexOf("--")) : args;

  if (flags.includes("--help") || flags.includes("-h")) {
    const { cmd, path } = await selectCommand(root, args);
    await printUsage(cmd, path, rootMeta?.version);
    return;
  }
  if (args.length === 1 && (args[0] === "--version" || args[0] === "-v")) {
    console.log(rootMeta?.version);
    return;
  }
  const program = await programOf(root);
  if (args.length === 0) {
    await printUsage(root, [program]);
    return;
  }

  const index = commandIndex(args, rootArgs);
  if (index === -1) throw new KtctlError("no command given", ExitCode.usage, `run "${program} --help" for the commands`);
  const name = args[index]!;
  if (!(await findSubCommand(root, name))) {
    const explained = options.unknownCommand?.(name);
    if (explained) throw explained;
    const subCommands = Object.keys((await resolveValue(root.subCommands)) ?? {});
    const suggestion = suggestKey(name, subCommands.filter((c) => !c.startsWith("__")).map((key) => ({ key, path: [key] })));
    throw new KtctlError(
      `unknown command "${name}"`,
      ExitCode.usage,
      suggestion ? `did you mean "${program} ${suggestion}"?` : `run "${program} --help" for the commands`,
    );
  }
  const { cmd, path, rest } = await selectCommand(root, args);
  // A group ("ktctl config") without a known sub-command is citty's to report; a leaf is checked.
  if (!cmd.subCommands) checkArgs(rest, { ...rootArgs, ...((await resolveValue(cmd.args)) ?? {}) }, path.join(" "));
  await runCommand(root, { rawArgs: cmd.subCommands ? args : [...path.slice(1), ...rest] });
}

/** "ktctl forward" (or "kubectl ktctl forward") for the words given, for hints in error messages. */
export async function commandPath(root: AnyCommand, rawArgs: readonly string[]): Promise<string> {
  try {
    const rootArgs = (await resolveValue(root.args)) ?? {};
    return (await selectCommand(root, moveLeadingFlags(rawArgs, rootArgs))).path.join(" ");
  } catch {
    return "ktctl";
  }
}
