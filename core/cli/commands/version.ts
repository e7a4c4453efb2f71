import { existsSync } from "node:fs";
import { defineCommand } from "citty";
import { kubeconfigFiles } from "../../kube/kubeconfig.ts";
import { argsFor } from "../../options.ts";
import type { GlobalOptions, PluginApi } from "../../plugin-api.ts";
import { PLUGIN_API_VERSION } from "../../plugin-api.ts";
import { LABEL_MANAGED_BY, MANAGED_BY_VALUE } from "../../session/labels.ts";
import { DEFAULT_SHADOW_IMAGE, VERSION } from "../../protocol/version.ts";
import { clusterReport, type ClusterReport } from "../version/cluster-report.ts";
import type { CoreCommandFactory } from "./index.ts";

/** `version` must stay quick: a cluster that does not answer by then is reported as unreachable. */
const CLUSTER_TIMEOUT_MS = 3000;

type ClusterSection = ({ context: string; namespace: string } & ClusterReport) | { unreachable: string };

/** Only with a kubeconfig on disk: without one, `version` never loads the kube client. */
const hasKubeconfig = (global: GlobalOptions) => kubeconfigFiles(global.kubeconfig, process.env).files.some((file) => existsSync(file));

async function lookAtCluster(api: PluginApi, global: GlobalOptions, image: string): Promise<ClusterSection> {
  const work = (async () => {
    const kube = await api.kube(global);
    const [nodes, pods] = await Promise.all([
      kube.request<{ items: any[] }>("GET", "/api/v1/nodes").then(
        (list) => list.items,
        (error) => ({ error: api.errors.httpStatus(error) === 403 ? "forbidden" : api.errors.text(error) }),
      ),
      kube.request<{ items: any[] }>("GET", `/api/v1/namespaces/${encodeURIComponent(kube.namespace)}/pods?labelSelector=${encodeURIComponent(`${LABEL_MANAGED_BY}=${MANAGED_BY_VALUE}`)}`),
    ]);
    return { context: kube.context, namespace: kube.namespace, ...clusterReport({ image, version: VERSION, nodes, pods: pods.items.filter((p) => p.spec?.containers?.length) }) };
  })();
  let timer: Timer | undefined;
  const timeout = new Promise<ClusterSection>((resolve) => {
    timer = setTimeout(() => resolve({ unreachable: `no answer within ${CLUSTER_TIMEOUT_MS / 1000} s` }), CLUSTER_TIMEOUT_MS);
  });
  try {
    return await Promise.race([work.catch((error) => ({ unreachable: api.errors.text(error) })), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const versionCommand: CoreCommandFactory = ({ api }) =>
  defineCommand({
    meta: { name: "version", description: "Show ktctl's version, its shadow image and, with a kubeconfig, the shadows in the namespace" },
    args: argsFor("version"),
    async run({ args }) {
      const global = api.globalOptions(args);
      const shadowImage = global.image || DEFAULT_SHADOW_IMAGE;
      const info = {
        version: VERSION,
        shadowImage,
        pluginApi: PLUGIN_API_VERSION,
        bun: Bun.version,
        os: process.platform,
        arch: process.arch,
      };
      const cluster = !args.client && hasKubeconfig(global) ? await lookAtCluster(api, global, shadowImage) : undefined;
      if (args.output === "json") {
        console.log(JSON.stringify(cluster ? { ...info, cluster } : info, null, 2));
        return;
      }
      const rows: [string, string][] = [
        ["ktctl", info.version],
        ["shadow image", info.shadowImage],
        ["plugin API", String(info.pluginApi)],
        ["bun", info.bun],
        ["os/arch", `${info.os}/${info.arch}`],
      ];
      if (cluster && "unreachable" in cluster) rows.push(["cluster", `unreachable (${cluster.unreachable})`]);
      else if (cluster) {
        rows.push(["cluster", `context ${cluster.context}, namespace ${cluster.namespace}`]);
        rows.push(["image pullable", `${cluster.image.pullable} (${cluster.image.detail})`]);
        rows.push(["shadows", cluster.shadows.length === 0 ? "none in the namespace" : String(cluster.shadows.length)]);
      }
      const width = Math.max(...rows.map(([k]) => k.length));
      for (const [key, value] of rows) console.log(`${key.padEnd(width)}  ${value}`);
      if (cluster && !("unreachable" in cluster)) {
        for (const s of cluster.shadows) console.log(`  ${s.name}  ${s.role}  ktctl ${s.version}  ${s.image}  ${s.state}`);
        for (const warning of cluster.warnings) process.stderr.write(`ktctl: warning: ${warning}\n`);
      }
    },
  });

export default versionCommand;
