// Names and marks of everything mesh creates or changes, derived from the service name alone, so
// every developer's ktctl (and the watchdog, and `ktctl clean`) finds the same router and
// companion without asking anyone. Keys follow the core's naming scheme (api.scheme).

import type { PluginApi } from "../../core/plugin-api.ts";
import { createHash } from "node:crypto";

/** What naming needs of the plugin API. */
export type Naming = Pick<PluginApi, "scheme">;

/** On the meshed service: the sessions whose routes keep the mesh alive (JSON list of ids). */
export const meshSessionsAnnotation = ({ scheme }: Naming): string => `${scheme.domain}/mesh-sessions`;
/** On the router and the companion: the service they belong to. */
export const meshServiceAnnotation = ({ scheme }: Naming): string => `${scheme.domain}/mesh-service`;

/** The step kind every auto-mode session journals; its undo is the reference-counted leave. */
export const MESH_LEAVE_KIND = "mesh-leave";

const MAX_NAME = 63;

/** `<service>-<suffix>`, cut and hashed when too long for a DNS label. */
function derivedName(service: string, suffix: string): string {
  const full = `${service}-${suffix}`;
  if (full.length <= MAX_NAME) return full;
  const hash = createHash("sha256").update(service).digest("hex").slice(0, 6);
  const room = MAX_NAME - suffix.length - hash.length - 2;
  return `${service.slice(0, room).replace(/-+$/, "")}-${hash}-${suffix}`;
}

/** The companion service that keeps selecting the original pods. */
export const companionName = (service: string): string => derivedName(service, "ktctl-original");
/** The router Deployment (and the prefix of its pods). */
export const routerName = (service: string): string => derivedName(service, "ktctl-router");

/** Role label values. "mesh-route-" and "mesh-router-" never collide: the character after "mesh-route" differs. */
export const routerRole = ({ scheme }: Naming, service: string): string => scheme.labelSafe(scheme.dnsSafe(`mesh-router-${service}`));
export const companionRole = ({ scheme }: Naming, service: string): string => scheme.labelSafe(scheme.dnsSafe(`mesh-original-${service}`));
/** Role (and pod name suffix) of a developer's own shadow. */
export const developerRole = (service: string): string => `mesh-route-${service}`;

/** The labels the router pods carry; the meshed service selects exactly these. */
export function routerSelector(api: Naming, service: string): Record<string, string> {
  const { scheme } = api;
  return { [scheme.labels.managedBy]: scheme.managedByValue, [scheme.labels.role]: routerRole(api, service) };
}

export const labelSelectorText = (labels: Record<string, string>): string =>
  Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
