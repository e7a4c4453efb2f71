// The keys `ktctl config` accepts, typed by the options table: global options at the top level,
// "<command>.<option>" for a command's own flags (and global flags scoped to it), and `plugins`.

import { ExitCode, KtctlError } from "../errors.ts";
import { coerceOption, GLOBAL_SCOPE, optionsInScope, type OptionSpec, type OptionValue } from "../options.ts";
import { PLUGINS_KEY } from "./load.ts";

export interface ConfigKey {
  key: string;
  path: string[];
  /** The option the key sets; absent for the plugin list. */
  spec?: OptionSpec;
}

/** Every settable key, given the rows of all known commands (core table and plugin commands). */
export function configKeys(rows: readonly OptionSpec[]): ConfigKey[] {
  const globals = optionsInScope(GLOBAL_SCOPE, rows);
  const keys: ConfigKey[] = globals.map((spec) => ({ key: spec.name, path: [spec.name], spec }));
  keys.push({ key: PLUGINS_KEY, path: [PLUGINS_KEY] });
  const scopes = [...new Set(rows.filter((r) => r.scope !== GLOBAL_SCOPE).map((r) => r.scope))];
  for (const scope of scopes) {
    const own = optionsInScope(scope, rows);
    for (const spec of [...own, ...globals.filter((g) => !own.some((o) => o.name === g.name))])
      keys.push({ key: `${scope}.${spec.name}`, path: [scope, spec.name], spec });
  }
  return keys;
}

const camel = (segment: string) => segment.replace(/[-_]+([a-zA-Z0-9])/g, (_, c: string) => c.toUpperCase());

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/** The closest known key, if close enough to be a plausible typo. */
export function suggestKey(input: string, keys: readonly ConfigKey[]): string | undefined {
  let best: { key: string; score: number } | undefined;
  for (const { key } of keys) {
    const score = distance(input.toLowerCase(), key.toLowerCase());
    if (!best || score < best.score) best = { key, score };
  }
  return best && best.score <= Math.max(2, Math.floor(input.length / 3)) ? best.key : undefined;
}

/** Finds a key as typed, also in kebab-case ("pod-quota"); refuses unknown keys with a suggestion. */
export function resolveConfigKey(input: string, keys: readonly ConfigKey[]): ConfigKey {
  const normalized = input.split(".").map(camel).join(".");
  const found = keys.find((k) => k.key === input) ?? keys.find((k) => k.key === normalized);
  if (found) return found;
  const suggestion = suggestKey(normalized, keys);
  throw new KtctlError(
    `unknown config key "${input}"`,
    ExitCode.usage,
    suggestion ? `did you mean "${suggestion}"? ("ktctl config list" shows the keys)` : `"ktctl config list --all" shows the keys`,
  );
}

/** A `config set` argument as the value to store: typed by the option, a comma list for plugins. */
export function parseConfigValue(key: ConfigKey, raw: string): OptionValue | string[] {
  if (!key.spec) {
    const entries = raw.split(",").map((s) => s.trim()).filter(Boolean);
    if (entries.length === 0) throw new KtctlError(`invalid ${key.key} "${raw}": expected plugin paths or package names separated by commas`, ExitCode.usage);
    return entries;
  }
  return coerceOption(key.spec, raw);
}
