// Hidden: `ktctl __complete WORDS... CURRENT` prints one candidate per line for the completion
// scripts. It never fails loudly: a completion that cannot reach the cluster offers nothing.

import { defineCommand, type CommandDef } from "citty";
import type { Kube } from "../../plugin-api.ts";
import { complete, clusterFlags, type ClusterLookups, type CommandNode } from "../completion/candidates.ts";
import type { CoreCommandFactory } from "./index.ts";

/** Long enough for a cluster across the world, short enough that a Tab never feels stuck. */
const LOOKUP_TIMEOUT_MS = 3000;

const resolveValue = async <T>(value: T | Promise<T> | (() => T | Promise<T>) | undefined): Promise<T | undefined> =>
  typeof value === "function" ? (value as () => T | Promise<T>)() : value;

function nodeOf(name: string, def: () => Promise<CommandDef<any>>): CommandNode {
  let hidden = name.startsWith("__");
  return {
    name,
    get hidden() {
      return hidden;
    },
    args: async () => {
      const resolved = await def();
      hidden ||= Boolean((await resolveValue(resolved.meta))?.hidden);
      return (await resolveValue(resolved.args)) ?? {};
    },
    subCommands: undefined,
  };
}

async function groupNode(name: string, def: () => Promise<CommandDef<any>>): Promise<CommandNode> {
  const resolved = await def();
  const subs = await resolveValue(resolved.subCommands);
  const node = nodeOf(name, async () => resolved);
  if (!subs) return node;
  return {
    ...node,
    hidden: name.startsWith("__") || Boolean((await resolveValue(resolved.meta))?.hidden),
    subCommands: async () => Promise.all(Object.entries(subs).map(([sub, d]) => groupNode(sub, async () => (await resolveValue(d)) as CommandDef<any>))),
  };
}

function withTimeout<T>(promise: Promise<T>): Promise<T> {
  return Promise.race([promise, new Promise<T>((_, reject) => setTimeout(() => reject(new Error("timeout")), LOOKUP_TIMEOUT_MS).unref())]);
}

const completeCommand: CoreCommandFactory = ({ api, commands }) =>
  defineCommand({
    meta: { name: "__complete", description: "Completion candidates (internal)", hidden: true },
    args: { words: { type: "positional", required: false, valueHint: "WORD...", description: "The words typed so far" } },
    async run({ rawArgs }) {
      // The scripts put "--" first so that the words typed (flags included) are not ktctl's own.
      const typed = rawArgs[0] === "--" ? rawArgs.slice(1) : rawArgs;
      const words = typed.length ? typed.map((w) => (w === '""' ? "" : w)) : [""];
      let kube: Promise<Kube> | undefined;
      const cluster = () => (kube ??= withTimeout(api.kube(api.globalOptions(clusterFlags(words)))));
      const names = (path: string) => async () =>
        ((await withTimeout((await cluster()).request<{ items?: { metadata: { name: string } }[] }>("GET", path))).items ?? []).map((i) => i.metadata.name);
      const inNamespace = async (resource: string) => {
        const k = await cluster();
        const prefix = resource === "deployments" ? "/apis/apps/v1" : "/api/v1";
        return names(`${prefix}/namespaces/${encodeURIComponent(k.namespace)}/${resource}`)();
      };
      const lookups: ClusterLookups = {
        namespaces: names("/api/v1/namespaces"),
        contexts: async () => (await cluster()).kc.getContexts().map((c) => c.name),
        services: () => inNamespace("services"),
        deployments: () => inNamespace("deployments"),
        pods: () => inNamespace("pods"),
      };
      const list = commands();
      const root: CommandNode = {
        name: "ktctl",
        hidden: false,
        args: async () => api.globalArgs,
        subCommands: () => Promise.all(list.map((c) => groupNode(c.name, () => c.resolve()))),
      };
      const candidates = await complete(words, root, lookups).catch(() => []);
      if (candidates.length) process.stdout.write(`${candidates.join("\n")}\n`);
    },
  });

export default completeCommand;
