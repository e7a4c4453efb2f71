// HTTP/2 (and gRPC on it) as the tap sees it: frames read from both directions, header blocks
// decoded with one HPACK decoder per direction, one record per stream once both sides ended it.
// DATA payloads are counted and skipped, never buffered (unless the tap keeps bodies).

import type { TrafficRecord } from "../../plugin-api.ts";
import { HpackDecoder, type HeaderList } from "../../protocol/hpack.ts";
import type { BodyKeeper, TapSink } from "./record.ts";

export const CLIENT_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** A header block larger than this is not followed (the connection is then only counted). */
const MAX_HEADER_BLOCK = 1024 * 1024;

const FRAME = { DATA: 0x0, HEADERS: 0x1, RST_STREAM: 0x3, PUSH_PROMISE: 0x5, GOAWAY: 0x7, CONTINUATION: 0x9 } as const;
const FLAG = { END_STREAM: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;

type Side = "client" | "server";

interface Stream {
  record: TrafficRecord;
  started: number;
  bodies: BodyKeeper;
  clientDone: boolean;
  serverDone: boolean;
}

/** One direction's frame reader. */
class FrameReader {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes of a DATA payload still to skip, and the stream they belong to. */
  private skipping = 0;
  private skippingStream = 0;
  private prefaceLeft: number;
  broken = false;

  constructor(
    preface: boolean,
    private readonly onFrame: (type: number, flags: number, stream: number, payload: Buffer) => void,
    private readonly onData: (stream: number, data: Buffer, last: boolean) => void,
  ) {
    this.prefaceLeft = preface ? CLIENT_PREFACE.length : 0;
  }

  push(data: Uint8Array): void {
    let bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (this.prefaceLeft) {
      const take = Math.min(this.prefaceLeft, bytes.length);
      this.prefaceLeft -= take;
      bytes = bytes.subarray(take);
    }
    while (bytes.length && !this.broken) {
      if (this.skipping) {
        const take = Math.min(this.skipping, bytes.length);
        this.skipping -= take;
        // Padding is counted as payload too; close enough for a byte count on a padded frame.
        this.onData(this.skippingStream, bytes.subarray(0, take), this.skipping === 0);
        bytes = bytes.subarray(take);
        continue;
      }
      this.pending.push(bytes);
      this.pendingBytes += bytes.length;
      bytes = Buffer.alloc(0);
      if (this.pendingBytes < 9) return;
      const joined = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
      this.pending = [];
      this.pendingBytes = 0;
      const length = joined.readUIntBE(0, 3);
      const type = joined[3]!;
      const flags = joined[4]!;
      const stream = joined.readUInt32BE(5) & 0x7fffffff;
      if (type === FRAME.DATA) {
        // Stream the payload through: it is never held.
        this.skipping = length;
        this.skippingStream = stream;
        this.onFrame(type, flags, stream, Buffer.alloc(0));
        if (length === 0) this.onData(stream, Buffer.alloc(0), true);
        bytes = joined.subarray(9);
        continue;
      }
      if (length > MAX_HEADER_BLOCK) {
        this.broken = true;
        return;
      }
      if (joined.length < 9 + length) {
        this.pending.push(joined);
        this.pendingBytes = joined.length;
        return;
      }
      this.onFrame(type, flags, stream, joined.subarray(9, 9 + length));
      bytes = joined.subarray(9 + length);
    }
  }
}

/** Follows one HTTP/2 connection (prior knowledge, as h2c and gRPC speak it). */
export class H2Tap {
  private readonly streams = new Map<number, Stream>();
  private readonly decoders = { client: new HpackDecoder(), server: new HpackDecoder() };
  /** A header block split over CONTINUATION frames, per direction. */
  private readonly blocks: Record<Side, { stream: number; flags: number; parts: Buffer[]; promised: boolean } | undefined> = {
    client: undefined,
    server: undefined,
  };
  private readonly readers: Record<Side, FrameReader>;
  private readonly dataEndsStream: Record<Side, Map<number, boolean>> = { client: new Map(), server: new Map() };

  constructor(private readonly sink: TapSink) {
    this.readers = {
      client: new FrameReader(true, (t, f, s, p) => this.frame("client", t, f, s, p), (s, d, last) => this.data("client", s, d, last)),
      server: new FrameReader(false, (t, f, s, p) => this.frame("server", t, f, s, p), (s, d, last) => this.data("server", s, d, last)),
    };
  }

  get broken(): boolean {
    return this.readers.client.broken || this.readers.server.broken;
  }

  fromClient(chunk: Uint8Array): void {
    this.readers.client.push(chunk);
  }

  fromServer(chunk: Uint8Array): void {
    this.readers.server.push(chunk);
  }

  end(): void {
    for (const [id, stream] of this.streams) {
      stream.record.error ??= "connection closed before the stream ended";
      this.emit(id, stream);
    }
  }

  private frame(side: Side, type: number, flags: number, streamId: number, payload: Buffer): void {
    switch (type) {
      case FRAME.DATA:
        this.dataEndsStream[side].set(streamId, (flags & FLAG.END_STREAM) !== 0);
        return;
      case FRAME.HEADERS: {
        let at = 0;
        let padding = 0;
        if (flags & FLAG.PADDED) padding = payload[at++]!;
        if (flags & FLAG.PRIORITY) at += 5;
        this.startBlock(side, streamId, flags, payload.subarray(at, payload.length - padding), false);
        return;
      }
      case FRAME.PUSH_PROMISE: {
        let at = 0;
        let padding = 0;
        if (flags & FLAG.PADDED) padding = payload[at++]!;
        at += 4;
        this.startBlock(side, streamId, flags, payload.subarray(at, payload.length - padding), true);
        return;
      }
      case FRAME.CONTINUATION: {
        const block = this.blocks[side];
        if (!block) return;
        block.parts.push(Buffer.from(payload));
        if (flags & FLAG.END_HEADERS) this.finishBlock(side);
        return;
      }
      case FRAME.RST_STREAM: {
        const stream = this.streams.get(streamId);
        if (!stream) return;
        stream.record.error = `stream reset (code ${payload.length >= 4 ? payload.readUInt32BE(0) : "?"}) by the ${side === "client" ? "cluster side" : "local process"}`;
        this.emit(streamId, stream);
        return;
      }
      default:
        return;
    }
  }

  private startBlock(side: Side, stream: number, flags: number, fragment: Buffer, promised: boolean): void {
    this.blocks[side] = { stream, flags, parts: [Buffer.from(fragment)], promised };
    if (flags & FLAG.END_HEADERS) this.finishBlock(side);
  }

  private finishBlock(side: Side): void {
    const block = this.blocks[side]!;
    this.blocks[side] = undefined;
    let headers: HeaderList;
    try {
      headers = this.decoders[side].decode(Buffer.concat(block.parts));
    } catch {
      // The dynamic table is now out of step: nothing later can be trusted.
      (this.readers[side] as { broken: boolean }).broken = true;
      return;
    }
    // A pushed request's headers only keep the decoder in step: pushes are not cluster traffic.
    if (block.promised) return;
    const endStream = (block.flags & FLAG.END_STREAM) !== 0;
    if (side === "client") this.clientHeaders(block.stream, headers, endStream);
    else this.serverHeaders(block.stream, headers, endStream);
  }

  private clientHeaders(id: number, headers: HeaderList, endStream: boolean): void {
    let stream = this.streams.get(id);
    if (!stream) {
      const get = (name: string) => headers.find(([n]) => n === name)?.[1];
      const grpc = (get("content-type") ?? "").startsWith("application/grpc");
      const record = this.sink.newRecord(grpc ? "grpc" : "h2");
      record.method = get(":method");
      record.path = get(":path");
      record.authority = get(":authority");
      record.requestHeaders = pairs(headers);
      const markHeader = this.sink.options.markHeader?.toLowerCase();
      if (markHeader) record.mark = get(markHeader);
      stream = { record, started: performance.now(), bodies: this.sink.bodyKeeper(), clientDone: false, serverDone: false };
      this.streams.set(id, stream);
    }
    if (endStream) this.sideDone(id, stream, "client");
  }

  private serverHeaders(id: number, headers: HeaderList, endStream: boolean): void {
    const stream = this.streams.get(id);
    if (!stream) return;
    const status = headers.find(([n]) => n === ":status")?.[1];
    if (status !== undefined) {
      const code = Number(status);
      // 1xx are interim: the real :status follows in another HEADERS frame.
      if (code >= 100 && code < 200) return;
      stream.record.status = code;
      stream.record.responseHeaders = pairs(headers);
    } else {
      stream.record.responseHeaders = [...(stream.record.responseHeaders ?? []), ...pairs(headers)];
    }
    const grpcStatus = headers.find(([n]) => n === "grpc-status")?.[1];
    if (grpcStatus !== undefined) stream.record.grpcStatus = grpcStatus;
    if (endStream) this.sideDone(id, stream, "server");
  }

  private data(side: Side, id: number, data: Buffer, last: boolean): void {
    const stream = this.streams.get(id);
    if (stream) {
      if (side === "client") {
        stream.record.requestBytes += data.length;
        stream.bodies.request(data);
      } else {
        stream.record.responseBytes += data.length;
        stream.bodies.response(data);
      }
    }
    if (!last) return;
    const ends = this.dataEndsStream[side].get(id);
    this.dataEndsStream[side].delete(id);
    if (stream && ends) this.sideDone(id, stream, side);
  }

  private sideDone(id: number, stream: Stream, side: Side): void {
    if (side === "client") stream.clientDone = true;
    else stream.serverDone = true;
    if (stream.clientDone && stream.serverDone) this.emit(id, stream);
  }

  private emit(id: number, stream: Stream): void {
    this.streams.delete(id);
    stream.record.durationMs = Math.round((performance.now() - stream.started) * 10) / 10;
    stream.bodies.fill(stream.record);
    this.sink.emit(stream.record);
  }
}

/** Name and value of each field, as records show them (whether a field was "never indexed" is HPACK's business). */
const pairs = (headers: HeaderList): [string, string][] => headers.map(([name, value]) => [name, value]);
