// The one table of options. Each row drives the citty flag (name, alias, help, default) and the
// config file key of the same name, so a flag and its config default can never drift apart.
// Plugin commands declare their own citty args; `optionsFromArgs` turns those into rows of the
// same shape so the config file types their per-command sections the same way.

import type { ArgDef, ArgsDef } from "citty";
import { ExitCode, KtctlError } from "./errors.ts";
import type { GlobalOptions } from "./plugin-api.ts";
import { DEFAULT_SHADOW_IMAGE } from "./protocol/version.ts";

export type OptionType = "string" | "boolean" | "number" | "enum";
export type OptionValue = string | number | boolean;

export interface OptionSpec {
  name: string;
  alias?: string;
  type: OptionType;
  default?: OptionValue;
  description: string;
  /** "global" for flags every command takes, otherwise the command the flag belongs to. */
  scope: string;
  valueHint?: string;
  /** Allowed values of an enum option. */
  choices?: readonly string[];
  /** Throws a usage KtctlError when a (typed) value is not acceptable. */
  check?: (value: never) => void;
}

export const GLOBAL_SCOPE = "global";

const usage = (message: string, hint?: string) => new KtctlError(message, ExitCode.usage, hint);

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;

function checkDnsLabel(option: string) {
  return (value: string) => {
    if (!DNS_LABEL.test(value))
      throw usage(`invalid ${option} "${value}": use lowercase letters, digits and "-" (at most 63 characters)`);
  };
}

function checkDnsSubdomain(option: string) {
  return (value: string) => {
    if (!DNS_SUBDOMAIN.test(value))
      throw usage(`invalid ${option} "${value}": use lowercase letters, digits, "-" and "." (at most 253 characters)`);
  };
}

function checkPositiveSeconds(option: string) {
  return (value: number) => {
    if (!Number.isInteger(value) || value <= 0)
      throw usage(`invalid ${option} "${value}": expected a whole number of seconds greater than 0`);
  };
}

function checkNoSpaces(option: string) {
  return (value: string) => {
    if (/\s/.test(value)) throw usage(`invalid ${option} "${value}": must not contain spaces`);
  };
}

/** A Kubernetes label or annotation key: optional DNS-subdomain prefix and "/", then a name. */
function isQualifiedKey(key: string): boolean {
  const slash = key.lastIndexOf("/");
  if (slash === -1) return LABEL_NAME.test(key);
  const prefix = key.slice(0, slash);
  return DNS_SUBDOMAIN.test(prefix) && LABEL_NAME.test(key.slice(slash + 1));
}

/**
 * Parses "k=v,k2=v2". Label values follow Kubernetes label syntax; annotation values are free
 * text without commas (the comma separates pairs).
 */
export function parseKeyValueList(value: string, option: string, kind: "label" | "annotation" = "label"): Record<string, string> {
  const example = kind === "label" ? `"app=web,tier=front"` : `"team=payments,owner=alice"`;
  const result: Record<string, string> = {};
  for (const pair of value.split(",")) {
    const eq = pair.indexOf("=");
    if (pair.trim() === "" || eq <= 0)
      throw usage(`invalid ${option} "${value}": expected key=value pairs separated by commas, e.g. ${example}`);
    const key = pair.slice(0, eq).trim();
    const val = pair.slice(eq + 1).trim();
    if (!isQualifiedKey(key))
      throw usage(`invalid ${option} "${value}": "${key}" is not a valid ${kind} key (letters, digits, "-", "_", "." up to 63 characters, optional "prefix/")`);
    if (kind === "label" && val !== "" && !LABEL_NAME.test(val))
      throw usage(`invalid ${option} "${value}": "${val}" is not a valid label value (letters, digits, "-", "_", "." up to 63 characters)`);
    if (key in result) throw usage(`invalid ${option} "${value}": key "${key}" given twice`);
    result[key] = val;
  }
  return result;
}

export interface PodQuota {
  /** Kubernetes CPU quantity in millicores, e.g. "500m". */
  cpu?: string;
  /** Kubernetes memory quantity in MiB, e.g. "512Mi". */
  memory?: string;
}

