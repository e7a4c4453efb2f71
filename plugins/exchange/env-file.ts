// Reads what `--env-file` needs from the cluster (the referenced ConfigMaps and Secrets, the
// namespace's services) and writes the file, readable by its owner only: it may hold secrets.

import { writeFile, chmod } from "node:fs/promises";
import type { Kube, PluginApi } from "../../core/plugin-api.ts";
import { buildEnvironment, formatEnvFile, pickContainer, type EnvResult } from "./env.ts";
import type { ResolvedTarget } from "./target.ts";

type Api = Pick<PluginApi, "errors">;

/** The data of a ConfigMap or Secret in kube.namespace; undefined (with a note when forbidden) if unreadable. */
async function getData(api: Api, kube: Kube, kind: "configmaps" | "secrets", name: string, notes: string[]) {
  try {
    const object = await kube.get<any>(`/api/v1/namespaces/${encodeURIComponent(kube.namespace)}/${kind}/${encodeURIComponent(name)}`);
    return object && ((object.data ?? {}) as Record<string, string>);
  } catch (error) {
    if (api.errors.httpStatus(error) !== 403) throw error;
    notes.push(`not allowed to read ${kind.slice(0, -1)} ${name}`);
    return undefined;
  }
}

/** Builds the target container's environment from the cluster (the target is in kube.namespace). */
export async function readEnvironment(
  api: Api,
  kube: Kube,
  target: Pick<ResolvedTarget, "pod" | "workload">,
  options: { container?: string; targetPorts: number[] },
): Promise<{ result: EnvResult; containerName: string } | { missing: string }> {
  const podSpec = target.pod?.spec ?? target.workload?.spec?.template?.spec;
  const containers: any[] = podSpec?.containers ?? [];
  const container = pickContainer(containers, options.container, options.targetPorts);
  if (!container) {
    const names = containers.map((c) => c.name).join(", ");
    return { missing: options.container ? `no container "${options.container}" (containers: ${names || "none"})` : "no pod or workload to read the environment from" };
  }
  const namespace = kube.namespace;
  const notes: string[] = [];
  const configMapNames = new Set<string>();
  const secretNames = new Set<string>();
  for (const source of container.envFrom ?? []) {
    if (source.configMapRef?.name) configMapNames.add(source.configMapRef.name);
    if (source.secretRef?.name) secretNames.add(source.secretRef.name);
  }
  for (const entry of container.env ?? []) {
    if (entry.valueFrom?.configMapKeyRef?.name) configMapNames.add(entry.valueFrom.configMapKeyRef.name);
    if (entry.valueFrom?.secretKeyRef?.name) secretNames.add(entry.valueFrom.secretKeyRef.name);
  }
  const configMaps: Record<string, Record<string, string> | undefined> = {};
  const secrets: Record<string, Record<string, string> | undefined> = {};
  for (const name of configMapNames) configMaps[name] = await getData(api, kube, "configmaps", name, notes);
  for (const name of secretNames) secrets[name] = await getData(api, kube, "secrets", name, notes);

  const services = ((await kube.request<any>("GET", `/api/v1/namespaces/${encodeURIComponent(namespace)}/services`)).items ?? []) as any[];
  try {
    services.push(await kube.request<any>("GET", "/api/v1/namespaces/default/services/kubernetes"));
  } catch (error) {
    const status = api.errors.httpStatus(error);
    if (status !== 403 && status !== 404) throw error;
    notes.push("the kubernetes service of namespace default is not readable: KUBERNETES_SERVICE_* not set");
  }
  const result = buildEnvironment({
    container,
    pod: target.pod,
    templateMetadata: target.workload?.spec?.template?.metadata,
    namespace,
    configMaps,
    secrets,
    services,
    enableServiceLinks: podSpec?.enableServiceLinks ?? true,
  });
  result.notes.unshift(...notes);
  return { result, containerName: container.name };
}

export async function writeEnvFile(path: string, result: EnvResult, header: string): Promise<void> {
  const format = path.toLowerCase().endsWith(".json") ? "json" : "dotenv";
  await writeFile(path, formatEnvFile(result, format, header), { mode: 0o600 });
  // An existing file keeps its old mode through writeFile: tighten it explicitly.
  await chmod(path, 0o600);
}
