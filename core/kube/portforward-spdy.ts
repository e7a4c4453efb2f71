// Port-forward over SPDY tunnelled through a WebSocket ("SPDY/3.1+portforward.k8s.io", what kubectl
// 1.31+ speaks). One connection carries any number of forwarded streams; each is a pair of SPDY
// streams, "error" and "data", tied together by a request id and naming the pod port in headers.
// Compared with v4.channel.k8s.io this costs the node far less CPU per byte (the container
// runtime's SPDY reader takes whole frames; its WebSocket reader unmasks byte by byte), and a new
// stream needs no new TLS connection.
//
// Streams are opened without waiting for the server's SYN_REPLY: the server handles a stream's
// frames in order and replies before it looks at the stream's data, so data can follow at once.

import { Duplex } from "node:stream";
import { ExitCode, KtctlError } from "../errors.ts";
import {
  ControlType,
  FrameDecoder,
  HeaderBlockWriter,
  RST_CANCEL,
  SPDY_DATA_HEADER_BYTES,
  encodeDataFrames,
  encodeDataHeader,
  encodeGoAway,
  encodePing,
  encodeRstStream,
  encodeSynStream,
} from "./spdy.ts";
import { WS_HEADROOM, type ClientWebSocket } from "./websocket.ts";
import { FramePool } from "../protocol/frame-packing.ts";

export const SPDY_PORT_FORWARD_PROTOCOL = "SPDY/3.1+portforward.k8s.io";
/** Payload per data frame we send: the runtime's reader allocates per frame, so neither tiny nor huge. */
export const SPDY_MAX_FRAME_PAYLOAD = 256 * 1024;
const READ_HIGH_WATER_MARK = 1024 * 1024;

/** What the node says when a forward fails: plain text from older runtimes, JSON from newer ones. */
export function forwardErrorText(raw: string): string {
  const text = raw.trim();
  if (text.startsWith("{")) {
    try {
      const parsed = JSON.parse(text) as { message?: unknown };
      if (typeof parsed.message === "string") return parsed.message;
    } catch {
      // not JSON after all: keep the text
    }
  }
  return text;
}

/**
 * The node's error text names network namespaces and container ids; what the user needs is the
 * cause at its end ("connect: connection refused"), so keep the first line's last clause.
 */
export function summarizeForwardError(raw: string): string {
  const line = forwardErrorText(raw).split("\n").find((l) => l.trim())?.trim() ?? "";
  const refused = /dial tcp4? [^:]+:(\d+): connect: connection refused/.exec(line);
  if (refused) return `nothing listens on port ${refused[1]} in the pod (connection refused)`;
  return line;
}

/** One SPDY port-forward connection (one WebSocket); `open` adds a forwarded stream to a pod port. */
export class SpdyPortForwardConnection {
  private nextStreamId = 1;
  private nextRequestId = 0;
  private readonly streams = new Map<number, { channel: PortForwardChannel; isData: boolean }>();
  private readonly headerWriter = new HeaderBlockWriter();
  private readonly decoder: FrameDecoder;
  /** Channels whose readers are full: the WebSocket stays paused while any is. */
  private readonly blocked = new Set<PortForwardChannel>();
  private endReason: Error | null | undefined;
  /** Buffers of full data frames, shared by the connection's streams. */
  private readonly framePool: FramePool;
  /** The server said GOAWAY: no new streams, the open ones carry on. */
  private goneAway = false;
  /** When the server last sent anything (a PING's answer included): how liveness is judged. */
  private lastHeard = performance.now();
  private nextPingId = 1;

  readonly closed: Promise<void>;
  private markClosed!: () => void;

  constructor(
    private readonly ws: ClientWebSocket,
    /** "namespace/pod", for messages. */
    readonly label: string,
    private readonly maxFramePayload = SPDY_MAX_FRAME_PAYLOAD,
  ) {
    this.framePool = new FramePool(WS_HEADROOM + SPDY_DATA_HEADER_BYTES + maxFramePayload);
    this.closed = new Promise((resolve) => (this.markClosed = resolve));
    this.decoder = new FrameDecoder({
      data: (streamId, payload, fin) => this.onData(streamId, payload, fin),
      control: (type, flags, body) => this.onControl(type, flags, body),
    });
    // SPDY is a byte stream: where the WebSocket's messages end does not matter to it.
    ws.attach(
      {
        data: (piece) => {
          this.lastHeard = performance.now();
          try {
            this.decoder.push(piece);
          } catch (error) {
            this.destroy(new KtctlError(`port-forward to ${label} broke: ${(error as Error).message}`, ExitCode.unreachable));
          }
        },
        closed: (error) => this.shutDown(error ? new KtctlError(`port-forward to ${label} broke: ${error.message}`, ExitCode.unreachable) : null),
      },
      { stream: true },
    );
  }

