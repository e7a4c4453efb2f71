// Finds, merges and selects kubeconfig the way kubectl does. client-node's own loader differs from
// kubectl where it matters: it throws on a name defined in two KUBECONFIG files (kubectl: the first
// file wins), lets a later file's current-context win (kubectl: the first file that sets one), fails
// on listed-but-missing files (kubectl skips them), and reads token-file relative to the working
// directory. So the files are merged here; credentials come from the merged entries
// (credentials.ts), and client-node's KubeConfig is built from the merged result only when asked
// for (plugins, completion, an auth-provider): loading client-node costs about 30 ms and a few MiB.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { load as parseYaml } from "js-yaml";
import type { KubeConfig } from "@kubernetes/client-node";
import { kubeconfigError } from "./errors.ts";
import { credentialSource, credentialsFromClientNode, type Credentials } from "./credentials.ts";

export interface KubeconfigOptions {
  kubeconfig?: string;
  context?: string;
  namespace?: string;
}

export interface ResolvedKubeconfig {
  /** client-node's KubeConfig for the same context, built (and client-node loaded) on first use. */
  readonly kc: KubeConfig;
  context: string;
  namespace: string;
  server: string;
  /** The cluster's proxy-url, if any. */
  proxyUrl?: string;
  /** Headers and TLS for one request; runs exec plugins (their credential cached until it expires). */
  credentials(): Promise<Credentials>;
  /** The context's user, for messages ("" without one). */
  userName: string;
  /** The user's exec command or auth-provider name, for messages. */
  credentialPlugin?: string;
  /** The files that were read, in precedence order (empty for in-cluster config). */
  files: string[];
}

/** client-node, loaded when first needed (a `require` is evaluated where it runs, not at start). */
export const clientNode = (): typeof import("@kubernetes/client-node") => require("@kubernetes/client-node");

/** Where kubectl looks: the flag, else every file in KUBECONFIG, else ~/.kube/config. */
export function kubeconfigFiles(flag: string | undefined, env: NodeJS.ProcessEnv): { files: string[]; explicit: boolean } {
  if (flag) return { files: [path.resolve(flag)], explicit: true };
  const list = env.KUBECONFIG;
  if (list) {
    const files = [...new Set(list.split(path.delimiter).filter(Boolean).map((f) => path.resolve(f)))];
    return { files, explicit: false };
  }
  const home = env.HOME || env.USERPROFILE || os.homedir();
  return { files: [path.join(home, ".kube", "config")], explicit: false };
}

type Named = { name?: unknown; [key: string]: unknown };
interface RawKubeconfig {
  clusters: Named[];
  users: Named[];
  contexts: Named[];
  currentContext?: string;
}

