// Byte streams to pod ports through the API server's portforward subresource, as Duplexes.
//
// Two wire protocols, negotiated in one WebSocket handshake:
// - SPDY/3.1 tunnelled through the WebSocket ("SPDY/3.1+portforward.k8s.io", Kubernetes 1.30+),
//   see portforward-spdy.ts: many streams per connection, and far cheaper for the node.
// - v4.channel.k8s.io: each binary message starts with a channel byte (0 data, 1 error for the
//   first port); the first two bytes the server sends on each channel are the port number (little
//   endian). One stream per WebSocket, no half-close.
// Both ride our own WebSocket client (websocket.ts), which honours back-pressure both ways.

import { Duplex } from "node:stream";
import { ExitCode, KtctlError } from "../errors.ts";
import { apiErrorFrom, assertSafePath, connectionErrorFrom } from "./errors.ts";
import type { Transport } from "./transport.ts";
import { SPDY_PORT_FORWARD_PROTOCOL, SpdyPortForwardConnection, summarizeForwardError } from "./portforward-spdy.ts";
import { ClientWebSocket, UpgradeRefusedError } from "./websocket.ts";
import { packFrames, type FrameFormat } from "../protocol/frame-packing.ts";

export { SPDY_PORT_FORWARD_PROTOCOL, SpdyPortForwardConnection, forwardErrorText, summarizeForwardError } from "./portforward-spdy.ts";

export const PORT_FORWARD_PROTOCOL = "v4.channel.k8s.io";
const DATA_CHANNEL = 0;
const ERROR_CHANNEL = 1;
/** The kubelet reads each message whole (and caps it at 32 MiB); moderate frames keep latency and memory flat. */
export const MAX_FRAME_PAYLOAD = 256 * 1024;
const READ_HIGH_WATER_MARK = 1024 * 1024;
const HANDSHAKE_TIMEOUT_MS = 30_000;

/** The data channel's messages: the channel number, then the payload. */
const DATA_CHANNEL_FORMAT = (max: number): FrameFormat => ({
  maxPayload: max,
  headerBytes: 1,
  writeHeader(frame, at) {
    frame[at] = DATA_CHANNEL;
  },
});

/** Packs data for the data channel into frames of at most `max` payload bytes (one copy per byte, no more). */
export function encodeDataFrames(chunks: readonly Uint8Array[], max = MAX_FRAME_PAYLOAD): Buffer[] {
  return packFrames(DATA_CHANNEL_FORMAT(max), chunks);
}

/** Splits incoming messages into channel and payload, dropping the port-number prefix of each channel. */
export class ChannelDecoder {
  private readonly prefixLeft = new Map<number, number>();
  private current = DATA_CHANNEL;

  /** A whole message (or the first piece of one): its first byte names the channel. */
  decode(message: Buffer): { channel: number; payload: Buffer } | undefined {
    if (message.length === 0) return undefined;
    this.current = message[0]!;
    return { channel: this.current, payload: this.strip(this.current, message.subarray(1)) };
  }

  /** A later piece of the message `decode` last saw: same channel, no channel byte. */
  continued(piece: Buffer): { channel: number; payload: Buffer } {
    return { channel: this.current, payload: this.strip(this.current, piece) };
  }

  private strip(channel: number, payload: Buffer): Buffer {
    const left = this.prefixLeft.get(channel) ?? 2;
    if (left === 0) return payload;
    const skip = Math.min(left, payload.length);
    this.prefixLeft.set(channel, left - skip);
    return payload.subarray(skip);
  }
}

class V4PortForwardStream extends Duplex {
  private readonly decoder = new ChannelDecoder();
  private errorText = "";
  private paused = false;

  constructor(
    private readonly ws: ClientWebSocket,
    private readonly label: string,
  ) {
    super({ allowHalfOpen: false, readableHighWaterMark: READ_HIGH_WATER_MARK });
    ws.attach({
      data: (piece, first) => this.onPiece(piece, first),
      closed: (error) => this.onClose(error),
    });
  }