  /** True while new streams can be opened. */
  get accepting(): boolean {
    return this.isOpen && !this.goneAway;
  }

  get isOpen(): boolean {
    return this.endReason === undefined && this.ws.open;
  }

  /**
   * A new forwarded stream to `port` of the pod. Bytes may be written at once; `first` bytes go in
   * the same message as the stream's opening frames (one write instead of two).
   */
  open(port: number, first?: Buffer): Duplex {
    if (!this.isOpen || this.goneAway) throw this.closedError();
    const requestId = String(this.nextRequestId++);
    const errorId = this.takeStreamId();
    const dataId = this.takeStreamId();
    const channel = new PortForwardChannel(this, dataId, errorId, `${this.label}:${port}`);
    this.streams.set(errorId, { channel, isData: false });
    this.streams.set(dataId, { channel, isData: true });
    const headers = (type: string): [string, string][] => [
      ["streamtype", type],
      ["port", String(port)],
      ["requestid", requestId],
    ];
    // The error stream first, closed on our side at once (we never write to it), then the data stream.
    const frames = [
      encodeSynStream(errorId, this.headerWriter.encode(headers("error"))),
      encodeDataHeader(errorId, 0, true),
      encodeSynStream(dataId, this.headerWriter.encode(headers("data"))),
    ];
    if (first?.length) frames.push(encodeDataHeader(dataId, first.length), first);
    this.ws.sendOwned(Buffer.concat(frames));
    return channel;
  }

  /** Milliseconds since the server last sent anything. */
  get silentMs(): number {
    return performance.now() - this.lastHeard;
  }

  /** Asks the server for an answer (a PING, client ids odd); its answer counts as hearing from it. */
  ping(): void {
    if (!this.isOpen) return;
    this.ws.sendOwned(encodePing(this.nextPingId));
    this.nextPingId = (this.nextPingId + 2) % 0x7fffffff;
  }

  /** GOAWAY, then the WebSocket closes; streams still open are reset. */
  close(): void {
    if (this.isOpen) {
      this.ws.sendOwned(encodeGoAway(0));
      this.ws.close(1000);
    }
    this.shutDown(null);
  }

  /** Tears the WebSocket down at once. */
  destroy(error?: Error): void {
    this.ws.destroy();
    this.shutDown(error ?? null);
  }

  // ---- used by channels ---------------------------------------------------------------------------

  sendData(streamId: number, chunks: readonly Uint8Array[], callback: (error?: Error | null) => void): void {
    if (!this.isOpen) return callback(this.closedError());
    const frames = encodeDataFrames(streamId, chunks, this.maxFramePayload, WS_HEADROOM, this.framePool);
    if (frames.length === 0) return callback();
    // The send callback fires once the socket has taken the data: that is our back-pressure, and
    // the moment a frame's buffer can serve the next one.
    const last = frames.length - 1;
    for (let i = 0; i < last; i++) {
      const frame = frames[i]!;
      this.ws.sendWithHeadroom(frame, () => this.framePool.give(frame));
    }
    const frame = frames[last]!;
    this.ws.sendWithHeadroom(frame, (error?: Error | null) => {
      this.framePool.give(frame);
      callback(error ?? null);
    });
  }

  sendFin(streamId: number): void {
    if (this.isOpen) this.ws.sendOwned(encodeDataHeader(streamId, 0, true));
  }

  reset(channel: PortForwardChannel, dataId: number, errorId: number): void {
    this.forget(channel, dataId, errorId);
    if (this.isOpen) this.ws.sendOwned(Buffer.concat([encodeRstStream(dataId, RST_CANCEL), encodeRstStream(errorId, RST_CANCEL)]));
  }

  forget(channel: PortForwardChannel, dataId: number, errorId: number): void {
    this.streams.delete(dataId);
    this.streams.delete(errorId);
    this.unblock(channel);
  }

  block(channel: PortForwardChannel): void {
    if (this.blocked.size === 0 && this.isOpen) this.ws.pause();
    this.blocked.add(channel);
  }

  unblock(channel: PortForwardChannel): void {
    if (this.blocked.delete(channel) && this.blocked.size === 0 && this.isOpen) this.ws.resume();
  }

  closedError(): KtctlError {
    const reason = this.endReason ? `: ${this.endReason.message}` : "";
    return new KtctlError(`port-forward to ${this.label} is closed${reason}`, ExitCode.unreachable);
  }

  // ---- frames from the server ---------------------------------------------------------------------

