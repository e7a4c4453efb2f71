// The property sources Spring Cloud Kubernetes (3.x, config data API) builds for an application from
// the ConfigMaps and Secrets named after it, computed the same way and in the same precedence
// (pure, unit-tested). The rules, as in its SourceDataEntriesProcessor and NamedSourceData:
//   - it looks for APP, then APP-PROFILE for each active profile; a later one overrides an earlier;
//   - a source with ONE entry whose key ends in .yaml/.yml/.properties is that file, whatever its name;
//   - otherwise file entries count only when named APP.ext or APP-PROFILE.ext (others are skipped),
//     APP's first, then the profiles' in order, then the plain key=value entries;
//   - YAML documents with spring.config.activate.on-profile (or spring.profiles) count only when
//     the active profiles match;
//   - a ConfigMap's value wins over a Secret's for the same key.

import { FAILSAFE_SCHEMA, loadAll } from "js-yaml";

export type SourceKind = "configmap" | "secret";

export interface PropertyOrigin {
  kind: SourceKind;
  /** The ConfigMap or Secret the value comes from. */
  name: string;
  /** The entry (data key) within it. */
  entry: string;
}

export interface ResolvedProperty {
  value: string;
  origin: PropertyOrigin;
}

export interface SourceLookup {
  kind: SourceKind;
  name: string;
  found: boolean;
}

export interface ResolvedSources {
  /** Every source looked for, in the order Spring Cloud Kubernetes looks. */
  lookedFor: SourceLookup[];
  /** Key -> value after precedence, as the application's environment resolves it. */
  properties: Map<string, ResolvedProperty>;
  /** Entries Spring Cloud Kubernetes skips (file entries named after neither the app nor a profile). */
  skipped: { kind: SourceKind; name: string; entry: string }[];
}

export interface SourcesInput {
  app: string;
  profiles: string[];
  /** Data by name of the ConfigMaps that exist (absent: not there). */
  configMaps: Record<string, Record<string, string>>;
  /** Decoded data by name of the Secrets that exist. */
  secrets: Record<string, Record<string, string>>;
}

const FILE = /\.(ya?ml|properties)$/;

/** The names looked for, in order: APP, then APP-PROFILE for each active profile. */
export function sourceNames(app: string, profiles: readonly string[]): string[] {
  return [...new Set([app, ...profiles.map((p) => `${app}-${p}`)])];
}

export function resolveSources(input: SourcesInput): ResolvedSources {
  const names = sourceNames(input.app, input.profiles);
  const lookedFor: SourceLookup[] = [];
  const skipped: ResolvedSources["skipped"] = [];
  const layer = (kind: SourceKind, all: Record<string, Record<string, string>>) => {
    const merged = new Map<string, ResolvedProperty>();
    for (const name of names) {
      const data = all[name];
      lookedFor.push({ kind, name, found: data !== undefined });
      if (!data) continue;
      for (const [key, value, entry] of processEntries(data, input.app, input.profiles, (e) => skipped.push({ kind, name, entry: e }))) {
        merged.set(key, { value, origin: { kind, name, entry } });
      }
    }
    return merged;
  };
  const secrets = layer("secret", input.secrets);
  const configMaps = layer("configmap", input.configMaps);
  // ConfigMaps take precedence over Secrets: applied last.
  const properties = new Map([...secrets, ...configMaps]);
  lookedFor.sort((a, b) => (a.kind === b.kind ? 0 : a.kind === "configmap" ? -1 : 1));
  return { lookedFor, properties, skipped };
}

/** One source's entries as [key, value, entry] in the order they are applied (later wins). */
export function processEntries(data: Record<string, string>, app: string, profiles: readonly string[], onSkip: (entry: string) => void = () => {}): [string, string, string][] {
  const entries = Object.entries(data);
  if (entries.length === 1 && FILE.test(entries[0]![0])) {
    const [entry, text] = entries[0]!;
    return extract(entry, text, profiles);
  }
  const fileNames = sourceNames(app, profiles);
  let next = fileNames.length - 1;
  const weighted: { weight: number; entry: string; text: string }[] = [];
  for (const [entry, text] of entries) {
    if (!FILE.test(entry)) {
      weighted.push({ weight: ++next, entry, text });
      continue;
    }
    // As Spring Cloud Kubernetes does: the name up to the FIRST dot must be APP or APP-PROFILE.
    const index = fileNames.indexOf(entry.split(".")[0]!);
    if (index >= 0) weighted.push({ weight: index, entry, text });
    else onSkip(entry);
  }
  weighted.sort((a, b) => a.weight - b.weight);
  return weighted.flatMap(({ entry, text }) => extract(entry, text, profiles));
}

function extract(entry: string, text: string, profiles: readonly string[]): [string, string, string][] {
  if (entry.endsWith(".properties")) return [...parseProperties(text)].map(([k, v]) => [k, v, entry]);
  if (/\.ya?ml$/.test(entry)) return [...parseYamlProperties(text, profiles)].map(([k, v]) => [k, v, entry]);
  return [[entry, text, entry]];
}

