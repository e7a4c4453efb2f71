// What completes the word under the cursor: command names, a command's flags, a flag's values
// (enum options, namespaces, contexts) and positionals (services, workloads). Pure: the command tree
// and the cluster lookups come in as arguments, so the rules are tested without a shell or cluster.

import type { ArgsDef } from "citty";

export interface CommandNode {
  name: string;
  hidden: boolean;
  args(): Promise<ArgsDef>;
  /** Present for a group such as `config`. */
  subCommands?(): Promise<CommandNode[]>;
}

/** Lists from the cluster; each may fail (no kubeconfig, no access): then nothing is offered. */
export interface ClusterLookups {
  namespaces(): Promise<string[]>;
  contexts(): Promise<string[]>;
  services(): Promise<string[]>;
  deployments(): Promise<string[]>;
  pods(): Promise<string[]>;
}

const kebab = (name: string) => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const aliasesOf = (def: ArgsDef[string]): string[] => {
  const alias = (def as { alias?: string | string[] }).alias;
  return Array.isArray(alias) ? alias : alias ? [alias] : [];
};

function flagNamed(args: ArgsDef, flag: string): [string, ArgsDef[string]] | undefined {
  const name = flag.replace(/^-{1,2}/, "");
  return Object.entries(args).find(([key, def]) => def.type !== "positional" && (key === name || kebab(key) === name || aliasesOf(def).includes(name)));
}

const takesValue = (def: ArgsDef[string] | undefined) => def?.type === "string" || def?.type === "enum";

/** The global flags that say which cluster to ask, read from the words typed so far. */
export function clusterFlags(words: readonly string[]): { namespace?: string; context?: string; kubeconfig?: string } {
  const found: Record<string, string> = {};
  const names: Record<string, string> = { "-n": "namespace", "--namespace": "namespace", "--context": "context", "-c": "kubeconfig", "--kubeconfig": "kubeconfig" };
  for (let i = 0; i < words.length; i++) {
    const [flag, inline] = words[i]!.split(/=(.*)/s, 2) as [string, string | undefined];
    const key = names[flag];
    if (!key) continue;
    const value = inline ?? words[i + 1];
    if (value !== undefined && value !== "") found[key] = value;
  }
  return found;
}

async function safely(list: () => Promise<string[]>): Promise<string[]> {
  try {
    return await list();
  } catch {
    return [];
  }
}

/**
 * Candidates for a positional, by the conventions every command follows: a value hint "a|b|c" lists
 * the choices; a positional named "service" takes a service, one named "target" a workload target.
 */
async function positionalValues(name: string, def: ArgsDef[string], current: string, cluster: ClusterLookups): Promise<string[]> {
  const hint = (def as { valueHint?: string }).valueHint ?? "";
  if (/^[\w-]+(\|[\w-]+)+$/.test(hint)) return hint.split("|");
  if (name === "service") return safely(cluster.services);
  if (name !== "target") return [];
  const slash = current.indexOf("/");
  if (slash < 0) return [...(await safely(cluster.services)), "svc/", "deployment/", "pod/"];
  const kind = current.slice(0, slash);
  const names =
    kind === "svc" || kind === "service"
      ? await safely(cluster.services)
      : kind === "deployment" || kind === "deploy"
        ? await safely(cluster.deployments)
        : kind === "pod" || kind === "po"
          ? await safely(cluster.pods)
          : [];
  return names.map((n) => `${kind}/${n}`);
}

async function flagValues(name: string, def: ArgsDef[string], cluster: ClusterLookups): Promise<string[]> {
  if (def.type === "enum") return [...((def as { options?: string[] }).options ?? [])];
  if (name === "namespace") return safely(cluster.namespaces);
  if (name === "context") return safely(cluster.contexts);
  return [];
}

/**
 * `words`: what follows the program name, the last one being the word under the cursor ("" for a
 * new word). Returns the candidates that start with it.
 */
export async function complete(words: readonly string[], root: CommandNode, cluster: ClusterLookups): Promise<string[]> {
  const current = words.at(-1) ?? "";
  const before = words.slice(0, -1);
  let node = root;
  let args = await root.args();
  const globalArgs = args;
  const positionals: string[] = [];
  let passthrough = false;
  for (let i = 0; i < before.length; i++) {
    const word = before[i]!;
    if (word === "--") {
      passthrough = true;
      break;
    }
    if (word.startsWith("-")) {
      const flag = flagNamed(args, word.split("=")[0]!) ?? flagNamed(globalArgs, word.split("=")[0]!);
      if (!word.includes("=") && takesValue(flag?.[1])) i++;
      continue;
    }
    const sub = positionals.length === 0 && node.subCommands ? (await node.subCommands()).find((c) => c.name === word) : undefined;
    if (sub) {
      node = sub;
      args = { ...globalArgs, ...(await sub.args()) };
      continue;
    }
    positionals.push(word);
  }
  if (passthrough) return [];

  let candidates: string[] = [];
  const previous = before.at(-1);
  const previousFlag = previous?.startsWith("-") && !previous.includes("=") ? (flagNamed(args, previous) ?? flagNamed(globalArgs, previous)) : undefined;
  if (previousFlag && takesValue(previousFlag[1])) {
    candidates = await flagValues(previousFlag[0], previousFlag[1], cluster);
  } else if (current.startsWith("-")) {
    candidates = Object.entries(args)
      .filter(([, def]) => def.type !== "positional")
      .map(([key]) => `--${kebab(key)}`);
  } else if (node.subCommands && positionals.length === 0) {
    candidates = (await node.subCommands()).filter((c) => !c.hidden).map((c) => c.name);
  } else {
    const names = Object.entries(args).filter(([, def]) => def.type === "positional").map(([key]) => key);
    const name = names[Math.min(positionals.length, names.length - 1)];
    if (name && (positionals.length < names.length || /\.\.\.$/.test(String((args[name] as { valueHint?: string }).valueHint ?? "")))) {
      candidates = await positionalValues(name, args[name]!, current, cluster);
    }
  }
  return [...new Set(candidates)].filter((c) => c.startsWith(current)).sort();
}
