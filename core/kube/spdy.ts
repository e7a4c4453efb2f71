// SPDY/3.1 framing, as much of it as a port-forward client needs: the API server tunnels the
// kubelet's SPDY connection through a WebSocket (subprotocol "SPDY/3.1+portforward.k8s.io"), and
// the WebSocket's binary messages are nothing but slices of that SPDY byte stream.
//
// Frames (all integers big-endian):
//   data:    stream id (31 bits) | flags (8) length (24) | payload
//   control: 1 | version (15) | type (16) | flags (8) length (24) | body
// Header blocks are one zlib stream per direction. We write ours as stored (uncompressed) deflate
// blocks, each ended like a sync flush, which every zlib reader accepts and which needs no
// compressor state; we never need the
// server's header blocks (a reply's headers say nothing a port-forward uses), so we skip them
// without inflating.

import { packFrames, type FrameFormat, type FramePool } from "../protocol/frame-packing.ts";

export const SPDY_VERSION = 3;
export const FLAG_FIN = 0x01;

export const enum ControlType {
  SynStream = 1,
  SynReply = 2,
  RstStream = 3,
  Settings = 4,
  Ping = 6,
  GoAway = 7,
  Headers = 8,
  WindowUpdate = 9,
}

/** RST_STREAM status codes. */
export const RST_CANCEL = 5;

/** The data frame's length field is 24 bits. */
export const MAX_DATA_LENGTH = 0xffffff;
const MAX_STORED_BLOCK = 0xffff;
const SYNC_MARK = Buffer.from([0x00, 0x00, 0x00, 0xff, 0xff]);
const DATA_HEADER = 8;
export const SPDY_DATA_HEADER_BYTES = DATA_HEADER;

/**
 * Our side of the header-block zlib stream: a zlib header once, then one non-final stored block
 * per header block, so every frame's block ends byte-aligned, as a sync flush would leave it.
 */
export class HeaderBlockWriter {
  private started = false;

  encode(headers: readonly (readonly [string, string])[]): Buffer {
    const parts: Buffer[] = [];
    const count = Buffer.alloc(4);
    count.writeUInt32BE(headers.length);
    parts.push(count);
    for (const [name, value] of headers) {
      const n = Buffer.from(name.toLowerCase(), "utf8");
      const v = Buffer.from(value, "utf8");
      const ln = Buffer.alloc(4);
      ln.writeUInt32BE(n.length);
      const lv = Buffer.alloc(4);
      lv.writeUInt32BE(v.length);
      parts.push(ln, n, lv, v);
    }
    const raw = Buffer.concat(parts);
    if (raw.length > MAX_STORED_BLOCK) throw new Error("SPDY header block too large");
    const prefix = this.started ? 0 : 2;
    this.started = true;
    const out = Buffer.allocUnsafe(prefix + 5 + raw.length + SYNC_MARK.length);
    if (prefix) {
      out[0] = 0x78; // deflate, 32 KiB window
      out[1] = 0x01; // no preset dictionary, check bits make 0x7801 a multiple of 31
    }
    out[prefix] = 0x00; // BFINAL=0, BTYPE=00 (stored)
    out.writeUInt16LE(raw.length, prefix + 1);
    out.writeUInt16LE(~raw.length & 0xffff, prefix + 3);
    raw.copy(out, prefix + 5);
    // The empty stored block a sync flush ends with. Go's inflater hands out a block's bytes only
    // once it has read the next block's header, so without it the reader would wait on the next frame.
    SYNC_MARK.copy(out, prefix + 5 + raw.length);
    return out;
  }
}

function controlFrame(type: ControlType, flags: number, body: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(8 + body.length);
  frame.writeUInt16BE(0x8000 | SPDY_VERSION, 0);
  frame.writeUInt16BE(type, 2);
  frame.writeUInt32BE((((flags & 0xff) << 24) | body.length) >>> 0, 4);
  body.copy(frame, 8);
  return frame;
}

export function encodeSynStream(streamId: number, headerBlock: Buffer, flags = 0): Buffer {
  const body = Buffer.allocUnsafe(10 + headerBlock.length);
  body.writeUInt32BE(streamId & 0x7fffffff, 0);
  body.writeUInt32BE(0, 4); // associated-to stream: none
  body[8] = 0; // priority 0 (highest), as kubectl sends
  body[9] = 0; // credential slot
  headerBlock.copy(body, 10);
  return controlFrame(ControlType.SynStream, flags, body);
}

export function encodeRstStream(streamId: number, status: number): Buffer {
  const body = Buffer.allocUnsafe(8);
  body.writeUInt32BE(streamId & 0x7fffffff, 0);
  body.writeUInt32BE(status, 4);
  return controlFrame(ControlType.RstStream, 0, body);
}

export function encodePing(id: number): Buffer {
  const body = Buffer.allocUnsafe(4);
  body.writeUInt32BE(id >>> 0, 0);
  return controlFrame(ControlType.Ping, 0, body);
}