/** YAML as Spring's YamlPropertiesFactoryBean flattens it: a.b, list[0]; profile documents filtered. */
export function parseYamlProperties(text: string, profiles: readonly string[]): Map<string, string> {
  const result = new Map<string, string>();
  for (const document of loadAll(text, { schema: FAILSAFE_SCHEMA })) {
    if (document === null || typeof document !== "object") continue;
    const flat = new Map<string, string>();
    flatten(document, "", flat);
    const condition = flat.get("spring.config.activate.on-profile") ?? flat.get("spring.profiles");
    if (condition && !profilesAccept(condition, profiles)) continue;
    for (const [k, v] of flat) result.set(k, v);
  }
  return result;
}

function flatten(value: unknown, path: string, into: Map<string, string>) {
  if (Array.isArray(value)) {
    if (!value.length) into.set(path, "");
    value.forEach((item, i) => flatten(item, `${path}[${i}]`, into));
  } else if (value !== null && typeof value === "object") {
    for (const [key, item] of Object.entries(value)) flatten(item, path ? (key.startsWith("[") ? `${path}${key}` : `${path}.${key}`) : key, into);
  } else {
    into.set(path, value === null || value === undefined ? "" : String(value));
  }
}

/**
 * Spring's profile expressions: a comma-separated list (any matches), each with !, & and | and
 * parentheses, e.g. "dev", "dev,test", "!prod", "(dev | test) & eu".
 */
export function profilesAccept(expression: string, active: readonly string[]): boolean {
  return expression.split(",").map((e) => e.trim()).filter(Boolean).some((e) => evaluate(e, new Set(active)));
}

function evaluate(expression: string, active: Set<string>): boolean {
  const tokens = expression.match(/\(|\)|!|&|\||[^\s()!&|]+/g) ?? [];
  let at = 0;
  const primary = (): boolean => {
    const token = tokens[at++];
    if (token === "!") return !primary();
    if (token === "(") {
      const value = or();
      at++; // ")"
      return value;
    }
    return token !== undefined && active.has(token);
  };
  const and = (): boolean => {
    let value = primary();
    while (tokens[at] === "&") {
      at++;
      value = primary() && value;
    }
    return value;
  };
  const or = (): boolean => {
    let value = and();
    while (tokens[at] === "|") {
      at++;
      value = and() || value;
    }
    return value;
  };
  return or();
}

/** java.util.Properties text: # and ! comments, = : or blank separators, \ continuations, escapes. */
export function parseProperties(text: string): Map<string, string> {
  const result = new Map<string, string>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i]!.replace(/^\s+/, "");
    if (!line || line.startsWith("#") || line.startsWith("!")) continue;
    while (/(^|[^\\])(\\\\)*\\$/.test(line) && i + 1 < lines.length) line = line.slice(0, -1) + lines[++i]!.replace(/^\s+/, "");
    const separator = /^((?:\\.|[^\\=:\s])*)\s*[=:\s]\s*/.exec(line);
    const [rawKey, rawValue] = separator ? [separator[1]!, line.slice(separator[0].length)] : [line, ""];
    result.set(unescape(rawKey), unescape(rawValue));
  }
  return result;
}

function unescape(text: string): string {
  return text.replace(/\\(u[0-9a-fA-F]{4}|.)/g, (_, c: string) =>
    c.length === 5 ? String.fromCharCode(parseInt(c.slice(1), 16)) : ({ t: "\t", n: "\n", r: "\r", f: "\f" } as Record<string, string>)[c] ?? c,
  );
}

/**
 * The sources as one application-ktctl.yaml: flat keys, values quoted as written. Secret values are
 * left out (named in a comment) unless `secrets`: a placeholder would be a wrong value to start with.
 */
export function formatApplicationYaml(resolved: ResolvedSources, header: string[], options: { secrets: boolean }): string {
  const lines = header.map((h) => `# ${h}`);
  for (const look of resolved.lookedFor) lines.push(`#   ${look.kind} ${look.name}: ${look.found ? "found" : "not there"}`);
  for (const skip of resolved.skipped) lines.push(`#   skipped by Spring Cloud Kubernetes too: ${skip.kind} ${skip.name}, entry ${skip.entry}`);
  const keys = [...resolved.properties.keys()].sort();
  const withheld = keys.filter((k) => resolved.properties.get(k)!.origin.kind === "secret" && !options.secrets);
  for (const key of withheld) lines.push(`#   ${key}: from secret ${resolved.properties.get(key)!.origin.name} (left out; --secrets writes it)`);
  for (const key of keys) {
    if (withheld.includes(key)) continue;
    lines.push(`${JSON.stringify(key)}: ${JSON.stringify(resolved.properties.get(key)!.value)}`);
  }
  if (keys.length === withheld.length) lines.push("{}");
  return `${lines.join("\n")}\n`;
}