function readKubeconfigFile(file: string): RawKubeconfig | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    throw kubeconfigError(`cannot read kubeconfig ${file}: ${code ?? (e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    const reason = ((e as Error).message ?? "").split("\n")[0];
    throw kubeconfigError(`kubeconfig ${file} is not valid YAML: ${reason}`);
  }
  if (doc === null || doc === undefined) return { clusters: [], users: [], contexts: [] };
  if (typeof doc !== "object" || Array.isArray(doc)) throw kubeconfigError(`kubeconfig ${file} is not a kubeconfig (expected a mapping)`);
  const obj = doc as Record<string, unknown>;
  const list = (key: string): Named[] => {
    const v = obj[key];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) throw kubeconfigError(`kubeconfig ${file}: "${key}" must be a list`);
    return v.filter((x) => x && typeof x === "object") as Named[];
  };
  const raw: RawKubeconfig = { clusters: list("clusters"), users: list("users"), contexts: list("contexts") };
  const current = obj["current-context"];
  if (typeof current === "string" && current) raw.currentContext = current;
  resolveRelativePaths(raw, path.dirname(file));
  return raw;
}

const absolute = (dir: string, p: unknown) => (typeof p === "string" && p && !path.isAbsolute(p) ? path.join(dir, p) : p);

/** kubectl resolves file references against the directory of the file that holds them. */
function resolveRelativePaths(raw: RawKubeconfig, dir: string): void {
  for (const c of raw.clusters) {
    const cluster = c.cluster as Record<string, unknown> | undefined;
    if (cluster) cluster["certificate-authority"] = absolute(dir, cluster["certificate-authority"]);
  }
  for (const u of raw.users) {
    const user = u.user as Record<string, unknown> | undefined;
    if (!user) continue;
    for (const key of ["client-certificate", "client-key", "token-file"]) user[key] = absolute(dir, user[key]);
    const exec = user.exec as Record<string, unknown> | undefined;
    // A bare command name is looked up in PATH; only a path with a separator is relative to the file.
    if (exec && typeof exec.command === "string" && /[\\/]/.test(exec.command)) exec.command = absolute(dir, exec.command);
  }
}

/** kubectl's merge: for every name the first file that defines it wins; so does the first current-context. */
export function mergeKubeconfigs(configs: RawKubeconfig[]): RawKubeconfig {
  const merged: RawKubeconfig = { clusters: [], users: [], contexts: [] };
  const seen = { clusters: new Set<unknown>(), users: new Set<unknown>(), contexts: new Set<unknown>() };
  for (const cfg of configs) {
    for (const key of ["clusters", "users", "contexts"] as const) {
      for (const entry of cfg[key]) {
        if (typeof entry.name !== "string" || seen[key].has(entry.name)) continue;
        seen[key].add(entry.name);
        merged[key].push(entry);
      }
    }
    merged.currentContext ??= cfg.currentContext;
  }
  return merged;
}

const IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token";
const ANONYMOUS_USER = "ktctl:anonymous";

/** Loads kubeconfig exactly as kubectl would for these flags and environment. */
export function loadKubeconfig(opts: KubeconfigOptions, env: NodeJS.ProcessEnv = process.env): ResolvedKubeconfig {
  const { files, explicit } = kubeconfigFiles(opts.kubeconfig, env);
  const loaded: { file: string; raw: RawKubeconfig }[] = [];
  for (const file of files) {
    const raw = readKubeconfigFile(file);
    if (raw) loaded.push({ file, raw });
    else if (explicit) throw kubeconfigError(`cannot read kubeconfig ${file}: no such file`);
  }

  if (loaded.length === 0) {
    if (env.KUBERNETES_SERVICE_HOST && fs.existsSync(IN_CLUSTER_TOKEN) && !opts.context) return inCluster(opts);
    const where = env.KUBECONFIG ? "none of the files in KUBECONFIG exists" : `${files[0]} does not exist`;
    throw kubeconfigError(`no kubeconfig found: ${where}`, "pass --kubeconfig or set KUBECONFIG");
  }

  const merged = mergeKubeconfigs(loaded.map((l) => l.raw));
  const source = loaded.map((l) => l.file).join(path.delimiter);
  const contextName = opts.context || merged.currentContext;
  if (!contextName) throw kubeconfigError(`no current context in kubeconfig ${source}`, "pass --context");
  const context = merged.contexts.find((c) => c.name === contextName);
  if (!context) throw kubeconfigError(`context "${contextName}" not found in kubeconfig ${source}`);
  const ctx = (context.context ?? {}) as Record<string, unknown>;
  const clusterName = ctx.cluster;
  const cluster = merged.clusters.find((c) => c.name === clusterName);
  const server = (cluster?.cluster as Record<string, unknown> | undefined)?.server;
  if (!cluster || typeof server !== "string" || !server) {
    throw kubeconfigError(`context "${contextName}" refers to cluster "${String(clusterName ?? "")}" which has no server in kubeconfig ${source}`);
  }
  const userName = ctx.user;
  if (userName !== undefined && userName !== "") {
    const user = merged.users.find((u) => u.name === userName);
    if (!user) throw kubeconfigError(`context "${contextName}" refers to user "${String(userName)}" which is not in kubeconfig ${source}`);
    prepareUser(user, String(userName));
  } else {
    // client-node applies the cluster's CA and skip-verify only when the context has a user.
    merged.users.push({ name: ANONYMOUS_USER, user: {} });
    ctx.user = ANONYMOUS_USER;
  }

  // JSON is YAML: client-node parses the merged document like any kubeconfig. Entries that do not
  // concern the chosen context are only filtered when invalid, as kubectl ignores them too.
  const document = JSON.stringify({ ...merged, "current-context": contextName });
  let kc: KubeConfig | undefined;
  const legacy = (): KubeConfig => {
    if (kc) return kc;
    const loading = new (clientNode().KubeConfig)();
    try {
      loading.loadFromString(document, { onInvalidEntry: "filter" });
    } catch (e) {
      throw kubeconfigError(`kubeconfig ${source} is invalid: ${(e as Error).message}`);
    }
    loading.setCurrentContext(contextName);
    if (!loading.getCurrentCluster()) throw kubeconfigError(`cluster "${String(clusterName)}" in kubeconfig ${source} is invalid`);
    return (kc = loading);
  };
  const clusterFields = cluster.cluster as Record<string, unknown>;
  const user = merged.users.find((u) => u.name === ctx.user);
  const userFields = user?.name === ANONYMOUS_USER ? undefined : (user?.user as Record<string, unknown> | undefined);
  const namespace = opts.namespace || (typeof ctx.namespace === "string" && ctx.namespace) || "default";
  const plugin = (userFields?.exec as { command?: unknown } | undefined)?.command ?? (userFields?.["auth-provider"] as { name?: unknown } | undefined)?.name;
  return {
    get kc() {
      return legacy();
    },
    context: contextName,
    namespace,
    server,
    ...(typeof clusterFields["proxy-url"] === "string" && clusterFields["proxy-url"] ? { proxyUrl: clusterFields["proxy-url"] } : {}),
    credentials: credentialSource({ cluster: clusterFields, user: userFields, legacy }),
    userName: userFields ? String(userName) : "",
    ...(typeof plugin === "string" ? { credentialPlugin: plugin } : {}),
    files: loaded.map((l) => l.file),
  };
}

/** Checks what client-node would otherwise fail on silently, and gives exec plugins what kubectl gives them. */
function prepareUser(entry: Named, name: string): void {
  const user = (entry.user ?? {}) as Record<string, unknown>;
  entry.user = user;
  const tokenFile = user["token-file"];
  if (typeof tokenFile === "string" && !user.token) {
    try {
      fs.accessSync(tokenFile, fs.constants.R_OK);
    } catch (e) {
      throw kubeconfigError(`cannot read token-file ${tokenFile} of user "${name}": ${(e as NodeJS.ErrnoException).code ?? e}`);
    }
  }
  const exec = user.exec as Record<string, unknown> | undefined;
  if (exec) {
    if (typeof exec.command !== "string" || !exec.command) throw kubeconfigError(`user "${name}" has an exec plugin without a command`);
    const envList = Array.isArray(exec.env) ? [...exec.env] : [];
    if (!envList.some((e: any) => e?.name === "KUBERNETES_EXEC_INFO")) {
      const apiVersion = typeof exec.apiVersion === "string" ? exec.apiVersion : "client.authentication.k8s.io/v1";
      const info = { apiVersion, kind: "ExecCredential", spec: { interactive: false } };
      envList.push({ name: "KUBERNETES_EXEC_INFO", value: JSON.stringify(info) });
    }
    exec.env = envList;
  }
}

/** Inside a pod: client-node reads the service account's token and CA (rare enough to load it). */
function inCluster(opts: KubeconfigOptions): ResolvedKubeconfig {
  const kc = new (clientNode().KubeConfig)();
  kc.loadFromCluster();
  const context = kc.getCurrentContext();
  const namespace = opts.namespace || kc.getContextObject(context)?.namespace?.trim() || "default";
  const user = kc.getCurrentUser();
  return {
    kc,
    context,
    namespace,
    server: kc.getCurrentCluster()!.server,
    credentials: credentialsFromClientNode(() => kc),
    userName: user?.name ?? "",
    files: [],
  };
}