/** Parses kt-connect's quota syntax "0.5c,512m": c = CPU cores, m = MiB, g = GiB; either part optional. */
export function parsePodQuota(value: string): PodQuota {
  const bad = (why: string) =>
    usage(`invalid podQuota "${value}": ${why}`, `expected CPU and/or memory like "0.5c,512m" (c = cores, m = MiB, g = GiB)`);
  const quota: PodQuota = {};
  for (const raw of value.split(",")) {
    const part = raw.trim().toLowerCase();
    const match = /^(\d+(?:\.\d+)?)([cmg])$/.exec(part);
    if (!match) throw bad(`"${raw.trim()}" is neither cores (like 0.5c) nor memory (like 512m)`);
    const amount = Number(match[1]);
    const unit = match[2];
    if (unit === "c") {
      if (quota.cpu) throw bad("CPU given twice");
      const millicores = Math.round(amount * 1000);
      if (millicores < 1) throw bad("CPU must be at least 0.001c");
      quota.cpu = `${millicores}m`;
    } else {
      if (quota.memory) throw bad("memory given twice");
      const mebibytes = Math.round(unit === "g" ? amount * 1024 : amount);
      if (mebibytes < 1) throw bad("memory must be at least 1m");
      quota.memory = `${mebibytes}Mi`;
    }
  }
  return quota;
}

export const OPTIONS: readonly OptionSpec[] = [
  {
    name: "namespace", alias: "n", type: "string", scope: GLOBAL_SCOPE, valueHint: "name",
    description: "Namespace to work in (default: the kubeconfig context's namespace)",
    check: checkDnsLabel("namespace"),
  },
  { name: "context", type: "string", scope: GLOBAL_SCOPE, valueHint: "name", description: "Kubeconfig context to use" },
  {
    name: "kubeconfig", alias: "c", type: "string", scope: GLOBAL_SCOPE, valueHint: "file",
    description: "Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)",
  },
  { name: "debug", alias: "d", type: "boolean", default: false, scope: GLOBAL_SCOPE, description: "Print debug logs and stack traces" },
  {
    name: "image", alias: "i", type: "string", default: DEFAULT_SHADOW_IMAGE, scope: GLOBAL_SCOPE, valueHint: "image",
    description: "Shadow pod image", check: checkNoSpaces("image"),
  },
  {
    name: "imagePullSecret", type: "string", scope: GLOBAL_SCOPE, valueHint: "secret",
    description: "Image pull secret for the shadow pod", check: checkDnsSubdomain("imagePullSecret"),
  },
  {
    name: "nodeSelector", type: "string", scope: GLOBAL_SCOPE, valueHint: "k=v,...",
    description: "Node selector for the shadow pod",
    check: (value: string) => void parseKeyValueList(value, "nodeSelector", "label"),
  },
  {
    name: "serviceAccount", type: "string", scope: GLOBAL_SCOPE, valueHint: "name",
    description: "Service account for the shadow pod", check: checkDnsSubdomain("serviceAccount"),
  },
  {
    name: "podQuota", type: "string", scope: GLOBAL_SCOPE, valueHint: "cpu,mem",
    description: 'CPU and memory limit for the shadow pod, e.g. "0.5c,512m"',
    check: (value: string) => void parsePodQuota(value),
  },
  {
    name: "withLabel", alias: "l", type: "string", scope: GLOBAL_SCOPE, valueHint: "k=v,...",
    description: "Extra labels for the shadow pod",
    check: (value: string) => void parseKeyValueList(value, "withLabel", "label"),
  },
  {
    name: "withAnnotation", type: "string", scope: GLOBAL_SCOPE, valueHint: "k=v,...",
    description: "Extra annotations for the shadow pod",
    check: (value: string) => void parseKeyValueList(value, "withAnnotation", "annotation"),
  },
  {
    name: "podCreationTimeout", type: "number", default: 60, scope: GLOBAL_SCOPE, valueHint: "seconds",
    description: "Seconds to wait for the shadow pod to be ready", check: checkPositiveSeconds("podCreationTimeout"),
  },
  {
    name: "portForwardTimeout", type: "number", default: 10, scope: GLOBAL_SCOPE, valueHint: "seconds",
    description: "Seconds to wait for the port-forward to the shadow", check: checkPositiveSeconds("portForwardTimeout"),
  },
  {
    name: "output", alias: "o", type: "enum", choices: ["text", "json"], default: "text", scope: "version",
    description: "Output format",
  },
  {
    name: "client", type: "boolean", default: false, scope: "version",
    description: "Only this ktctl: do not look at the cluster",
  },
  {
    name: "output", alias: "o", type: "enum", choices: ["text", "json"], default: "text", scope: "plugins",
    description: "Output format",
  },
  {
    name: "local", type: "boolean", default: false, scope: "config",
    description: "Use the project's .ktctl.yaml instead of ~/.ktctl/config.yaml",
  },
];

