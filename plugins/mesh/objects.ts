// The objects auto mode creates, as pure data: the companion service (the original pods under a
// second name, the router's way to them) and the router Deployment. The router's pod is the core's
// shadow pod template (api.shadowPods) made from the session's flags, so --image,
// --imagePullSecret, --nodeSelector, --podQuota and the security settings apply to it exactly as
// they do to every shadow.

import { generateKeyPairSync } from "node:crypto";
import type { GlobalOptions, PluginApi, RouterConfig } from "../../core/plugin-api.ts";
import { companionRole, meshServiceAnnotation, routerSelector, type Naming } from "./names.ts";
import type { MeshPort } from "./ports.ts";

/** The router Deployment runs one pod; the Deployment brings it back at once if it is deleted. */
const ROUTER_REPLICAS = 1;

export function companionService(api: Naming, input: {
  name: string;
  original: any;
  labels: Record<string, string>;
}): any {
  const { original } = input;
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: {
      name: input.name,
      namespace: original.metadata.namespace,
      labels: { ...input.labels, [api.scheme.labels.role]: companionRole(api, original.metadata.name) },
      annotations: { [meshServiceAnnotation(api)]: original.metadata.name },
    },
    spec: {
      type: "ClusterIP",
      selector: { ...original.spec.selector },
      ports: (original.spec.ports ?? []).map((p: any) => ({
        ...(p.name ? { name: p.name } : {}),
        port: p.port,
        targetPort: p.targetPort ?? p.port,
        protocol: p.protocol ?? "TCP",
        ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}),
      })),
    },
  };
}

/** One listener per distinct router port; its fallback is the companion at the matching service port. */
export function routerConfig(plan: MeshPort[], companionIP: string, service: string, adminPort: number): RouterConfig {
  const listeners = new Map<number, RouterConfig["listeners"][number]>();
  for (const port of plan) {
    if (listeners.has(port.routerPort)) continue;
    listeners.set(port.routerPort, {
      port: port.routerPort,
      fallback: { host: companionIP, port: port.servicePort },
      ...(port.name ? { name: port.name } : {}),
      ...(port.protocol ? { protocol: port.protocol } : {}),
    });
  }
  return { listeners: [...listeners.values()], adminPort, service, sniffTimeoutMs: 500, statsIntervalMs: 60_000 };
}

/**
 * An OpenSSH public key whose private half is dropped at once. The shadow always runs its tunnel
 * role and insists on a key; the router's tunnel is not meant to be entered by anyone, so it
 * gets one nobody holds.
 */
export function unusableAuthorizedKey(): string {
  const { publicKey } = generateKeyPairSync("ed25519");
  const raw = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
  const field = (data: Buffer) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    return Buffer.concat([length, data]);
  };
  const blob = Buffer.concat([field(Buffer.from("ssh-ed25519")), field(raw)]);
  return `ssh-ed25519 ${blob.toString("base64")} ktctl-mesh-router-nobody`;
}

/** What the router Deployment needs of the plugin API. */
export type RouterBuilding = Pick<PluginApi, "scheme" | "shadowPods">;

export interface RouterDeploymentInput {
  name: string;
  namespace: string;
  service: string;
  /** Labels of the session that holds the shared objects (managed-by, session, owner). */
  labels: Record<string, string>;
  /** The creating session's global flags: the router is a shadow like theirs. */
  global: GlobalOptions;
  config: RouterConfig;
  plan: MeshPort[];
  tunnelPort: number;
}

export function routerDeployment(api: RouterBuilding, input: RouterDeploymentInput): any {
  const { config, plan } = input;
  const selector = routerSelector(api, input.service);
  const serviceAnnotation = { [meshServiceAnnotation(api)]: input.service };
  const names = new Map<number, string>();
  for (const port of plan) if (typeof port.targetPort === "string" && !/^\d+$/.test(port.targetPort)) names.set(port.routerPort, port.targetPort);

  const pod = api.shadowPods.template({
    global: input.global,
    sessionId: `mesh-${input.service}`,
    authorizedKey: unusableAuthorizedKey(),
    roles: ["router"],
    routerConfig: config,
    tunnelPort: input.tunnelPort,
    labels: selector,
  });
  const { serviceAccountName: _noToken, ...spec } = pod.spec;
  const container = spec.containers[0];

  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: {
      name: input.name,
      namespace: input.namespace,
      labels: { ...input.labels, ...selector },
      annotations: serviceAnnotation,
    },
    spec: {
      replicas: ROUTER_REPLICAS,
      selector: { matchLabels: selector },
      template: {
        // No session label here: the holder of the mesh changes, and relabelling a template would
        // roll the router pod.
        metadata: { labels: pod.metadata.labels, annotations: { ...pod.metadata.annotations, ...serviceAnnotation } },
        spec: {
          ...spec,
          // Open connections get a moment to finish; the router holds no Kubernetes token.
          terminationGracePeriodSeconds: 2,
          automountServiceAccountToken: false,
          containers: [
            {
              ...container,
              ports: [
                ...config.listeners.map((l) => ({ ...(names.has(l.port) ? { name: names.get(l.port) } : {}), containerPort: l.port })),
                { name: "tunnel", containerPort: input.tunnelPort },
              ],
              // Ready once it serves the service's traffic, not merely its tunnel.
              readinessProbe: { tcpSocket: { port: config.listeners[0]!.port }, periodSeconds: 1, failureThreshold: 3 },
            },
          ],
        },
      },
    },
  };
}

/** The configuration the router was started with, read back from its Deployment. */
export const configOfRouter = (api: Pick<PluginApi, "router">, deployment: any): RouterConfig | undefined =>
  api.router.configOf(deployment?.spec?.template);
