// Which ports the mesh serves: every TCP port of the service, each on the router at the number the
// service's targetPort means (a named targetPort is looked up on the original pods), and which of
// them come to the laptop (`--expose LOCAL[:REMOTE]`, REMOTE being the service port or its target
// port). Pure functions over the service and pod objects, so they are unit-tested.

import type { ListenerProtocol, PluginApi } from "../../core/plugin-api.ts";

/** What port planning needs of the plugin API: the router's protocol hints and the default ports. */
export type PortDefaults = Pick<PluginApi, "router" | "shadowPods">;

export interface MeshPort {
  /** The service port clients call. */
  servicePort: number;
  name?: string;
  /** The service's targetPort as written (a number or a container port name). */
  targetPort: number | string;
  /** Where the router listens for it: the targetPort's number. */
  routerPort: number;
  /** What the router expects on it, from the port's appProtocol or name (default "auto"). */
  protocol?: ListenerProtocol;
}

export interface ExposedPort {
  port: MeshPort;
  /** The developer's local port. */
  local: number;
  /** Where the developer's shadow listens for it. */
  shadowPort: number;
}

export class PortPlanError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = "PortPlanError";
  }
}

/** "80 (target http=8080)", "8081", for messages. */
export const describeMeshPort = (p: MeshPort): string =>
  p.targetPort === p.servicePort
    ? String(p.servicePort)
    : `${p.servicePort} (target ${typeof p.targetPort === "string" ? `${p.targetPort}=` : ""}${p.routerPort})`;

/** The number a named container port has on the given pods (the first pod that declares it). */
function namedPort(pods: any[], name: string): number | undefined {
  for (const pod of pods) {
    for (const container of pod?.spec?.containers ?? []) {
      for (const port of container.ports ?? []) if (port.name === name && port.protocol !== "UDP" && port.protocol !== "SCTP") return port.containerPort;
    }
  }
  return undefined;
}

/** The mesh ports of a service, from its spec and its original pods (for named target ports). */
export function planMeshPorts(api: PortDefaults, service: any, originalPods: any[]): MeshPort[] {
  const ports: any[] = service?.spec?.ports ?? [];
  if (ports.length === 0) throw new PortPlanError(`service ${service?.metadata?.name} has no ports`);
  const other = ports.filter((p) => (p.protocol ?? "TCP") !== "TCP");
  if (other.length > 0) {
    throw new PortPlanError(
      `service ${service.metadata.name} has ${other.map((p) => `${p.protocol} port ${p.port}`).join(", ")}; the mesh router carries TCP only`,
      "mesh a service whose ports are all TCP, or use --mode manual with a service mesh",
    );
  }
  return ports.map((p) => {
    const targetPort: number | string = p.targetPort ?? p.port;
    let routerPort: number | undefined;
    if (typeof targetPort === "number") routerPort = targetPort;
    else if (/^\d+$/.test(targetPort)) routerPort = Number(targetPort);
    else {
      routerPort = namedPort(originalPods, targetPort);
      if (routerPort === undefined) {
        throw new PortPlanError(
          `cannot tell which port "${targetPort}" (targetPort of service port ${p.port}) is: no pod selected by the service declares it`,
          "start at least one pod of the service, or give the service a numeric targetPort",
        );
      }
    }
    const protocol = api.router.listenerProtocolOf(p);
    return { servicePort: p.port, ...(p.name ? { name: p.name } : {}), targetPort, routerPort, ...(protocol !== "auto" ? { protocol } : {}) };
  });
}

/** Ports the router itself needs besides the service's: its tunnel and its admin endpoint. */
export function routerOwnPorts(api: PortDefaults, plan: MeshPort[]): { tunnel: number; admin: number } {
  const taken = new Set(plan.map((p) => p.routerPort));
  const free = (preferred: number) => {
    let port = preferred;
    while (taken.has(port)) port++;
    taken.add(port);
    return port;
  };
  return { tunnel: free(api.shadowPods.tunnelPort), admin: free(api.router.defaultAdminPort) };
}

/**
 * Matches `--expose` entries to mesh ports. REMOTE names a service port first, else a target
 * port number. The developer's shadow listens on the router port when it may (unprivileged, not
 * its own tunnel port), else on a high port of its own.
 */
export function planExposedPorts(
  api: PortDefaults,
  plan: MeshPort[],
  mappings: { local: number; remote: number }[],
  serviceName: string,
): ExposedPort[] {
  const tunnelPort = api.shadowPods.tunnelPort;
  const used = new Set<number>();
  const exposed = mappings.map((mapping) => {
    const port = plan.find((p) => p.servicePort === mapping.remote) ?? plan.find((p) => p.routerPort === mapping.remote);
    if (!port) {
      throw new PortPlanError(
        `service ${serviceName} has no port ${mapping.remote}`,
        `its ports: ${plan.map(describeMeshPort).join(", ")}`,
      );
    }
    if (used.has(port.routerPort)) throw new PortPlanError(`service port ${port.servicePort} is exposed twice`);
    used.add(port.routerPort);
    return { port, local: mapping.local };
  });
  let spare = 20000;
  const shadowPorts = new Set<number>();
  return exposed.map(({ port, local }) => {
    let shadowPort = port.routerPort;
    if (shadowPort < 1024 || shadowPort === tunnelPort || shadowPorts.has(shadowPort)) {
      while (used.has(spare) || shadowPorts.has(spare) || spare === tunnelPort) spare++;
      shadowPort = spare++;
    }
    shadowPorts.add(shadowPort);
    return { port, local, shadowPort };
  });
}

/** The ports of a meshed service as the running router was configured with them. */
export function planFromRouterConfig(listeners: { port: number; fallback: { port: number }; name?: string; protocol?: ListenerProtocol }[], service: any): MeshPort[] {
  const servicePorts: any[] = service?.spec?.ports ?? [];
  return listeners.map((listener) => {
    const declared = servicePorts.find((p) => p.port === listener.fallback.port);
    return {
      servicePort: listener.fallback.port,
      ...(listener.name ? { name: listener.name } : {}),
      targetPort: declared?.targetPort ?? listener.port,
      routerPort: listener.port,
      ...(listener.protocol && listener.protocol !== "auto" ? { protocol: listener.protocol } : {}),
    };
  });
}
