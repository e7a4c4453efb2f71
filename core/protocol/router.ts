// What the mesh plugin (on the laptop) and the router role (in the cluster) agree on: the router's
// start-up configuration, the shape of a route, and the admin endpoint that changes routes at run
// time. Pure data and checks, no I/O, so both sides import it and the unit tests pin it down.
//
// Why routes are pushed and not mounted: see docs/mesh.md ("How routes reach the router"). In short,
// a mounted ConfigMap reaches a running pod on the kubelet's periodic sync (22-69 s measured on
// the test cluster), a downward-API annotation needs `patch pods` and one shared string every
// developer rewrites, a push through a port-forward takes about 26 ms, and the router holds no
// Kubernetes token to watch anything itself.

/** Environment variable holding the router's start-up configuration (JSON, see RouterConfig). */
export const ROUTER_CONFIG_ENV = "KTCTL_ROUTER_CONFIG";

/**
 * The admin endpoint listens on the pod's loopback only. A kubelet port-forward connects to the
 * pod's loopback, so exactly the people allowed to port-forward into the router pod (RBAC
 * pods/portforward) can change routes, and no other pod can.
 */
export const DEFAULT_ADMIN_PORT = 2224;
export const ADMIN_HOST = "127.0.0.1";

/** Header the mark travels in when the user names none (HTTP/1 is case-insensitive; h2 and gRPC metadata are lowercase). */
export const DEFAULT_MARK_HEADER = "VERSION";

export interface Upstream {
  host: string;
  port: number;
}

/**
 * What a listener expects: "http" sniffs for HTTP/1 or HTTP/2 and waits as long as the client
 * stays silent (clients may open a connection well before their first request); "tcp" splices
 * every connection to the original pods at once; "auto" sniffs, and takes a connection that
 * stays silent for `sniffTimeoutMs` for a protocol where the server speaks first.
 */
export type ListenerProtocol = "auto" | "http" | "tcp";
export const LISTENER_PROTOCOLS: readonly ListenerProtocol[] = ["auto", "http", "tcp"];

/** One port the router serves: the service's target port, with the original pods behind `fallback`. */
export interface ListenerConfig {
  port: number;
  /** The companion service that still selects the original pods, at the matching service port. */
  fallback: Upstream;
  /** Service port name, for logs. */
  name?: string;
  /** Default "auto". */
  protocol?: ListenerProtocol;
}

/**
 * A listener's protocol from the service port's appProtocol or name, as Kubernetes and service
 * meshes spell them ("http", "grpc-web", "kubernetes.io/h2c", "tcp-db", "mysql").
 */
