// The shadow pod as ktctl creates it: pure data from the session and the global flags, so the
// spec is unit-tested and identical wherever it is made (first start, or a replacement after the
// pod was deleted mid-session). The template half (no name) also serves shadows that belong to no
// one session, such as mesh's router Deployment: one place knows the shadow's environment.

import { parseKeyValueList, parsePodQuota } from "../options.ts";
import type { GlobalOptions, ShadowOptions, ShadowPodTemplate, ShadowPodTemplateInput } from "../plugin-api.ts";
import { DOMAIN, LABEL_ROLE, dnsSafe, labelSafe } from "../session/labels.ts";
import { ROUTER_CONFIG_ENV } from "../protocol/router.ts";
import { ENDPOINT_LINGER_MS, SHADOW_ENV, SHADOW_TUNNEL_PORT } from "../protocol/tunnel.ts";
import { DEFAULT_SHADOW_IMAGE, VERSION } from "../protocol/version.ts";

/** The ktctl version that created a shadow pod (`ktctl version` compares it with its own). */
export const ANNOTATION_SHADOW_VERSION = `${DOMAIN}/version`;

/** The uid the shadow image runs as; the tunnel role needs no privilege at all. */
export const SHADOW_UID = 65532;

export interface ShadowPodInput {
  name: string;
  namespace: string;
  sessionId: string;
  sessionLabels: Record<string, string>;
  publicKey: string;
  global: GlobalOptions;
  options: ShadowOptions;
}

// Small by default: the tunnel is I/O bound, and a developer's namespace quota is often tight.
const DEFAULT_REQUESTS = { cpu: "10m", memory: "48Mi" };
const DEFAULT_LIMITS = { memory: "512Mi" };

export function shadowPodSpec(input: ShadowPodInput): any {
  const { options } = input;
  const template = shadowPodTemplate({
    global: input.global,
    sessionId: input.sessionId,
    authorizedKey: input.publicKey,
    labels: { ...options.labels, ...input.sessionLabels, [LABEL_ROLE]: labelSafe(dnsSafe(options.role)) },
    ...(options.roles ? { roles: options.roles } : {}),
    ...(options.ports ? { ports: options.ports } : {}),
  });
  return { apiVersion: "v1", kind: "Pod", metadata: { name: input.name, namespace: input.namespace, ...template.metadata }, spec: template.spec };
}

/** A shadow's pod template: labels, annotations and spec, with every global flag applied. */
export function shadowPodTemplate(input: ShadowPodTemplateInput): ShadowPodTemplate {
  const { global } = input;
  const quota = global.podQuota ? parsePodQuota(global.podQuota) : undefined;
  const resources = quota
    ? { requests: { ...quota }, limits: { ...quota } }
    : { requests: DEFAULT_REQUESTS, limits: DEFAULT_LIMITS };
  const roles = ["tunnel", ...(input.roles ?? []).filter((r) => r !== "tunnel")];
  const tunnelPort = input.tunnelPort ?? SHADOW_TUNNEL_PORT;
  const needsApiAccess = Boolean(global.serviceAccount);

  return {
    metadata: {
      labels: {
        ...(global.withLabel ? parseKeyValueList(global.withLabel, "withLabel", "label") : {}),
        ...input.labels,
      },
      annotations: {
        ...(global.withAnnotation ? parseKeyValueList(global.withAnnotation, "withAnnotation", "annotation") : {}),
        [ANNOTATION_SHADOW_VERSION]: VERSION,
      },
    },
    spec: {
      // A shadow holds no state and leaves at once when its session ends; only one deleted under
      // a live session that serves a service through it stays a moment (ENDPOINT_LINGER_MS).
      terminationGracePeriodSeconds: Math.ceil(ENDPOINT_LINGER_MS / 1000) + 2,
      enableServiceLinks: false,
      automountServiceAccountToken: needsApiAccess,
      ...(global.serviceAccount ? { serviceAccountName: global.serviceAccount } : {}),
      ...(global.imagePullSecret ? { imagePullSecrets: [{ name: global.imagePullSecret }] } : {}),
      ...(global.nodeSelector ? { nodeSelector: parseKeyValueList(global.nodeSelector, "nodeSelector", "label") } : {}),
      securityContext: {
        runAsNonRoot: true,
        runAsUser: SHADOW_UID,
        runAsGroup: SHADOW_UID,
        seccompProfile: { type: "RuntimeDefault" },
        // Exchange and mesh listen on the service's own ports, often 80: allowed without any
        // capability through this namespaced, "safe" sysctl.
        sysctls: [{ name: "net.ipv4.ip_unprivileged_port_start", value: "0" }],
      },
      containers: [
        {
          name: "shadow",
          image: global.image || DEFAULT_SHADOW_IMAGE,
          imagePullPolicy: "IfNotPresent",
          env: [
            { name: SHADOW_ENV.authorizedKey, value: input.authorizedKey },
            { name: SHADOW_ENV.roles, value: roles.join(",") },
            { name: SHADOW_ENV.sessionId, value: input.sessionId },
            { name: SHADOW_ENV.podIP, valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
            ...(input.tunnelPort !== undefined ? [{ name: SHADOW_ENV.tunnelPort, value: String(input.tunnelPort) }] : []),
            ...(input.routerConfig ? [{ name: ROUTER_CONFIG_ENV, value: JSON.stringify(input.routerConfig) }] : []),
            ...(global.debug ? [{ name: SHADOW_ENV.logLevel, value: "debug" }] : []),
          ],
          ports: [
            { name: "tunnel", containerPort: tunnelPort },
            ...(input.ports ?? []).map((p) => ({ ...(p.name ? { name: p.name } : {}), containerPort: p.port })),
          ],
          readinessProbe: { tcpSocket: { port: tunnelPort }, periodSeconds: 1, failureThreshold: 3 },
          resources,
          securityContext: {
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            capabilities: { drop: ["ALL"] },
          },
          volumeMounts: [{ name: "tmp", mountPath: "/tmp" }],
        },
      ],
      volumes: [{ name: "tmp", emptyDir: { medium: "Memory", sizeLimit: "16Mi" } }],
    },
  };
}
