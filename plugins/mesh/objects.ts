// The objects auto mode creates, as pure data: the companion service (the original pods under a
// second name, the router's way to them) and the router Deployment. The router's pod is modelled
// on the developer's own shadow pod, so --image, --imagePullSecret, --nodeSelector, --podQuota
// and the security settings apply to it exactly as they do to every shadow.

import { generateKeyPairSync } from "node:crypto";
import { LABEL_ROLE } from "../../core/session/labels.ts";
import { SHADOW_ENV } from "../../core/protocol/tunnel.ts";
import { ROUTER_CONFIG_ENV, type RouterConfig } from "../../core/protocol/router.ts";
import { ANNOTATION_MESH_SERVICE, companionRole, routerSelector } from "./names.ts";
import type { MeshPort } from "./ports.ts";

/** The router Deployment runs one pod; the Deployment brings it back at once if it is deleted. */
const ROUTER_REPLICAS = 1;

export function companionService(input: {
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
      labels: { ...input.labels, [LABEL_ROLE]: companionRole(original.metadata.name) },
      annotations: { [ANNOTATION_MESH_SERVICE]: original.metadata.name },
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

export interface RouterDeploymentInput {
  name: string;
  namespace: string;
  service: string;
  /** Labels of the session that holds the shared objects (managed-by, session, owner). */
  labels: Record<string, string>;
  /** The developer's running shadow pod, whose settings the router copies. */
  model: any;
  config: RouterConfig;
  plan: MeshPort[];
  tunnelPort: number;
}

export function routerDeployment(input: RouterDeploymentInput): any {
  const { model, config, plan } = input;
  const modelContainer = model?.spec?.containers?.[0] ?? {};
  const selector = routerSelector(input.service);
  const lowPorts = config.listeners.some((l) => l.port < 1024);
  const names = new Map<number, string>();
  for (const port of plan) if (typeof port.targetPort === "string" && !/^\d+$/.test(port.targetPort)) names.set(port.routerPort, port.targetPort);

  const podSecurity = { ...(model?.spec?.securityContext ?? {}) };
  if (lowPorts) {
    // Namespaced and on Kubernetes' list of safe sysctls: lets the unprivileged router bind :80.
    podSecurity.sysctls = [...(podSecurity.sysctls ?? []), { name: "net.ipv4.ip_unprivileged_port_start", value: "0" }];
  }
  const env = [
    { name: SHADOW_ENV.authorizedKey, value: unusableAuthorizedKey() },
    { name: SHADOW_ENV.roles, value: "tunnel,router" },
    { name: SHADOW_ENV.sessionId, value: `mesh-${input.service}` },
    { name: SHADOW_ENV.tunnelPort, value: String(input.tunnelPort) },
    { name: ROUTER_CONFIG_ENV, value: JSON.stringify(config) },
  ];
  const debug = (modelContainer.env ?? []).find((e: any) => e.name === SHADOW_ENV.logLevel);
  if (debug) env.push({ name: SHADOW_ENV.logLevel, value: debug.value });

  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: {
      name: input.name,
      namespace: input.namespace,
      labels: { ...input.labels, ...selector },
      annotations: { [ANNOTATION_MESH_SERVICE]: input.service },
    },
    spec: {
      replicas: ROUTER_REPLICAS,
      selector: { matchLabels: selector },
      template: {
        // No session label here: the holder of the mesh changes, and relabelling a template would
        // roll the router pod.
        metadata: { labels: selector, annotations: { [ANNOTATION_MESH_SERVICE]: input.service } },
        spec: {
          terminationGracePeriodSeconds: 2,
          enableServiceLinks: false,
          automountServiceAccountToken: false,
          securityContext: podSecurity,
          ...(model?.spec?.imagePullSecrets ? { imagePullSecrets: model.spec.imagePullSecrets } : {}),
          ...(model?.spec?.nodeSelector ? { nodeSelector: model.spec.nodeSelector } : {}),
          containers: [
            {
              name: "shadow",
              image: modelContainer.image,
              imagePullPolicy: modelContainer.imagePullPolicy ?? "IfNotPresent",
              env,
              ports: [
                ...config.listeners.map((l) => ({ ...(names.has(l.port) ? { name: names.get(l.port) } : {}), containerPort: l.port })),
                { name: "tunnel", containerPort: input.tunnelPort },
              ],
              readinessProbe: { tcpSocket: { port: config.listeners[0]!.port }, periodSeconds: 1, failureThreshold: 3 },
              ...(modelContainer.resources ? { resources: modelContainer.resources } : {}),
              ...(modelContainer.securityContext ? { securityContext: modelContainer.securityContext } : {}),
              ...(modelContainer.volumeMounts ? { volumeMounts: modelContainer.volumeMounts.filter((m: any) => !m.name.startsWith("kube-api-access")) } : {}),
            },
          ],
          ...(model?.spec?.volumes ? { volumes: model.spec.volumes.filter((v: any) => !v.name.startsWith("kube-api-access")) } : {}),
        },
      },
    },
  };
}

/** The JSON the router was started with, read back from its Deployment. */
export function configOfRouter(deployment: any): RouterConfig | undefined {
  const env: any[] = deployment?.spec?.template?.spec?.containers?.[0]?.env ?? [];
  const text = env.find((e) => e.name === ROUTER_CONFIG_ENV)?.value;
  if (typeof text !== "string") return undefined;
  try {
    return JSON.parse(text) as RouterConfig;
  } catch {
    return undefined;
  }
}
