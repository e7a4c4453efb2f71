// What the reliability suites (rbac, keys, hostile input, crash) share: a namespace of their own with
// a copy of the echo workload (so other tests exchanging demo/echo cannot disturb them), a catalogue
// of every mode as ktctl is started for it and the line that says it is ready, a kubeconfig that
// holds only a ServiceAccount's token, and snapshots of everything a session may touch, in the
// cluster and on the laptop.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { echoWorkloadYaml, namespaceYaml } from "./echo-workload.ts";
import { DEMO_NS, KUBECONFIG, LAPTOP_NS, REPO, inLaptop, kubectl, kubectlJson, kubectlOk, runInLaptop, runInPod } from "./harness.ts";

/** The workload every mode targets: echo, two replicas, its ports (a named targetPort included). */
export const workloadYaml = (namespace: string) =>
  [
    namespaceYaml(namespace, { "ktctl-test": "reliability" }),
    echoWorkloadYaml({
      namespace,
      name: "echo",
      replicas: 2,
      tcp: true,
      labels: { app: "echo" },
      podLabels: { tier: "backend" },
      serviceAnnotations: { team: "reliability" },
    }),
  ].join("---\n");

/** Creates (or re-applies) the namespace and its echo workload and waits for the rollout. */
export async function deployWorkspace(namespace: string): Promise<void> {
  // A namespace still terminating (an earlier run removed it) takes no new objects.
  const phase = await kubectl(["get", "namespace", namespace, "-o", "jsonpath={.status.phase}"]);
  if (phase.stdout === "Terminating") await kubectl(["wait", "--for=delete", `namespace/${namespace}`, "--timeout=120s"], { timeoutMs: 130_000 });
  await kubectlOk(["apply", "-f", "-"], { stdin: workloadYaml(namespace) });
  await kubectlOk(["-n", namespace, "rollout", "status", "deployment/echo", "--timeout=120s"], { timeoutMs: 130_000 });
}

/**
 * Removes what a failed case may have left (the namespace stays for the next run: removing and
 * re-creating a namespace costs a minute).
 */
export async function tidyWorkspace(namespace: string): Promise<void> {
  await kubectl(["-n", namespace, "delete", "pods,services,deployments,leases", "-l", "ktctl.io/managed-by", "--wait=false"]);
}

export interface Mode {
  /** Short name used in test titles and tables: connect-proxy, exchange-scale, ... */
  name: string;
  /** ktctl's arguments after the global flags. */
  args: (port: number) => string[];
  /** The line that says the session is fully up. */
  ready: RegExp;
}

/** Every mode, as a developer starts it against the echo workload. */
export const MODES: Mode[] = [
  { name: "connect-system", args: () => ["connect", "--mode", "system"], ready: /Connected to namespace \S+ in [\d.]+s/ },
  { name: "connect-hosts", args: () => ["connect", "--mode", "hosts"], ready: /Connected to namespace \S+ in [\d.]+s/ },
  { name: "connect-proxy", args: () => ["connect", "--mode", "proxy", "--proxyPort", "0"], ready: /Connected to namespace \S+ in [\d.]+s/ },
  // Straight to the pods: no shadow while every connection finds its pod (proxy mode, so it can run beside a system-mode connect).
  { name: "connect-pod", args: () => ["connect", "--mode", "proxy", "--proxyPort", "0", "--via", "pod"], ready: /Connected to namespace \S+ in [\d.]+s/ },
  { name: "exchange-selector", args: (port) => ["exchange", "echo", "--expose", `${port}:80`], ready: /exchanged svc\/echo in [\d.]+s/ },
  { name: "exchange-scale", args: (port) => ["exchange", "deployment/echo", "--mode", "scale", "--expose", `${port}:80`], ready: /exchanged deployment\/echo in [\d.]+s/ },
  { name: "mesh", args: (port) => ["mesh", "echo", "--expose", `${port}:80`, "--versionMark", "rel"], ready: /\bMARK \S/ },
  { name: "preview", args: (port) => ["preview", "echo-preview", "--expose", `${port}:80`], ready: /preview \S+\/echo-preview is up/ },
  { name: "forward", args: (port) => ["forward", "svc/echo", `${port}:80`], ready: /Forwarding 127\.0\.0\.1:\d+/ },
];

