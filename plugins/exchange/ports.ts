// Which ports the shadow must declare and listen on, from the services it takes over and the
// `--expose LOCAL[:REMOTE]` list. Pure: the command hands in the objects it read.
//
// The services are never re-targeted: their ports keep pointing at the same targetPort, by number or
// by NAME. So the shadow declares a container port of the same number and, for named targetPorts,
// the same name; restoring a service then only has to give back its selector.

export interface ServicePortSpec {
  name?: string;
  port: number;
  protocol?: string;
  /** A number, a container port name, or absent (then the same as `port`). */
  targetPort?: number | string;
}

export interface ServiceSpec {
  name: string;
  ports: ServicePortSpec[];
}

export interface PortMapping {
  local: number;
  remote: number;
}

/** A container port as the target's pods declare it (to resolve named targetPorts). */
export interface ContainerPortSpec {
  name?: string;
  containerPort: number;
  protocol?: string;
}

/** One port the shadow listens on and where its connections go on the laptop. */
export interface ShadowListener {
  /** The container port in the shadow (what the services' targetPorts resolve to). */
  shadowPort: number;
  /** Set when some service targets this port by name. */
  name?: string;
  localPort: number;
  /** "echo:80" for every service port that now lands here. */
  serves: string[];
}

export interface ShadowPortPlan {
  listeners: ShadowListener[];
  /** Service ports of the taken-over services that nothing listens on during the session. */
  unexposed: string[];
}

export class PortPlanError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

const isTcp = (p: { protocol?: string }) => (p.protocol ?? "TCP").toUpperCase() === "TCP";

/** "80 (http -> http)", "8081", "53/UDP" as a port list in messages. */
export function describeServicePort(p: ServicePortSpec): string {
  const proto = isTcp(p) ? "" : `/${p.protocol}`;
  const target = p.targetPort !== undefined && p.targetPort !== p.port ? ` -> ${p.targetPort}` : "";
  const name = p.name ? `${p.name}${target}` : target.replace(/^ -> /, "-> ");
  return `${p.port}${proto}${name ? ` (${name})` : ""}`;
}

/** The container port a service port reaches on a pod that declares `containerPorts`. */
export function resolveTargetPort(
  port: ServicePortSpec,
  containerPorts: ContainerPortSpec[],
): { number: number; name?: string } | { unresolved: string } {
  const target = port.targetPort ?? port.port;
  if (typeof target === "number") return { number: target };
  if (/^\d+$/.test(target)) return { number: Number(target) };
  const found = containerPorts.find((c) => c.name === target && (c.protocol ?? "TCP").toUpperCase() === (port.protocol ?? "TCP").toUpperCase());
  if (found) return { number: found.containerPort, name: target };
  return { unresolved: target };
}

/**
 * Plans the shadow's listeners. Every REMOTE must be a TCP port one of the services serves; each
 * service port with that number lands on its (resolved) target port in the shadow, and that port
 * forwards to LOCAL. A named targetPort that the pods do not declare (no pod, no template) falls
 * back to the service port's number, still under the same name, so the service finds it.
 */
export function planShadowPorts(services: ServiceSpec[], mappings: PortMapping[], containerPorts: ContainerPortSpec[]): ShadowPortPlan {
  const serviceNames = services.map((s) => s.name).join(", ");
  const byShadowPort = new Map<number, ShadowListener>();
  const nameOwner = new Map<string, number>();

  for (const mapping of mappings) {
    const matches = services.flatMap((s) => s.ports.filter((p) => p.port === mapping.remote).map((p) => ({ service: s, port: p })));
    if (!matches.length) {
      const listed = services.map((s) => `${s.name}: ${s.ports.map(describeServicePort).join(", ") || "none"}`).join("; ");
      throw new PortPlanError(
        `${services.length > 1 ? `services ${serviceNames} have` : `service ${serviceNames} has`} no port ${mapping.remote}`,
        `ports served: ${listed}`,
      );
    }
    const tcp = matches.filter((m) => isTcp(m.port));
    if (!tcp.length) {
      throw new PortPlanError(`port ${mapping.remote} of ${serviceNames} is ${matches[0]!.port.protocol}: exchange carries TCP only`);
    }
    for (const { service, port } of tcp) {
      const resolved = resolveTargetPort(port, containerPorts);
      const target = "unresolved" in resolved ? { number: port.port, name: resolved.unresolved } : resolved;
      if (target.name) {
        const earlier = nameOwner.get(target.name);
        if (earlier !== undefined && earlier !== target.number) {
          throw new PortPlanError(`target port name "${target.name}" stands for both ${earlier} and ${target.number}`);
        }
        nameOwner.set(target.name, target.number);
      }
      const serves = `${service.name}:${port.port}`;
      const existing = byShadowPort.get(target.number);
      if (existing) {
        if (existing.localPort !== mapping.local) {
          throw new PortPlanError(
            `service ports ${existing.serves.join(", ")} and ${serves} reach the same pod port ${target.number}; they cannot go to different local ports (${existing.localPort} and ${mapping.local})`,
            `expose both to one local port`,
          );
        }
        if (target.name && existing.name && existing.name !== target.name) {
          throw new PortPlanError(`pod port ${target.number} is targeted under two names, "${existing.name}" and "${target.name}"`);
        }
        existing.name ??= target.name;
        if (!existing.serves.includes(serves)) existing.serves.push(serves);
      } else {
        byShadowPort.set(target.number, { shadowPort: target.number, name: target.name, localPort: mapping.local, serves: [serves] });
      }
    }
  }

  const listening = new Set(byShadowPort.keys());
  const unexposed: string[] = [];
  for (const service of services) {
    for (const port of service.ports) {
      if (!isTcp(port)) {
        unexposed.push(`${service.name}:${port.port}/${port.protocol}`);
        continue;
      }
      const resolved = resolveTargetPort(port, containerPorts);
      const number = "unresolved" in resolved ? nameOwner.get(resolved.unresolved) : resolved.number;
      if (number === undefined || !listening.has(number)) unexposed.push(`${service.name}:${port.port}`);
    }
  }
  return { listeners: [...byShadowPort.values()].sort((a, b) => a.shadowPort - b.shadowPort), unexposed };
}

/** Container ports for the shadow pod spec, from the plan. */
export const shadowContainerPorts = (plan: ShadowPortPlan): { name?: string; port: number }[] =>
  plan.listeners.map((l) => (l.name ? { name: l.name, port: l.shadowPort } : { port: l.shadowPort }));