  private onData(streamId: number, payload: Buffer, fin: boolean): void {
    const entry = this.streams.get(streamId);
    if (!entry) return; // a stream we already gave up on
    if (entry.isData) entry.channel.remoteData(payload, fin);
    else entry.channel.remoteError(payload, fin);
  }

  private onControl(type: number, flags: number, body: Buffer): void {
    switch (type) {
      case ControlType.SynReply:
        // The stream is accepted; a FIN here would mean the server closed its side at once.
        if (flags & 0x01 && body.length >= 4) this.onData(body.readUInt32BE(0) & 0x7fffffff, Buffer.alloc(0), true);
        break;
      case ControlType.RstStream: {
        if (body.length < 8) break;
        const entry = this.streams.get(body.readUInt32BE(0) & 0x7fffffff);
        entry?.channel.remoteReset(body.readUInt32BE(4));
        break;
      }
      case ControlType.Ping:
        // Pings from the server carry even ids; answering is what keeps an idle connection counted alive.
        if (body.length >= 4 && (body.readUInt32BE(0) & 1) === 0 && this.isOpen) this.ws.sendOwned(encodePing(body.readUInt32BE(0)));
        break;
      case ControlType.GoAway:
        // No new streams will be accepted; the ones open carry on until they end.
        this.goneAway = true;
        break;
      default:
        // SETTINGS, WINDOW_UPDATE, HEADERS: nothing a port-forward client acts on.
        break;
    }
  }

  private takeStreamId(): number {
    const id = this.nextStreamId;
    if (id > 0x7fffffff) throw new KtctlError(`port-forward to ${this.label} ran out of stream ids`, ExitCode.unreachable);
    this.nextStreamId += 2;
    return id;
  }

  private shutDown(error: Error | null): void {
    if (this.endReason === undefined) this.endReason = error;
    const channels = new Set([...this.streams.values()].map((entry) => entry.channel));
    this.streams.clear();
    this.blocked.clear();
    for (const channel of channels) channel.connectionLost(error ?? this.closedError());
    if (!this.ws.open) this.markClosed();
  }
}

/** One forwarded stream (a data and an error SPDY stream) as a Duplex. */
class PortForwardChannel extends Duplex {
  private errorText = "";
  private remoteEnded = false;
  private errorEnded = false;
  private dataEnded = false;
  private finSent = false;

  constructor(
    private readonly connection: SpdyPortForwardConnection,
    private readonly dataId: number,
    private readonly errorId: number,
    private readonly label: string,
  ) {
    super({ allowHalfOpen: true, readableHighWaterMark: READ_HIGH_WATER_MARK });
  }

  remoteData(payload: Buffer, fin: boolean): void {
    if (payload.length > 0 && !this.push(payload)) this.connection.block(this);
    if (fin) {
      this.dataEnded = true;
      this.settleRemoteEnd();
    }
  }

  remoteError(payload: Buffer, fin: boolean): void {
    if (payload.length > 0) this.errorText += payload.toString("utf8");
    if (fin) {
      this.errorEnded = true;
      this.settleRemoteEnd();
    }
  }

  remoteReset(status: number): void {
    this.connection.forget(this, this.dataId, this.errorId);
    if (this.errorText) return this.failWithErrorText();
    this.destroy(new KtctlError(`port-forward to ${this.label} was reset by the server (status ${status})`, ExitCode.unreachable));
  }

  connectionLost(error: Error): void {
    if (this.destroyed) return;
    if (this.errorText) return this.failWithErrorText();
    if (this.remoteEnded && this.finSent) return; // over already, nothing lost
    this.destroy(error);
  }

  /** The server ends a stream by closing both of its halves; an error, if any, is on the error stream by then. */
  private settleRemoteEnd(): void {
    if (this.remoteEnded || !this.dataEnded || !this.errorEnded) return;
    this.remoteEnded = true;
    if (this.errorText) return this.failWithErrorText();
    this.push(null);
    this.finishIfDone();
  }

  private failWithErrorText(): void {
    this.destroy(new KtctlError(`port-forward to ${this.label} failed: ${summarizeForwardError(this.errorText)}`, ExitCode.unreachable));
  }

  private finishIfDone(): void {
    if (this.remoteEnded && this.finSent) this.connection.forget(this, this.dataId, this.errorId);
  }

  override _read(): void {
    this.connection.unblock(this);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.connection.sendData(this.dataId, [chunk], callback);
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    this.connection.sendData(
      this.dataId,
      chunks.map((c) => c.chunk),
      callback,
    );
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.connection.sendFin(this.dataId);
    this.finSent = true;
    this.finishIfDone();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.remoteEnded && this.finSent) this.connection.forget(this, this.dataId, this.errorId);
    else this.connection.reset(this, this.dataId, this.errorId);
    callback(error);
  }
}