/** The answer of the laptop's server (exchange-harness's startLaptopServer). */
export const LAPTOP_ANSWER = "laptop";

const fromPod = async (url: string, headers: Record<string, string> = {}): Promise<string> => {
  const flags = Object.entries(headers).flatMap(([k, v]) => ["-H", `${k}:${v}`]);
  const r = await runInPod(["kecho", "client", "http", url, ...flags], "toolbox", DEMO_NS, { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`kecho ${url} failed (${r.code}): ${r.stderr.trim()}`);
  return JSON.parse(r.stdout).pod;
};

const fromLaptop = async (url: string, extra: string[] = []): Promise<string> => {
  const r = await runInLaptop(["curl", "-sS", "-m", "5", ...extra, url], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`curl ${url}: exit ${r.code} ${r.stderr.trim()}`);
  return JSON.parse(r.stdout).pod;
};

/**
 * One request through a running mode, and who answered: a cluster pod's name for connect and
 * forward, the laptop for exchange, mesh and preview. `output` is what ktctl printed so far.
 */
export async function probe(mode: string, namespace: string, port: number, output: string): Promise<string> {
  if (mode === "forward") return fromLaptop(`http://127.0.0.1:${port}/`);
  if (mode === "connect-system" || mode === "connect-hosts") return fromLaptop(`http://echo.${namespace}/`);
  if (mode === "connect-proxy" || mode === "connect-pod") {
    const proxy = /proxy on 127\.0\.0\.1:(\d+)/.exec(output)?.[1];
    if (!proxy) throw new Error("connect printed no proxy port");
    return fromLaptop(`http://echo.${namespace}/`, ["-x", `http://127.0.0.1:${proxy}`]);
  }
  if (mode === "mesh") return fromPod(`http://echo.${namespace}/`, { VERSION: "rel" });
  if (mode === "preview") return fromPod(`http://echo-preview.${namespace}/`);
  return fromPod(`http://echo.${namespace}/`);
}

/** Whether `answer` is what `mode` should produce: the laptop for modes that serve, a cluster pod otherwise. */
export const answersRightly = (mode: string, answer: string): boolean =>
  /^(exchange|mesh|preview)/.test(mode) ? answer === LAPTOP_ANSWER : answer.startsWith("echo-");

export const modeNamed = (name: string): Mode => {
  const mode = MODES.find((m) => m.name === name);
  if (!mode) throw new Error(`no mode ${name}`);
  return mode;
};

/** The ktctl argv on the laptop, from the worktree's source, with a given kubeconfig and namespace. */
export const ktctlArgv = (kubeconfig: string, namespace: string, args: string[]): string[] =>
  inLaptop(["bun", join(REPO, "core/cli/main.ts"), "--kubeconfig", kubeconfig, "-n", namespace, ...args]);

/** A fresh KTCTL_HOME; removed by the caller. */
export const scratchHome = (prefix: string): string => mkdtempSync(join(tmpdir(), `ktctl-rel-${prefix}-`));
export const removeHome = (home: string) => rmSync(home, { recursive: true, force: true });

export interface RbacRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

/**
 * A ServiceAccount bound to a Role of exactly `rules` in `namespace` (plus, when given, a ClusterRole
 * of `clusterRules`), and a kubeconfig file holding only its token. Re-applying replaces the rules.
 */
export async function restrictedKubeconfig(
  namespace: string,
  name: string,
  rules: RbacRule[],
  dir: string,
  clusterRules: RbacRule[] = [],
): Promise<string> {
  const yaml = [
    { apiVersion: "v1", kind: "ServiceAccount", metadata: { name, namespace } },
    { apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", metadata: { name, namespace }, rules },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name, namespace },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name },
      subjects: [{ kind: "ServiceAccount", name, namespace }],
    },
  ];
  if (clusterRules.length) {
    yaml.push(
      { apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRole", metadata: { name: `${namespace}-${name}` }, rules: clusterRules } as any,
      {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "ClusterRoleBinding",
        metadata: { name: `${namespace}-${name}` },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: `${namespace}-${name}` },
        subjects: [{ kind: "ServiceAccount", name, namespace }],
      } as any,
    );
  }
  await kubectlOk(["apply", "-f", "-"], { stdin: JSON.stringify({ apiVersion: "v1", kind: "List", items: yaml }) });
  const token = (await kubectlOk(["-n", namespace, "create", "token", name, "--duration=2h"])).trim();
  const admin = JSON.parse(await kubectlOk(["config", "view", "--raw", "-o", "json"]));
  const path = join(dir, `${name}.kubeconfig`);
  writeFileSync(
    path,
    JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: admin.clusters,
      users: [{ name, user: { token } }],
      contexts: [{ name, context: { cluster: admin.clusters[0].name, user: name, namespace } }],
      "current-context": name,
    }),
  );
  return path;
}

