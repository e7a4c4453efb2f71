// Reads the ConfigMaps and Secrets Spring Cloud Kubernetes would look for, by name.

import type { Kube, PluginApi } from "../../core/plugin-api.ts";
import { resolveSources, sourceNames, type ResolvedSources } from "./property-sources.ts";

const path = (namespace: string, kind: "configmaps" | "secrets", name: string) =>
  `/api/v1/namespaces/${encodeURIComponent(namespace)}/${kind}/${encodeURIComponent(name)}`;

const decode = (data: Record<string, string> | undefined) =>
  Object.fromEntries(Object.entries(data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8").trim()]));

export interface ClusterSources extends ResolvedSources {
  namespace: string;
  /** Secrets that could not be read (403): Spring Cloud Kubernetes goes on without them too. */
  secretsForbidden: boolean;
}

export async function readClusterSources(api: PluginApi, kube: Kube, namespace: string, app: string, profiles: string[]): Promise<ClusterSources> {
  const { KtctlError, ExitCode, httpStatus } = api.errors;
  const configMaps: Record<string, Record<string, string>> = {};
  const secrets: Record<string, Record<string, string>> = {};
  let secretsForbidden = false;
  for (const name of sourceNames(app, profiles)) {
    const configMap = await kube.get(path(namespace, "configmaps", name)).catch((error) => {
      if (httpStatus(error) === 403) {
        throw new KtctlError(`not allowed to get configmaps in namespace ${namespace}`, ExitCode.forbidden, "ask for get/list on configmaps (ktctl spring doctor prints the role), or work from a copy made by someone who may");
      }
      throw error;
    });
    if (configMap) configMaps[name] = configMap.data ?? {};
    const secret = await kube.get(path(namespace, "secrets", name)).catch((error) => {
      if (httpStatus(error) !== 403) throw error;
      secretsForbidden = true;
      return undefined;
    });
    if (secret) secrets[name] = decode(secret.data);
  }
  return { namespace, secretsForbidden, ...resolveSources({ app, profiles, configMaps, secrets }) };
}

/** "configmaps a, a-dev and secrets a, a-dev in demo": what was looked for, for messages. */
export function describeLookup(sources: ClusterSources): string {
  const names = (kind: string) => sources.lookedFor.filter((l) => l.kind === kind).map((l) => l.name).join(", ");
  return `configmaps ${names("configmap")} and secrets ${names("secret")} in namespace ${sources.namespace}`;
}

export const foundAny = (sources: ResolvedSources) => sources.lookedFor.some((l) => l.found);
