// Unknown flags and stray words are mistakes, not something to ignore: `ktctl version --json` must
// not silently print text, and `--namspace x` must not silently use the default namespace.

import type { ArgsDef } from "citty";
import { suggestKey } from "../config/keys.ts";
import { ExitCode, KtctlError } from "../errors.ts";

const kebab = (name: string) => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const aliasesOf = (def: ArgsDef[string]): string[] => {
  const alias = (def as { alias?: string | string[] }).alias;
  return Array.isArray(alias) ? alias : alias ? [alias] : [];
};

/** A positional whose value hint ends in "..." takes every remaining word (e.g. forward's ports). */
const isVariadic = (def: ArgsDef[string]) => /\.\.\.$/.test((def as { valueHint?: string }).valueHint ?? "");

interface FlagTable {
  /** Every spelling of every flag, without dashes, and whether it takes a value. */
  spellings: Map<string, { takesValue: boolean }>;
  /** The long names to suggest from. */
  names: string[];
}

function flagTable(args: ArgsDef): FlagTable {
  const spellings = new Map<string, { takesValue: boolean }>();
  const names: string[] = [];
  for (const [key, def] of Object.entries(args)) {
    if (def.type === "positional") continue;
    const takesValue = def.type === "string" || def.type === "enum";
    for (const name of new Set([key, kebab(key)])) {
      spellings.set(name, { takesValue });
      if (!takesValue) spellings.set(`no-${name}`, { takesValue: false });
    }
    for (const alias of aliasesOf(def)) spellings.set(alias, { takesValue });
    names.push(kebab(key));
  }
  spellings.set("help", { takesValue: false });
  spellings.set("h", { takesValue: false });
  return { spellings, names };
}

/**
 * Checks the words after the command's name against its flags and positionals. `command` is how
 * the user invoked it ("ktctl forward"), for the hint. Words after `--` belong to the command.
 */
export function checkArgs(words: readonly string[], args: ArgsDef, command: string): void {
  const table = flagTable(args);
  const positionals = Object.values(args).filter((def) => def.type === "positional");
  const positionalWords: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    if (word === "--") break;
    if (word.startsWith("-") && word !== "-") {
      const body = word.replace(/^-{1,2}/, "");
      const name = body.split("=")[0]!;
      const flag = table.spellings.get(name);
      if (!flag) {
        const suggestion = suggestKey(name, table.names.map((key) => ({ key, path: [key] })));
        throw new KtctlError(
          `unknown flag "${word.split("=")[0]}" for ${command}`,
          ExitCode.usage,
          suggestion ? `did you mean "--${suggestion}"?` : `run "${command} --help" for its flags`,
        );
      }
      if (flag.takesValue && !body.includes("=")) i++;
      continue;
    }
    positionalWords.push(word);
  }
  const last = positionals.at(-1);
  if (positionalWords.length > positionals.length && !(last && isVariadic(last))) {
    throw new KtctlError(
      `unexpected argument "${positionalWords[positionals.length]}" for ${command}`,
      ExitCode.usage,
      `run "${command} --help" for its usage`,
    );
  }
}
