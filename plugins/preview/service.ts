// The Service `ktctl preview NAME` creates: pure data, so its shape is unit-tested and the same
// wherever it is made. It selects the session's preview shadow only, and carries the session's
// labels so `clean` finds it and deletes it.

export interface PreviewServiceInput {
  name: string;
  namespace: string;
  /** The session's labels (managed-by, session, owner). */
  labels: Record<string, string>;
  /** The shadow's selector (session + role). */
  selector: Record<string, string>;
  ports: number[];
  external: boolean;
}

/** A port name: "tcp-8080" (service port names must be unique DNS labels). */
export const portName = (port: number) => `tcp-${port}`;

export function previewService(input: PreviewServiceInput): any {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: input.name, namespace: input.namespace, labels: { ...input.labels } },
    spec: {
      type: input.external ? "LoadBalancer" : "ClusterIP",
      selector: { ...input.selector },
      ports: input.ports.map((port) => ({ name: portName(port), port, targetPort: port, protocol: "TCP" })),
    },
  };
}

/** The addresses a NodePort service is reachable on: each node's external IP, else its internal IP. */
export function nodeAddresses(nodes: any[]): string[] {
  const addresses: string[] = [];
  for (const node of nodes) {
    const list: { type: string; address: string }[] = node?.status?.addresses ?? [];
    const pick = list.find((a) => a.type === "ExternalIP") ?? list.find((a) => a.type === "InternalIP");
    if (pick && !addresses.includes(pick.address)) addresses.push(pick.address);
  }
  return addresses;
}

/** "host:port", IPv6 hosts bracketed. */
export const formatAddress = (host: string, port: number): string => `${host.includes(":") ? `[${host}]` : host}:${port}`;