export function encodeGoAway(lastGoodStreamId: number, status = 0): Buffer {
  const body = Buffer.allocUnsafe(8);
  body.writeUInt32BE(lastGoodStreamId & 0x7fffffff, 0);
  body.writeUInt32BE(status, 4);
  return controlFrame(ControlType.GoAway, 0, body);
}

/** The 8 bytes that precede `length` bytes of data on `streamId`. */
export function encodeDataHeader(streamId: number, length: number, fin = false): Buffer {
  const header = Buffer.allocUnsafe(DATA_HEADER);
  header.writeUInt32BE(streamId & 0x7fffffff, 0);
  header.writeUInt32BE((((fin ? FLAG_FIN : 0) << 24) | length) >>> 0, 4);
  return header;
}

/** The layout of data frames on `streamId`, for the shared frame packer. */
export function dataFrameFormat(streamId: number, maxPayload: number): FrameFormat {
  return {
    maxPayload: Math.min(maxPayload, MAX_DATA_LENGTH),
    headerBytes: DATA_HEADER,
    writeHeader(frame, at, length) {
      frame.writeUInt32BE(streamId & 0x7fffffff, at);
      frame.writeUInt32BE(length, at + 4);
    },
  };
}

/**
 * Packs chunks for one stream into data frames of at most `max` payload bytes each, in as few
 * buffers as possible (one copy per byte: the WebSocket sends each buffer as one message). Each
 * buffer starts with `headroom` spare bytes, where the WebSocket can put its own header; big ones
 * come from `pool` when given (hand each back once sent).
 */
export function encodeDataFrames(streamId: number, chunks: readonly Uint8Array[], max: number, headroom = 0, pool?: FramePool): Buffer[] {
  return packFrames(dataFrameFormat(streamId, max), chunks, { headroom, pool });
}

/** What the decoder reports; data payloads are views into the messages, never copies. */
export interface FrameSink {
  /** A piece of a data frame's payload; `fin` on the frame's last piece when the FIN flag is set. */
  data(streamId: number, payload: Buffer, fin: boolean): void;
  /** A whole control frame (its body excludes the 8-byte header). */
  control(type: number, flags: number, body: Buffer): void;
}

/**
 * Parses a SPDY byte stream that arrives in arbitrary slices. Data payloads are passed on as they
 * arrive (a frame split over several messages comes out in several pieces), so a big frame is
 * never buffered whole.
 */
export class FrameDecoder {
  private readonly header = Buffer.alloc(DATA_HEADER);
  private headerFill = 0;
  /** Bytes left of the current frame's payload (data) or body (control). */
  private left = 0;
  private inFrame = false;
  private isControl = false;
  private controlType = 0;
  private flags = 0;
  private streamId = 0;
  private controlParts: Buffer[] = [];

  constructor(private readonly sink: FrameSink) {}

  push(chunk: Buffer): void {
    let at = 0;
    const end = chunk.length;
    while (at < end) {
      if (!this.inFrame) {
        const need = DATA_HEADER - this.headerFill;
        if (this.headerFill === 0 && end - at >= DATA_HEADER) {
          this.startFrame(chunk, at);
          at += DATA_HEADER;
        } else {
          const n = Math.min(need, end - at);
          chunk.copy(this.header, this.headerFill, at, at + n);
          this.headerFill += n;
          at += n;
          if (this.headerFill < DATA_HEADER) return;
          this.headerFill = 0;
          this.startFrame(this.header, 0);
        }
        if (this.left === 0) this.finishFrame();
        continue;
      }
      const n = Math.min(this.left, end - at);
      const piece = chunk.subarray(at, at + n);
      at += n;
      this.left -= n;
      if (this.isControl) {
        this.controlParts.push(piece);
        if (this.left === 0) this.finishFrame();
      } else {
        const last = this.left === 0;
        if (last) this.inFrame = false;
        this.sink.data(this.streamId, piece, last && (this.flags & FLAG_FIN) !== 0);
      }
    }
  }

  private startFrame(bytes: Buffer, at: number): void {
    const first = bytes.readUInt32BE(at);
    const second = bytes.readUInt32BE(at + 4);
    this.inFrame = true;
    this.flags = second >>> 24;
    this.left = second & 0xffffff;
    this.isControl = (first & 0x80000000) !== 0;
    if (this.isControl) {
      const version = (first >>> 16) & 0x7fff;
      if (version !== SPDY_VERSION) throw new Error(`SPDY version ${version} in a control frame, expected ${SPDY_VERSION}`);
      this.controlType = first & 0xffff;
      this.controlParts = [];
    } else {
      this.streamId = first & 0x7fffffff;
    }
  }

  private finishFrame(): void {
    this.inFrame = false;
    if (this.isControl) {
      const parts = this.controlParts;
      this.controlParts = [];
      const body = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      this.sink.control(this.controlType, this.flags, body);
    } else {
      // An empty data frame: only its flags matter (an empty FIN closes the sender's side).
      this.sink.data(this.streamId, Buffer.alloc(0), (this.flags & FLAG_FIN) !== 0);
    }
  }
}
