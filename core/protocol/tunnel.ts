// The tunnel's vocabulary, shared word for word by the host (core/tunnel) and the shadow.
// Transport: SSH over one port-forward stream. Data streams are plain SSH channels
// (direct-tcpip out, forwarded-tcpip in), or, when the port-forward carries several streams,
// direct streams for the outbound ones (direct-streams.ts) and reverse streams for the inbound
// ones (reverse-streams.ts); everything else (version handshake, liveness,
// in-cluster name lookups, failure reasons SSH cannot carry) travels as newline-delimited
// JSON on one "session" channel running the CONTROL_SUBSYSTEM.
// Change a message incompatibly => bump TUNNEL_PROTOCOL_VERSION. Adding an optional field or a
// new message type does not need a bump: unknown fields are ignored, unknown types refused.

import { StringDecoder } from "node:string_decoder";

export const TUNNEL_PROTOCOL_VERSION = 1;

/** The port the shadow's SSH endpoint listens on inside the pod (unprivileged, so no root needed). */
export const SHADOW_TUNNEL_PORT = 2222;

/** SSH user name the host presents; the shadow checks only the key. */
export const SSH_USERNAME = "ktctl";

/** Subsystem name of the control channel. */
export const CONTROL_SUBSYSTEM = "ktctl-control";

/** Bind address the host asks for in tcpip-forward: remote listeners serve the whole pod network. */
export const REMOTE_LISTEN_ADDRESS = "0.0.0.0";

/**
 * Originator address the host puts in direct-tcpip. The originator *port* carries a stream
 * reference instead of a real port, so the shadow can say why an open failed (SSH's open
 * failure carries no usable reason; see `stream-failed`).
 */
export const STREAM_ORIGIN_ADDRESS = "127.0.0.1";
export const MAX_STREAM_REF = 0xffff_ffff;

/** Environment the shadow reads. The pod spec is written by the host with these names. */
export const SHADOW_ENV = {
  /** OpenSSH public key line ("ssh-ed25519 AAAA... comment"); the only key the shadow accepts. */
  authorizedKey: "KTCTL_AUTHORIZED_KEY",
  /** Comma-separated roles, e.g. "tunnel,dns". Default: "tunnel". */
  roles: "KTCTL_SHADOW_ROLES",
  /** The session this shadow serves (reported in the handshake and logs). */
  sessionId: "KTCTL_SESSION_ID",
  /** Overrides SHADOW_TUNNEL_PORT (0 = any free port; tests use it). */
  tunnelPort: "KTCTL_TUNNEL_PORT",
  /** Address the SSH endpoint binds (default 0.0.0.0). */
  tunnelHost: "KTCTL_TUNNEL_HOST",
  /** debug | info | warn | error (default info). */
  logLevel: "KTCTL_LOG_LEVEL",
  /** The pod's IP (the downward API's status.podIP), told to the host in the welcome. */
  podIP: "KTCTL_POD_IP",
} as const;

/**
 * A shadow deleted while it is a service's endpoint (a live host listens through it) keeps its
 * address answering this long after it stops listening. Vanishing at once, it would leave
 * kube-proxy sending the service's new connections to an address nobody answers until its rules
 * catch up, and each such SYN stays in the node's connection tracking for 120 s, catching later
 * connections that reuse its source port. Answering with resets instead, it lets the readiness
 * probe fail (3 periods of 1 s) and kube-proxy drop it first. The pod's grace period covers it.
 */
export const ENDPOINT_LINGER_MS = 5_000;

/** Welcome features: "direct" = the shadow serves direct streams (answers the "direct" request). */
export const FEATURE_DIRECT = "direct";
/** "reverse" = remote listeners can deliver on reverse streams (answers "reverse"; reverse-streams.ts). */
export const FEATURE_REVERSE = "reverse";
/**
 * "reuse" = direct and reverse streams may carry one connection after another ("KTD2" and "KTR2"
 * preambles, DONE frames: direct-streams.ts). A host uses them only with a shadow that says so.
 */
export const FEATURE_REUSE = "reuse";
/**
 * "early-reuse" = the shadow takes a reused stream back as soon as both EOFs of its connection are
 * behind it, without waiting for the host's DONE: a direct stream then waits for its next
 * preamble, a reverse stream for its next connection (reverse-streams.ts), and the host may send
 * that DONE with the stream's next use instead of as a message of its own.
 */
export const FEATURE_EARLY_REUSE = "early-reuse";
/**
 * "late-eof" = with "early-reuse", either side may keep the EOF it owes for a connection whose
 * other side has already ended (the server has answered and closed; the client closes after it)
 * and send it in front of the stream's next use, or alone after LATE_EOF_HOLD_MS
 * (direct-streams.ts): the shadow on reverse streams whose host said "KTR3"
 * (reverse-streams.ts), the host on direct streams. Such a connection then costs the
 * port-forward's hops one message fewer.
 */
