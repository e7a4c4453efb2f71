// HTTP/2 frames (RFC 9113 §4 and §6) as the h2c relay needs them: the 9-byte header, the few
// frames the router writes itself, and the fields it reads out of the frames it passes on.

export const FRAME_HEADER_BYTES = 9;

/** Connection-specific headers HTTP/2 forbids; an HTTP/1-minded peer might still send them. */
export const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "http2-settings"]);

export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

export const Flag = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;

export const Setting = { HEADER_TABLE_SIZE: 0x1, INITIAL_WINDOW_SIZE: 0x4, MAX_FRAME_SIZE: 0x5 } as const;

/** Every connection and stream window starts here (RFC 9113 §6.9.2); SETTINGS move streams' only. */
export const DEFAULT_WINDOW = 65_535;
/** The smallest SETTINGS_MAX_FRAME_SIZE a peer may announce: a frame this size always fits. */
export const DEFAULT_MAX_FRAME = 16_384;

export function frameHeader(length: number, type: number, flags: number, streamId: number): Buffer {
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  writeFrameHeader(header, 0, length, type, flags, streamId);
  return header;
}

export function writeFrameHeader(into: Buffer, at: number, length: number, type: number, flags: number, streamId: number): void {
  into[at] = (length >>> 16) & 0xff;
  into[at + 1] = (length >>> 8) & 0xff;
  into[at + 2] = length & 0xff;
  into[at + 3] = type;
  into[at + 4] = flags;
  into.writeUInt32BE(streamId & 0x7fffffff, at + 5);
}

export function windowUpdateFrame(streamId: number, increment: number): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + 4);
  writeFrameHeader(frame, 0, 4, FrameType.WINDOW_UPDATE, 0, streamId);
  frame.writeUInt32BE(increment & 0x7fffffff, FRAME_HEADER_BYTES);
  return frame;
}

export function rstStreamFrame(streamId: number, code: number): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + 4);
  writeFrameHeader(frame, 0, 4, FrameType.RST_STREAM, 0, streamId);
  frame.writeUInt32BE(code >>> 0, FRAME_HEADER_BYTES);
  return frame;
}

export function dataFrame(streamId: number, payload: Uint8Array, endStream: boolean): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  writeFrameHeader(frame, 0, payload.length, FrameType.DATA, endStream ? Flag.END_STREAM : 0, streamId);
  frame.set(payload, FRAME_HEADER_BYTES);
  return frame;
}

/** A header block as one HEADERS frame, or HEADERS and CONTINUATIONs when it is larger than `maxFrame`. */
export function headersFrames(streamId: number, block: Buffer, endStream: boolean, maxFrame = DEFAULT_MAX_FRAME): Buffer {
  const pieces = Math.max(1, Math.ceil(block.length / maxFrame));
  const out = Buffer.allocUnsafe(block.length + pieces * FRAME_HEADER_BYTES);
  let at = 0;
  for (let i = 0; i < pieces; i++) {
    const fragment = block.subarray(i * maxFrame, (i + 1) * maxFrame);
    const last = i === pieces - 1;
    const type = i === 0 ? FrameType.HEADERS : FrameType.CONTINUATION;
    const flags = (last ? Flag.END_HEADERS : 0) | (i === 0 && endStream ? Flag.END_STREAM : 0);
    writeFrameHeader(out, at, fragment.length, type, flags, streamId);
    out.set(fragment, at + FRAME_HEADER_BYTES);
    at += FRAME_HEADER_BYTES + fragment.length;
  }
  return out;
}

/** The header block fragment of a HEADERS frame's payload: without its padding and priority fields. */
export function headersFragment(payload: Buffer, flags: number): Buffer {
  let start = 0;
  let end = payload.length;
  if (flags & Flag.PADDED) {
    if (payload.length < 1) throw new Error("HEADERS frame too short for its padding");
    end -= payload[0]!;
    start = 1;
  }
  if (flags & Flag.PRIORITY) start += 5;
  if (start > end) throw new Error("HEADERS frame padding larger than the frame");
  return payload.subarray(start, end);
}

/** The data of a DATA frame's payload, without its padding. */
export function dataOf(payload: Buffer, flags: number): Buffer {
  if (!(flags & Flag.PADDED)) return payload;
  if (payload.length < 1 || payload[0]! >= payload.length) throw new Error("DATA frame padding larger than the frame");
  return payload.subarray(1, payload.length - payload[0]!);
}

export function settingsOf(payload: Buffer): [id: number, value: number][] {
  if (payload.length % 6 !== 0) throw new Error("SETTINGS frame of a length not a multiple of 6");
  const settings: [number, number][] = [];
  for (let at = 0; at < payload.length; at += 6) settings.push([payload.readUInt16BE(at), payload.readUInt32BE(at + 2)]);
  return settings;
}

export type FrameVisitor = (buffer: Buffer, at: number, end: number, type: number, flags: number, streamId: number) => void;

/**
 * Cuts one direction's bytes into whole frames. A frame split between reads is joined on its own
 * (the rest of the read is scanned where it lies), so a bulk transfer is not copied once more.
 */
export class FrameCutter {
  /** The start of a frame the last reads ended inside, and its byte count. */
  private parts: Buffer[] = [];
  private partsLength = 0;

  push(chunk: Buffer, visit: FrameVisitor): void {
    let at = 0;
    if (this.partsLength > 0) {
      const total = this.pendingFrameLength(chunk);
      const need = total === undefined ? undefined : total - this.partsLength;
      if (need === undefined || chunk.length < need) {
        this.parts.push(chunk);
        this.partsLength += chunk.length;
        return;
      }
      this.parts.push(chunk.subarray(0, need));
      const frame = Buffer.concat(this.parts);
      this.parts = [];
      this.partsLength = 0;
      visit(frame, 0, frame.length, frame[3]!, frame[4]!, frame.readUInt32BE(5) & 0x7fffffff);
      at = need;
    }
    while (chunk.length - at >= FRAME_HEADER_BYTES) {
      const end = at + FRAME_HEADER_BYTES + ((chunk[at]! << 16) | (chunk[at + 1]! << 8) | chunk[at + 2]!);
      if (end > chunk.length) break;
      visit(chunk, at, end, chunk[at + 3]!, chunk[at + 4]!, chunk.readUInt32BE(at + 5) & 0x7fffffff);
      at = end;
    }
    if (at < chunk.length) {
      this.parts.push(chunk.subarray(at));
      this.partsLength = chunk.length - at;
    }
  }

  /** The whole length of the frame begun in `parts`, once its header is there (with `next` read after). */
  private pendingFrameLength(next: Buffer): number | undefined {
    const have = this.partsLength;
    if (have + next.length < FRAME_HEADER_BYTES) return undefined;
    const byte = (i: number): number => {
      let index = i;
      for (const part of this.parts) {
        if (index < part.length) return part[index]!;
        index -= part.length;
      }
      return next[index]!;
    };
    return FRAME_HEADER_BYTES + ((byte(0) << 16) | (byte(1) << 8) | byte(2));
  }
}