  private onPiece(piece: Buffer, first: boolean): void {
    const decoded = first ? this.decoder.decode(piece) : this.decoder.continued(piece);
    if (!decoded || decoded.payload.length === 0) return;
    if (decoded.channel === DATA_CHANNEL) {
      if (!this.push(decoded.payload) && !this.paused) {
        this.paused = true;
        this.ws.pause();
      }
    } else if (decoded.channel === ERROR_CHANNEL) {
      this.errorText += decoded.payload.toString("utf8");
    }
  }

  private onClose(error: Error | undefined): void {
    if (this.errorText) {
      this.destroy(new KtctlError(`port-forward to ${this.label} failed: ${summarizeForwardError(this.errorText)}`, ExitCode.unreachable));
    } else if (error && !this.readableEnded) {
      this.destroy(new KtctlError(`port-forward to ${this.label} broke: ${error.message}`, ExitCode.unreachable));
    } else {
      this.push(null);
    }
  }

  override _read(): void {
    if (this.paused) {
      this.paused = false;
      this.ws.resume();
    }
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.send([chunk], callback);
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    this.send(
      chunks.map((c) => c.chunk),
      callback,
    );
  }

  private send(chunks: Buffer[], callback: (error?: Error | null) => void): void {
    if (!this.ws.open) {
      callback(new KtctlError(`port-forward to ${this.label} is closed`, ExitCode.unreachable));
      return;
    }
    const frames = encodeDataFrames(chunks);
    if (frames.length === 0) {
      callback(); // an empty write: an empty message would only cost the server a read
      return;
    }
    // The send callback fires once the socket has taken the data: that is our back-pressure.
    for (let i = 0; i < frames.length - 1; i++) this.ws.sendOwned(frames[i]!);
    this.ws.sendOwned(frames[frames.length - 1]!, (err?: Error | null) => callback(err ?? null));
  }

  override _final(callback: (error?: Error | null) => void): void {
    // v4 has no half-close: our side is done, so the whole connection is.
    this.ws.close(1000);
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.ws.destroy();
    callback(error);
  }
}

export type PortForwardProtocolChoice = "auto" | "spdy" | "v4";

/**
 * Which subprotocols to offer. "auto" offers SPDY first and v4 second in one handshake: an API
 * server that tunnels SPDY (Kubernetes 1.30+ with PortForwardWebsockets, on by default from 1.31)
 * picks SPDY; an older one passes the upgrade on to the kubelet, which takes the first protocol it
 * knows, v4. So the fallback costs no extra round trip. KTCTL_PORT_FORWARD=v4|spdy pins one (for
 * comparisons, and for a server that mishandles the offer).
 */
export function offeredProtocols(choice: PortForwardProtocolChoice = protocolChoiceFromEnv()): string[] {
  if (choice === "v4") return [PORT_FORWARD_PROTOCOL];
  if (choice === "spdy") return [SPDY_PORT_FORWARD_PROTOCOL];
  return [SPDY_PORT_FORWARD_PROTOCOL, PORT_FORWARD_PROTOCOL];
}

/** SPDY may be offered here (not ruled out by KTCTL_PORT_FORWARD=v4). */
export const spdyOffered = (): boolean => offeredProtocols().includes(SPDY_PORT_FORWARD_PROTOCOL);

function protocolChoiceFromEnv(env: Record<string, string | undefined> = process.env): PortForwardProtocolChoice {
  const value = env.KTCTL_PORT_FORWARD?.toLowerCase();
  return value === "v4" || value === "spdy" ? value : "auto";
}