/** Everything in a namespace a session may touch, as the user would compare it (no status, no bookkeeping). */
export async function clusterState(namespace: string): Promise<string> {
  const list = await kubectlJson<{ items: any[] }>(["-n", namespace, "get", "services,deployments,configmaps,secrets,leases"]);
  const objects = list.items
    .filter((o) => !(o.kind === "ConfigMap" && o.metadata.name === "kube-root-ca.crt"))
    .map((o) => ({
      kind: o.kind,
      name: o.metadata.name,
      labels: o.metadata.labels ?? {},
      annotations: Object.fromEntries(Object.entries(o.metadata.annotations ?? {}).filter(([k]) => k !== "deployment.kubernetes.io/revision")),
      spec: o.kind === "Lease" ? undefined : o.spec,
      data: o.data,
    }))
    .sort((a, b) => `${a.kind}/${a.name}`.localeCompare(`${b.kind}/${b.name}`));
  return JSON.stringify(objects, null, 1);
}

/** Objects ktctl made or marked in a namespace (by its labels), pods included. */
export async function ktctlObjects(namespace: string): Promise<string[]> {
  const r = await kubectl(["-n", namespace, "get", "pods,services,deployments,replicasets,configmaps,secrets,leases", "-l", "ktctl.io/managed-by", "-o", "name"]);
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout.split("\n").filter(Boolean);
}

const LAPTOP_ETC = `/etc/netns/${LAPTOP_NS}`;

/** Everything ktctl may change on the laptop: resolver and hosts bytes, nft, iptables, routes, addresses. */
export async function laptopState(): Promise<Record<string, string>> {
  const [iptables, nft, routes, addresses] = await Promise.all([
    runInLaptop(["iptables-save"]),
    runInLaptop(["nft", "list", "ruleset"]),
    runInLaptop(["ip", "route", "show", "table", "all"]),
    runInLaptop(["ip", "addr"]),
  ]);
  const file = async (path: string) => Buffer.from(await Bun.file(path).arrayBuffer()).toString("base64");
  return {
    resolv: await file(`${LAPTOP_ETC}/resolv.conf`),
    hosts: await file(`${LAPTOP_ETC}/hosts`),
    // iptables-save stamps the time in comments; the rules are the rest.
    iptables: iptables.stdout.split("\n").filter((l) => !l.startsWith("#")).join("\n"),
    nft: nft.stdout,
    routes: routes.stdout,
    // Counters and lifetimes move by themselves; the addresses are the rest.
    addresses: addresses.stdout
      .split("\n")
      .filter((l) => !/valid_lft/.test(l))
      .join("\n"),
  };
}