export function listenerProtocolOf(port: { name?: string; appProtocol?: string }): ListenerProtocol {
  const hint = (port.appProtocol ?? port.name ?? "").toLowerCase().replace(/^kubernetes\.io\//, "");
  const word = hint.split(/[-_.]/)[0] ?? "";
  if (["http", "http2", "https", "h2c", "grpc", "ws", "wss", "websocket"].includes(word)) return word === "https" || word === "wss" ? "tcp" : "http";
  if (["tcp", "tls", "mysql", "mongo", "mongodb", "redis", "postgres", "postgresql", "kafka", "amqp", "smtp", "ftp", "ssh"].includes(word)) return "tcp";
  return "auto";
}

export interface RouterConfig {
  listeners: ListenerConfig[];
  adminPort: number;
  /** "namespace/name" of the meshed service, for logs. */
  service?: string;
  /**
   * How long a new connection may stay silent before it is taken for a server-speaks-first
   * protocol and spliced to the fallback as raw TCP.
   */
  sniffTimeoutMs: number;
  /** How often the router logs its memory and counters (0: never). */
  statsIntervalMs: number;
}

/** A developer's route: requests carrying `header: value` (and under `pathPrefix`) go to their shadow. */
export interface Route {
  /** The session that owns the route (one route per session). */
  id: string;
  owner?: string;
  /** Header name, lowercase (gRPC metadata keys and HTTP/2 header names are lowercase on the wire). */
  header: string;
  value: string;
  /** Optional path prefix, matched on whole segments: "/api" matches /api and /api/x, not /apix. */
  pathPrefix?: string;
  /** Listener port (as a decimal string) -> the developer's shadow listener for it. */
  upstreams: Record<string, Upstream>;
}

export class ContractError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ContractError";
  }
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
const HEADER_VALUE = /^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$/;
const HOST = /^[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$/;
const MAX_VALUE = 256;
/** Hop-by-hop and framing headers can never carry a mark: the router and the peers rewrite or consume them. */
const RESERVED_HEADERS = new Set([
  "connection",
  "content-length",
  "transfer-encoding",
  "upgrade",
  "te",
  "trailer",
  "keep-alive",
  "proxy-connection",
  "host",
  "http2-settings",
]);

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isPort = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 1 && v <= 65535;

export function checkMarkHeader(name: string): string {
  const lower = name.toLowerCase();
  if (!TOKEN.test(lower) || lower.length > 64) throw new ContractError(`"${name}" is not a valid header name`);
  if (lower.startsWith(":") || RESERVED_HEADERS.has(lower)) throw new ContractError(`header "${name}" cannot carry a mark`);
  return lower;
}

export function checkMarkValue(value: string): string {
  if (value.length === 0 || value.length > MAX_VALUE || !HEADER_VALUE.test(value)) {
    throw new ContractError(`"${value}" is not a usable header value (visible ASCII, at most ${MAX_VALUE} characters)`);
  }
  return value;
}

export function checkPathPrefix(prefix: string): string {
  if (!prefix.startsWith("/") || /[\s?#]/.test(prefix)) {
    throw new ContractError(`path prefix "${prefix}" must start with "/" and hold no spaces, "?" or "#"`);
  }
  // "/api/" and "/api" mean the same segment match.
  return prefix.length > 1 ? prefix.replace(/\/+$/, "") : prefix;
}

function checkUpstream(value: unknown, what: string): Upstream {
  if (!isObject(value) || typeof value.host !== "string" || !HOST.test(value.host) || !isPort(value.port)) {
    throw new ContractError(`${what} must be {host, port}`);
  }
  return { host: value.host, port: value.port };
}

export function validateRoute(value: unknown): Route {
  if (!isObject(value)) throw new ContractError("a route is a JSON object");
  if (typeof value.id !== "string" || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(value.id)) throw new ContractError("route id is missing or invalid");
  if (typeof value.header !== "string") throw new ContractError("route header is missing");
  if (typeof value.value !== "string") throw new ContractError("route value is missing");
  if (value.owner !== undefined && typeof value.owner !== "string") throw new ContractError("route owner must be a string");
  if (value.pathPrefix !== undefined && typeof value.pathPrefix !== "string") throw new ContractError("route pathPrefix must be a string");
  if (!isObject(value.upstreams) || Object.keys(value.upstreams).length === 0) throw new ContractError("route needs at least one upstream");
  const upstreams: Record<string, Upstream> = {};
  for (const [port, upstream] of Object.entries(value.upstreams)) {
    if (!/^\d+$/.test(port) || !isPort(Number(port))) throw new ContractError(`route upstream key "${port}" is not a port`);
    upstreams[String(Number(port))] = checkUpstream(upstream, `route upstream for port ${port}`);
  }
  return {
    id: value.id,
    ...(value.owner !== undefined ? { owner: value.owner as string } : {}),
    header: checkMarkHeader(value.header),
    value: checkMarkValue(value.value),
    ...(value.pathPrefix !== undefined && value.pathPrefix !== "/" ? { pathPrefix: checkPathPrefix(value.pathPrefix as string) } : {}),
    upstreams,
  };
}

export function validateRouterConfig(value: unknown): RouterConfig {
  if (!isObject(value)) throw new ContractError("router configuration is not a JSON object");
  if (!Array.isArray(value.listeners) || value.listeners.length === 0) throw new ContractError("router configuration needs listeners");
  const seen = new Set<number>();
  const listeners = value.listeners.map((entry, i): ListenerConfig => {
    if (!isObject(entry) || !isPort(entry.port)) throw new ContractError(`listener ${i} needs a port`);
    if (seen.has(entry.port)) throw new ContractError(`listener port ${entry.port} given twice`);
    seen.add(entry.port);
    if (entry.protocol !== undefined && !LISTENER_PROTOCOLS.includes(entry.protocol as ListenerProtocol)) {
      throw new ContractError(`listener ${entry.port}: protocol must be one of ${LISTENER_PROTOCOLS.join(", ")}`);
    }
    return {
      port: entry.port,
      fallback: checkUpstream(entry.fallback, `listener ${entry.port} fallback`),
      ...(typeof entry.name === "string" ? { name: entry.name } : {}),
      ...(entry.protocol !== undefined ? { protocol: entry.protocol as ListenerProtocol } : {}),
    };
  });
  const adminPort = value.adminPort ?? DEFAULT_ADMIN_PORT;
  if (!isPort(adminPort) || seen.has(adminPort)) throw new ContractError(`admin port ${adminPort} is invalid or taken by a listener`);
  const number = (key: string, fallback: number, max: number) => {
    const v = value[key] ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || v > max) throw new ContractError(`${key} must be a number 0-${max}`);
    return v;
  };
  return {
    listeners,
    adminPort,
    ...(typeof value.service === "string" ? { service: value.service } : {}),
    sniffTimeoutMs: number("sniffTimeoutMs", 500, 60_000),
    statsIntervalMs: number("statsIntervalMs", 60_000, 3_600_000),
  };
}

/** Two routes that would claim the same requests. */
export function sameMatch(a: Route, b: Route): boolean {
  return a.header === b.header && a.value === b.value && (a.pathPrefix ?? "") === (b.pathPrefix ?? "");
}

/** The router's answers on the admin endpoint. */
export interface RoutesReply {
  routes: Route[];
  listeners: ListenerConfig[];
}
export interface StatsReply {
  rssBytes: number;
  heapUsedBytes: number;
  uptimeSeconds: number;
  counters: Record<string, number>;
}