/** Opens the WebSocket and resolves once the API server has upgraded it; refusals become KtctlErrors. */
export async function openPortForwardSocket(
  transport: Transport,
  namespace: string,
  pod: string,
  port: number,
  protocols: string[] = offeredProtocols(),
): Promise<ClientWebSocket> {
  const { headers, tls } = await transport.credentials();
  const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(pod)}/portforward?ports=${port}`;
  assertSafePath("POST", path);
  try {
    return await ClientWebSocket.connect({
      url: transport.server.replace(/^http/, "ws") + path,
      headers,
      protocols,
      tls,
      timeoutMs: HANDSHAKE_TIMEOUT_MS,
    });
  } catch (error) {
    // A kubelet refuses an upgrade offering none of its protocols in its websocket handshake,
    // which answers 403 with no body (the API server's own refusals, RBAC included, carry a JSON
    // Status), or 400 "requested protocol(s) are not supported"; a server may also pick one that
    // was not offered.
    const refusedProtocols =
      error instanceof UpgradeRefusedError &&
      ((error.status === 403 && error.body.trim() === "") || (error.status === 400 && /requested protocol\(s\) are not supported/.test(error.body)));
    if (refusedProtocols || /chose subprotocol/.test((error as Error).message)) {
      throw new SubprotocolError(`port-forward to ${namespace}/${pod}:${port}: API server ${transport.server} speaks none of ${protocols.join(", ")}`);
    }
    if (error instanceof UpgradeRefusedError) throw apiErrorFrom(error.status, error.body, "GET", path, transport.server);
    throw connectionErrorFrom(error, transport.server);
  }
}

/** The API server (or the kubelet behind it) speaks none of the port-forward protocols offered. */
export class SubprotocolError extends KtctlError {
  constructor(message: string) {
    super(message, ExitCode.unreachable);
  }
}

/** A port-forward connection to one pod that can carry several streams (SPDY only). */
export interface PortForwardSession {
  /** Another stream to `port` of the same pod, on the same connection; `first` bytes go with its opening. */
  open(port: number, first?: Buffer): Duplex;
  /** False once the connection is closing or gone. */
  readonly accepting: boolean;
  readonly closed: Promise<void>;
  close(): void;
  /** Tears the connection down at once; its streams fail with `error`. */
  destroy(error?: Error): void;
  /** Milliseconds since the server last sent anything. */
  readonly silentMs: number;
  /** Asks the server for an answer (which resets silentMs). */
  ping(): void;
}

/**
 * The first stream to `port` and, when the server speaks SPDY, the session it rides (which can
 * open more streams to the same pod without a new connection). With v4 there is no session.
 */
export async function openPortForwardSession(
  transport: Transport,
  namespace: string,
  pod: string,
  port: number,
): Promise<{ stream: Duplex; session?: PortForwardSession }> {
  const ws = await openPortForwardSocket(transport, namespace, pod, port);
  if (ws.protocol === PORT_FORWARD_PROTOCOL) return { stream: new V4PortForwardStream(ws, `${namespace}/${pod}:${port}`) };
  const session = new SpdyPortForwardConnection(ws, `${namespace}/${pod}`);
  return { stream: session.open(port), session };
}

/**
 * A SPDY port-forward connection to the pod with no stream on it yet: nothing in the pod is
 * reached until a stream opens (on v4 the upgrade itself connects to the port, so v4 is not
 * offered here). "no-spdy" where SPDY is ruled out (KTCTL_PORT_FORWARD=v4) or the server does not
 * speak it (an API server before SPDY tunnelling: the pod's streams are then v4 only).
 */
export async function openIdlePortForwardSession(
  transport: Transport,
  namespace: string,
  pod: string,
  port: number,
): Promise<PortForwardSession | "no-spdy"> {
  if (!spdyOffered()) return "no-spdy";
  try {
    const ws = await openPortForwardSocket(transport, namespace, pod, port, [SPDY_PORT_FORWARD_PROTOCOL]);
    return new SpdyPortForwardConnection(ws, `${namespace}/${pod}`);
  } catch (error) {
    if (error instanceof SubprotocolError) return "no-spdy";
    throw error;
  }
}

const SESSION = Symbol("ktctl.portForwardSession");

/**
 * The session a stream from openPortForward rides, when it can carry more streams to the same pod
 * (SPDY). They live and die with the stream: the session closes when the stream does.
 */
export function sessionOf(stream: Duplex): PortForwardSession | undefined {
  return (stream as Duplex & { [SESSION]?: PortForwardSession })[SESSION];
}

/** One byte stream to a pod port, over its own WebSocket (closed with the stream). */
export async function openPortForward(transport: Transport, namespace: string, pod: string, port: number): Promise<Duplex> {
  const { stream, session } = await openPortForwardSession(transport, namespace, pod, port);
  if (session) {
    stream.once("close", () => session.close());
    (stream as Duplex & { [SESSION]?: PortForwardSession })[SESSION] = session;
  }
  return stream;
}
