// The kubeconfig `spring run` hands to the app: the one cluster, user and context ktctl uses, that
// context current and its namespace ktctl's namespace. Java clients honour only a kubeconfig's
// current-context (no --context) and find no service-account namespace outside a pod. The file is
// the owner's alone (it holds credentials) and is removed when the session ends.

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Kube } from "../../core/plugin-api.ts";

/** The kubeconfig document for `kube`'s context with `namespace` (JSON, which is YAML too). */
export function sessionKubeconfig(kube: Pick<Kube, "kc" | "context">, namespace: string): Record<string, unknown> {
  const full = JSON.parse(kube.kc.exportConfig()) as { clusters?: any[]; users?: any[]; contexts?: any[] };
  const context = full.contexts?.find((c) => c.name === kube.context);
  if (!context) throw new Error(`context "${kube.context}" is not in the kubeconfig`);
  const { cluster, user } = context.context as { cluster: string; user?: string };
  const strip = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== null));
  return {
    apiVersion: "v1",
    kind: "Config",
    clusters: (full.clusters ?? []).filter((c) => c.name === cluster).map((c) => ({ name: c.name, cluster: strip(c.cluster) })),
    users: (full.users ?? []).filter((u) => u.name === user).map((u) => ({ name: u.name, user: strip(u.user) })),
    contexts: [{ name: kube.context, context: strip({ cluster, user, namespace }) }],
    "current-context": kube.context,
  };
}

export interface SessionKubeconfigFile {
  path: string;
  remove(): Promise<void>;
}

/** Writes it to a fresh private directory (0700), the file 0600. */
export async function writeSessionKubeconfig(kube: Pick<Kube, "kc" | "context">, namespace: string): Promise<SessionKubeconfigFile> {
  const dir = await mkdtemp(join(tmpdir(), "ktctl-spring-"));
  const path = join(dir, "kubeconfig");
  await writeFile(path, `${JSON.stringify(sessionKubeconfig(kube, namespace), null, 2)}\n`, { mode: 0o600 });
  return { path, remove: () => rm(dir, { recursive: true, force: true }) };
}