export const FEATURE_LATE_EOF = "late-eof";

/** Roles a shadow can play. The tunnel role is always on: every other role is reached through it. */
export const SHADOW_ROLES = ["tunnel", "dns", "router"] as const;
export type ShadowRoleName = (typeof SHADOW_ROLES)[number];

/** Why a stream could not be opened from inside the cluster (maps onto SOCKS5 replies, HTTP 502s...). */
export const STREAM_FAILURES = ["refused", "not-found", "timeout", "unreachable", "failed"] as const;
export type StreamFailure = (typeof STREAM_FAILURES)[number];

/** Maps a socket error code seen in the shadow to the failure the host reports. */
export function streamFailureOf(errorCode: string | undefined): StreamFailure {
  switch (errorCode) {
    case "ECONNREFUSED":
      return "refused";
    case "ENOTFOUND":
    case "EAI_NONAME":
    case "EAI_NODATA":
    case "EAI_AGAIN":
      return "not-found";
    case "ETIMEDOUT":
      return "timeout";
    case "EHOSTUNREACH":
    case "ENETUNREACH":
    case "EADDRNOTAVAIL":
      return "unreachable";
    default:
      return "failed";
  }
}

// ---- control messages -------------------------------------------------------------------------

/** host -> shadow, first message on the control channel. */
export interface HelloRequest {
  type: "hello";
  id: number;
  protocol: number;
  /** ktctl version of the host, for the shadow's log. */
  client: string;
}
/** host -> shadow: liveness probe; any traffic counts as life, this just provokes some. */
export interface PingRequest {
  type: "ping";
  id: number;
}
/** host -> shadow: resolve a name with the pod's resolver (cluster DNS, namespace search path). */
export interface ResolveRequest {
  type: "resolve";
  id: number;
  name: string;
}
/**
 * host -> shadow: where and how to open direct streams (see direct-streams.ts). Sent only to a
 * shadow whose welcome lists the "direct" feature; otherwise the host keeps to SSH channels.
 */
export interface DirectRequest {
  type: "direct";
  id: number;
}
/**
 * host -> shadow: where and how to open reverse streams for this SSH connection's remote listeners
 * (see reverse-streams.ts). Sent only to a shadow whose welcome lists the "reverse" feature.
 */
export interface ReverseRequest {
  type: "reverse";
  id: number;
}
export type ControlRequest = HelloRequest | PingRequest | ResolveRequest | DirectRequest | ReverseRequest;

/** shadow -> host, answer to hello. */
export interface WelcomeReply {
  type: "welcome";
  id: number;
  protocol: number;
  /** ktctl version the shadow was built from. */
  shadow: string;
  roles: string[];
  session: string;
  hostname: string;
  /** Optional requests this shadow answers beyond the base set; absent from older shadows. */
  features?: string[];
  /**
   * The pod's IP as its environment gives it. The host connects as soon as the shadow listens,
   * before the kubelet has reported the pod's status (and its IP) to the API server.
   */
  podIP?: string;
}
export interface PongReply {
  type: "pong";
  id: number;
}
export interface ResolvedReply {
  type: "resolved";
  id: number;
  addresses: string[];
}
/** shadow -> host: the shadow's direct port (on its loopback) and the token direct streams present. */
export interface DirectReadyReply {
  type: "direct-ready";
  id: number;
  port: number;
  /** Hex of DIRECT_TOKEN_BYTES random bytes. */
  token: string;
}
/** shadow -> host: the shadow's reverse port (on its loopback) and the token this connection's reverse streams present. */
export interface ReverseReadyReply {
  type: "reverse-ready";
  id: number;
  port: number;
  /** Hex of DIRECT_TOKEN_BYTES random bytes. */
  token: string;
}
/** shadow -> host: the request with this id failed. */
export interface ErrorReply {
  type: "error";
  id: number;
  code: string;
  message: string;
}
export type ControlReply = WelcomeReply | PongReply | ResolvedReply | DirectReadyReply | ReverseReadyReply | ErrorReply;

/**
 * shadow -> host, unsolicited: sent just before the shadow rejects the direct-tcpip open whose
 * originator port was `ref`. Both travel on the same SSH connection, so it always arrives first.
 */
export interface StreamFailedEvent {
  type: "stream-failed";
  ref: number;
  reason: StreamFailure;
  message: string;
}
export type ControlEvent = StreamFailedEvent;

export type ControlMessage = ControlRequest | ControlReply | ControlEvent;
export type ControlMessageType = ControlMessage["type"];