export function optionsInScope(scope: string, table: readonly OptionSpec[] = OPTIONS): OptionSpec[] {
  return table.filter((o) => o.scope === scope);
}

export function findOption(name: string, scope: string, table: readonly OptionSpec[] = OPTIONS): OptionSpec | undefined {
  return table.find((o) => o.scope === scope && o.name === name);
}

/** The citty definition of one option; `fallback` (from the config files) replaces the table default. */
export function toArgDef(spec: OptionSpec, fallback?: OptionValue): ArgDef {
  const value = fallback ?? spec.default;
  const common = { description: spec.description, ...(spec.alias ? { alias: spec.alias } : {}), ...(spec.valueHint ? { valueHint: spec.valueHint } : {}) };
  switch (spec.type) {
    case "boolean":
      return { type: "boolean", ...common, ...(value === undefined ? {} : { default: Boolean(value) }) };
    case "enum":
      return { type: "enum", options: [...(spec.choices ?? [])], ...common, ...(value === undefined ? {} : { default: String(value) }) };
    default:
      // citty has no number type: numbers travel as strings and are checked by `readOption`.
      return { type: "string", ...common, ...(value === undefined ? {} : { default: String(value) }) };
  }
}

/** citty args for every option in `scope`, with config values as defaults. */
export function argsFor(scope: string, fallbacks: Record<string, unknown> = {}, table: readonly OptionSpec[] = OPTIONS): ArgsDef {
  const args: ArgsDef = {};
  for (const spec of optionsInScope(scope, table)) {
    const fallback = fallbacks[spec.name];
    args[spec.name] = toArgDef(spec, isOptionValue(fallback) ? fallback : undefined);
  }
  return args;
}

/** Rows for a plugin command's own flags, so its config section is typed like the core's. */
export function optionsFromArgs(scope: string, args: ArgsDef): OptionSpec[] {
  const rows: OptionSpec[] = [];
  for (const [name, def] of Object.entries(args)) {
    if (def.type === "positional") continue;
    const type: OptionType = def.type === "boolean" ? "boolean" : def.type === "enum" ? "enum" : "string";
    rows.push({
      name, scope, type,
      description: def.description ?? "",
      ...(def.default !== undefined ? { default: def.default } : {}),
      ...(type === "enum" && "options" in def ? { choices: def.options ?? [] } : {}),
    });
  }
  return rows;
}

const isOptionValue = (v: unknown): v is OptionValue => typeof v === "string" || typeof v === "number" || typeof v === "boolean";

/**
 * Turns a raw value (a flag's string, a YAML scalar, a `config set` argument) into the option's
 * type and checks it. Throws a usage KtctlError naming the option.
 */
export function coerceOption(spec: OptionSpec, raw: unknown): OptionValue {
  let value: OptionValue;
  switch (spec.type) {
    case "boolean":
      if (typeof raw === "boolean") value = raw;
      else if (raw === "true" || raw === "yes" || raw === "1") value = true;
      else if (raw === "false" || raw === "no" || raw === "0") value = false;
      else throw usage(`invalid ${spec.name} "${String(raw)}": expected true or false`);
      break;
    case "number": {
      const n = typeof raw === "number" ? raw : typeof raw === "string" && raw.trim() !== "" ? Number(raw) : NaN;
      if (!Number.isFinite(n))
        throw usage(`invalid ${spec.name} "${String(raw)}": expected a number${spec.valueHint ? ` of ${spec.valueHint}` : ""}`);
      value = n;
      break;
    }
    case "enum": {
      const s = String(raw);
      if (!spec.choices?.includes(s)) throw usage(`invalid ${spec.name} "${s}": expected one of ${spec.choices?.join(", ")}`);
      value = s;
      break;
    }
    default:
      if (!isOptionValue(raw)) throw usage(`invalid ${spec.name}: expected a text value`);
      value = String(raw);
      if (value === "") throw usage(`option ${spec.name} needs a value`);
  }
  (spec.check as ((v: OptionValue) => void) | undefined)?.(value);
  return value;
}

/** The global options out of a command's parsed args (flags, config defaults applied), checked. */
export function globalOptions(args: Record<string, unknown>, table: readonly OptionSpec[] = OPTIONS): GlobalOptions {
  const result: Record<string, OptionValue> = {};
  for (const spec of optionsInScope(GLOBAL_SCOPE, table)) {
    const raw = args[spec.name];
    if (raw === undefined) continue;
    result[spec.name] = coerceOption(spec, raw);
  }
  return result as GlobalOptions;
}