/**
 * Waits until no other connect (another developer on this shared test laptop) holds the laptop's
 * resolver or hosts file: only one connect at a time may change them, and a snapshot taken while
 * another one runs would blame this session for its changes.
 */
export async function laptopQuiet(timeoutMs = 180_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [resolv, hosts] = await Promise.all([Bun.file(`${LAPTOP_ETC}/resolv.conf`).text(), Bun.file(`${LAPTOP_ETC}/hosts`).text()]);
    if (!/#.*ktctl/.test(resolv) && !/#.*ktctl/.test(hosts)) return;
    if (Date.now() > deadline) throw new Error(`another ktctl connect holds the laptop's resolver or hosts file:\n${resolv}\n${hosts}`);
    await Bun.sleep(500);
  }
}

/** The keys of two state records that differ. */
export function differences(a: Record<string, string>, b: Record<string, string>): string[] {
  return Object.keys(a).filter((k) => a[k] !== b[k]);
}

/** ktctl's objects in a namespace that are not already being deleted (a deleted pod may take its grace period). */
export async function liveKtctlObjects(namespace: string): Promise<string[]> {
  const list = await kubectlJson<{ items: any[] }>(["-n", namespace, "get", "pods,services,deployments,replicasets,configmaps,secrets,leases", "-l", "ktctl.io/managed-by"]);
  return list.items.filter((o) => !o.metadata.deletionTimestamp).map((o) => `${o.kind}/${o.metadata.name}`);
}

/** What a session may touch, before it starts: a namespace's objects and (unless left out) the laptop. */
export interface Snapshot {
  namespace: string;
  cluster: string;
  laptop?: Record<string, string>;
}

/** `laptop: false` for sessions that change nothing on the laptop, so other tests' connects there do not count. */
export async function snapshot(namespace: string, options: { laptop?: boolean } = {}): Promise<Snapshot> {
  const [cluster, laptop] = await Promise.all([clusterState(namespace), options.laptop === false ? undefined : laptopState()]);
  return { namespace, cluster, laptop };
}

/** The objects (kind/name) whose state differs between two clusterState() results. */
function changedObjects(before: string, now: string): string[] {
  const index = (state: string) => new Map((JSON.parse(state) as any[]).map((o) => [`${o.kind}/${o.name}`, JSON.stringify(o)]));
  const [a, b] = [index(before), index(now)];
  return [...new Set([...a.keys(), ...b.keys()])].filter((k) => a.get(k) !== b.get(k));
}

/** What differs from `before` (empty when restored): ktctl's objects left, objects changed, laptop state changed. */
export async function unrestored(before: Snapshot): Promise<string[]> {
  const [objects, cluster, laptop] = await Promise.all([liveKtctlObjects(before.namespace), clusterState(before.namespace), before.laptop && laptopState()]);
  return [
    ...objects.map((o) => `left: ${o}`),
    ...changedObjects(before.cluster, cluster).map((o) => `changed: ${o}`),
    ...(laptop && before.laptop ? differences(laptop, before.laptop).map((k) => `laptop ${k}`) : []),
  ];
}

/**
 * Waits until everything is as in `before` or `timeoutMs` pass; returns what still differs (empty
 * when restored) and how long it took. Nobody acts meanwhile: only ktctl's watchdog or the API server may.
 */
export async function untilRestored(before: Snapshot, timeoutMs: number): Promise<{ left: string[]; ms: number }> {
  const started = Date.now();
  for (;;) {
    const left = await unrestored(before);
    if (!left.length || Date.now() - started > timeoutMs) return { left, ms: Date.now() - started };
    await Bun.sleep(100);
  }
}

/** Gives the next case a clean namespace after a failed one: ktctl's objects removed, the workload re-applied. */
export async function repairWorkspace(namespace: string): Promise<void> {
  await tidyWorkspace(namespace);
  await deployWorkspace(namespace);
}

export { KUBECONFIG };