/** Which reply answers which request (an ErrorReply may answer any). */
export const REPLY_TYPE = { hello: "welcome", ping: "pong", resolve: "resolved", direct: "direct-ready", reverse: "reverse-ready" } as const satisfies Record<
  ControlRequest["type"],
  ControlReply["type"]
>;
export function isControlRequest(message: ControlMessage): message is ControlRequest {
  return Object.hasOwn(REPLY_TYPE, message.type);
}
/** The reply that answers a request of type T. */
export type ReplyFor<T extends ControlRequest["type"]> = Extract<ControlReply, { type: (typeof REPLY_TYPE)[T] }>;

export const MAX_CONTROL_LINE_BYTES = 64 * 1024;

export class ControlProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ControlProtocolError";
  }
}

type Check = (value: unknown) => boolean;
const isUint: Check = (v) => typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= MAX_STREAM_REF;
const isString: Check = (v) => typeof v === "string";
const isName: Check = (v) => typeof v === "string" && v.length > 0 && v.length <= 253 && !/[\s\0]/.test(v);
const isStrings: Check = (v) => Array.isArray(v) && v.every((s) => typeof s === "string");
const isPort: Check = (v) => typeof v === "number" && Number.isInteger(v) && v > 0 && v <= 65535;
const isToken: Check = (v) => typeof v === "string" && /^[0-9a-f]{64}$/.test(v);
const isStreamFailure: Check = (v) => (STREAM_FAILURES as readonly unknown[]).includes(v);

type Schema<M> = { [K in Exclude<keyof M, "type">]-?: Check };
const SCHEMAS: { [T in ControlMessageType]: Schema<Extract<ControlMessage, { type: T }>> } = {
  hello: { id: isUint, protocol: isUint, client: isString },
  ping: { id: isUint },
  resolve: { id: isUint, name: isName },
  direct: { id: isUint },
  reverse: { id: isUint },
  welcome: { id: isUint, protocol: isUint, shadow: isString, roles: isStrings, session: isString, hostname: isString, features: (v) => v === undefined || isStrings(v), podIP: (v) => v === undefined || isName(v) },
  pong: { id: isUint },
  resolved: { id: isUint, addresses: isStrings },
  "direct-ready": { id: isUint, port: isPort, token: isToken },
  "reverse-ready": { id: isUint, port: isPort, token: isToken },
  error: { id: isUint, code: isString, message: isString },
  "stream-failed": { ref: isUint, reason: isStreamFailure, message: isString },
};

/** Checks an already-parsed value; returns it typed or throws ControlProtocolError. */
export function validateControlMessage(value: unknown): ControlMessage {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ControlProtocolError("control message is not a JSON object");
  }
  const type = (value as { type?: unknown }).type;
  if (typeof type !== "string" || !Object.hasOwn(SCHEMAS, type)) {
    throw new ControlProtocolError(`unknown control message type ${JSON.stringify(type)}`);
  }
  const schema = SCHEMAS[type as ControlMessageType] as Record<string, Check>;
  for (const [field, check] of Object.entries(schema)) {
    if (!check((value as Record<string, unknown>)[field])) {
      throw new ControlProtocolError(`control message "${type}" has a missing or invalid "${field}"`);
    }
  }
  return value as ControlMessage;
}

/** One message as one line (validated, so a bug on our side never reaches the wire). */
export function encodeControlMessage(message: ControlMessage): string {
  validateControlMessage(message);
  const line = JSON.stringify(message) + "\n";
  if (Buffer.byteLength(line) > MAX_CONTROL_LINE_BYTES) {
    throw new ControlProtocolError(`control message "${message.type}" exceeds ${MAX_CONTROL_LINE_BYTES} bytes`);
  }
  return line;
}

export function decodeControlMessage(line: string): ControlMessage {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new ControlProtocolError("control message is not valid JSON");
  }
  return validateControlMessage(value);
}

/** Splits a byte stream into lines; refuses a line longer than MAX_CONTROL_LINE_BYTES. */
export class ControlLineDecoder {
  private readonly text = new StringDecoder("utf8");
  private pending = "";

  push(chunk: Buffer | string): string[] {
    this.pending += typeof chunk === "string" ? chunk : this.text.write(chunk);
    const parts = this.pending.split("\n");
    this.pending = parts.pop()!;
    for (const line of [...parts, this.pending]) {
      if (line.length > MAX_CONTROL_LINE_BYTES / 4 && Buffer.byteLength(line) > MAX_CONTROL_LINE_BYTES) {
        throw new ControlProtocolError(`control line exceeds ${MAX_CONTROL_LINE_BYTES} bytes`);
      }
    }
    return parts.filter((line) => line.length > 0);
  }
}
