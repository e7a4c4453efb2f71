// Direct streams: the tunnel's fast path for bulk data, shared word for word by host and shadow.
//
// The SSH link stays the tunnel's control plane (authentication, control channel, remote
// listeners). When the port-forward underneath is SPDY, which carries many streams per
// connection, each stream the host opens into the cluster can instead be its own port-forward
// stream to the shadow's direct port, which the shadow relays to the target. No SSH encryption on
// top of the API server's TLS, no ssh2 packet work: the shadow becomes a plain relay.
//
// Wire format, on one port-forward stream to the direct port:
//   host -> shadow, first:  preamble = "KTD1" or "KTD2" | token (32 bytes) | window (u32) | port (u16) | host length (u8) | host
//   then both ways, frames: type (u8) | value (u32)          [ | payload of `value` bytes for DATA ]
//     DATA     payload bytes, at most what the peer's credit allows
//     EOF      no more DATA this way (TCP's FIN; the other way goes on)
//     CREDIT   the sender may send `value` more bytes (flow control per stream, as SSH's windows)
//     BLOCKED  the sender has data waiting and no credit left (the receiver may grow the window)
//     OPENED   shadow -> host, first frame: the target accepted the connection
//     REFUSED  shadow -> host, first frame: payload is JSON {reason, message}; then the shadow closes
//     DONE     host -> shadow, reusable streams only: the host has sent and received EOF and
//              will send nothing more for this connection
// A "KTD2" stream is reusable: once a connection has ended cleanly (EOF both ways), the host says
// DONE and the stream carries the next connection, whose preamble follows the DONE. The shadow
// never says DONE: its frames of the next connection begin with OPENED or REFUSED, and whatever
// it sent of the last one after the host's EOF (CREDIT or BLOCKED, sent before it saw that EOF) is
// dropped by the host until then. Opening a port-forward stream costs the API server, the
// kubelet, the runtime and the shadow CPU on the path of every new connection; a stream reused
// costs none of it. With a shadow that has "early-reuse" (tunnel.ts), its DONE costs nothing
// either: the shadow goes back to waiting for a preamble as soon as both EOFs are behind it (what
// comes before the DONE is the last connection's CREDIT and BLOCKED: dropped, afterOwedDone), and
// the host keeps the DONE until the stream's next use and writes it in front of the next preamble
// (a stream that is never used again needs none). Anything but a clean end (a refusal, a reset, a
// lost stream) still closes the stream.
// Each side starts with `window` of credit (the host's choice, at most DIRECT_MAX_WINDOW). A
// receiver never stops reading its transport (a
// stalled port-forward stream would stall every stream of its connection, the SSH link included);
// credit is what bounds what it must hold.
//
// The token comes from the shadow over the authenticated SSH control channel ("direct" request),
// so only the session's host can open direct streams.

import { FramePool, forEachFrame, packFrames, type FrameFormat } from "./frame-packing.ts";
import type { StreamFailure } from "./tunnel.ts";

export const DIRECT_MAGIC = Buffer.from("KTD1", "latin1");
/** The preamble of a stream that may carry one connection after another (the host's DONE frames). */
export const DIRECT_MAGIC_REUSABLE = Buffer.from("KTD2", "latin1");
export const DIRECT_TOKEN_BYTES = 32;
/**
 * Credit each side starts with, per stream and direction (the host may ask for another). Measured:
 * under bulk load both ways, credit returns queue behind data, and 2 MiB held streams back.
 */
export const DIRECT_WINDOW = 8 * 1024 * 1024;
/** The most credit a shadow grants, whatever the host asks: what it may have to hold per stream. */
export const DIRECT_MAX_WINDOW = 16 * 1024 * 1024;
/** Largest DATA payload either side sends or accepts. */
export const DIRECT_MAX_FRAME = 256 * 1024;
/**
 * The host keeps a few streams to the direct port open ahead of need; the shadow drops one that
 * stays silent this long (and one whose preamble stalls half-way much sooner).
 */
export const DIRECT_IDLE_MS = 5 * 60_000;
/**
 * How long a late EOF (FEATURE_LATE_EOF in tunnel.ts) may wait for the stream's next use before it
 * leaves alone. A client that opens a connection per request opens the next one well within it
 * (about 1-2 ms here); all it delays is when the side that already ended sees the other's EOF.
 */
export const LATE_EOF_HOLD_MS = 10;
/** Credit is returned in batches of at least a quarter of the window (or when it runs low). */
const CREDIT_BATCH_SHARE = 4;
const MAX_HOST_BYTES = 255;
const HEADER_BYTES = 5;

export const enum FrameType {
  Data = 1,
  Eof = 2,
  Credit = 3,
  Opened = 4,
  Refused = 5,
  Blocked = 6,
  Done = 7,
}

export class DirectProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DirectProtocolError";
  }
}

export interface DirectTarget {
  token: Buffer;
  host: string;
  port: number;
  /** Initial credit, each way. */
  window: number;
  /** The stream may carry another connection after this one ends cleanly ("KTD2"). */
  reusable?: boolean;
}

export function encodePreamble(target: DirectTarget): Buffer {
  const host = Buffer.from(target.host, "utf8");
  if (host.length === 0 || host.length > MAX_HOST_BYTES) throw new DirectProtocolError(`host name of ${host.length} bytes`);
  if (target.token.length !== DIRECT_TOKEN_BYTES) throw new DirectProtocolError("token of the wrong size");
  if (target.window < 1 || target.window > DIRECT_MAX_WINDOW) throw new DirectProtocolError(`window of ${target.window} bytes`);
  const out = Buffer.allocUnsafe(DIRECT_MAGIC.length + DIRECT_TOKEN_BYTES + 7 + host.length);
  let at = (target.reusable ? DIRECT_MAGIC_REUSABLE : DIRECT_MAGIC).copy(out, 0);
  at += target.token.copy(out, at);
  at = out.writeUInt32BE(target.window, at);
  at = out.writeUInt16BE(target.port, at);
  at = out.writeUInt8(host.length, at);
  host.copy(out, at);
  return out;
}

/** Reads the preamble off the front of `data`: undefined while incomplete, throws if malformed. */
export function decodePreamble(data: Buffer): { target: DirectTarget; rest: Buffer } | undefined {
  const fixed = DIRECT_MAGIC.length + DIRECT_TOKEN_BYTES + 7;
  const magic = data.subarray(0, DIRECT_MAGIC.length);
  const reusable = DIRECT_MAGIC_REUSABLE.subarray(0, magic.length).equals(magic);
  if (!reusable && !DIRECT_MAGIC.subarray(0, magic.length).equals(magic)) throw new DirectProtocolError("not a direct stream");
  if (data.length < fixed) return undefined;
  const hostLength = data[fixed - 1]!;
  if (hostLength === 0) throw new DirectProtocolError("empty host name");
  if (data.length < fixed + hostLength) return undefined;
  const token = Buffer.from(data.subarray(DIRECT_MAGIC.length, DIRECT_MAGIC.length + DIRECT_TOKEN_BYTES));
  const window = data.readUInt32BE(DIRECT_MAGIC.length + DIRECT_TOKEN_BYTES);
  if (window < 1 || window > DIRECT_MAX_WINDOW) throw new DirectProtocolError(`window of ${window} bytes`);
  const port = data.readUInt16BE(DIRECT_MAGIC.length + DIRECT_TOKEN_BYTES + 4);
  const host = data.subarray(fixed, fixed + hostLength).toString("utf8");
  return { target: { token, host, port, window, reusable }, rest: data.subarray(fixed + hostLength) };
}

export function encodeFrameHeader(type: FrameType, value: number): Buffer {
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  header[0] = type;
  header.writeUInt32BE(value >>> 0, 1);
  return header;
}

/** DATA frames as the shared frame packer lays them out. */
export const DIRECT_DATA_FORMAT: FrameFormat = {
  maxPayload: DIRECT_MAX_FRAME,
  headerBytes: HEADER_BYTES,
  writeHeader(frame, at, length) {
    frame[at] = FrameType.Data;
    frame.writeUInt32BE(length, at + 1);
  },
};

/**
 * DATA frames for `chunks`, at most `max` bytes each, headers and payloads as separate buffers (no
 * copy): for a carrier that packs again below (the host's SPDY stream copies them into its frames).
 */
export function encodeDataFrames(chunks: readonly Buffer[], max = DIRECT_MAX_FRAME): Buffer[] {
  const out: Buffer[] = [];
  forEachFrame(chunks, max, (pieces, length) => {
    out.push(encodeFrameHeader(FrameType.Data, length), ...(pieces as Buffer[]));
  });
  return out;
}

/**
 * DATA frames for `chunks`, each header and payload in ONE buffer (one copy): for a socket, where a
 * header written apart would leave as a segment, and a frame, of its own at every hop. Big frames
 * come from `pool`: give each back once written.
 */
export function packDataFrames(chunks: readonly Buffer[], pool?: FramePool): Buffer[] {
  return packFrames(DIRECT_DATA_FORMAT, chunks, { pool });
}

/** A pool for packDataFrames' buffers. */
export function directFramePool(): FramePool {
  return new FramePool(HEADER_BYTES + DIRECT_MAX_FRAME);
}

/**
 * `data` without the CREDIT and BLOCKED frames at its front: on a reused stream, what the shadow
 * still sent of the last connection before it saw the host's EOF, which the host drops until the
 * next connection's first frame. Undefined while one of them is incomplete.
 */
export function dropLeftovers(data: Buffer): Buffer | undefined {
  let at = 0;
  while (at < data.length && (data[at] === FrameType.Credit || data[at] === FrameType.Blocked)) {
    if (data.length - at < HEADER_BYTES) return undefined;
    at += HEADER_BYTES;
  }
  return at === 0 ? data : data.subarray(at);
}

/**
 * On a reverse stream given its next connection before the host's DONE of the last one arrived
 * ("early-reuse"): what follows that DONE in `data`, or undefined while it has not come yet. In
 * front of it only CREDIT and BLOCKED frames of the last connection may come (dropped); any other
 * frame there breaks the protocol.
 */
export function afterOwedDone(data: Buffer): Buffer | undefined {
  let at = 0;
  for (;;) {
    if (data.length - at < HEADER_BYTES) return undefined;
    const type = data[at]!;
    at += HEADER_BYTES;
    if (type === FrameType.Done) return data.subarray(at);
    if (type !== FrameType.Credit && type !== FrameType.Blocked) throw new DirectProtocolError("a frame of the next connection before the last one's DONE");
  }
}

/**
 * A stream taken back before the host's DONE of its last connection: the bytes that arrive are
 * passed through afterOwedDone until the DONE is in, then as they come. One reader for every place
 * a stream waits for that DONE (the relay of its next connection, the shadow's waiting streams, its
 * preamble reader).
 */
export class OwedDone {
  /** What arrived while the DONE is owed; undefined once it is in. */
  private seen: Buffer | undefined;

  constructor(owed: boolean) {
    this.seen = owed ? Buffer.alloc(0) : undefined;
  }

  get owed(): boolean {
    return this.seen !== undefined;
  }

  /** What arrived and waits for the DONE (to hand on with the stream). */
  get held(): Buffer {
    return this.seen ?? Buffer.alloc(0);
  }

  /**
   * `chunk`, or what follows the DONE in it; undefined while the DONE is still owed. Throws
   * DirectProtocolError when a frame of the next connection comes before it.
   */
  pass(chunk: Buffer): Buffer | undefined {
    if (this.seen === undefined) return chunk;
    const seen = this.seen.length ? Buffer.concat([this.seen, chunk]) : chunk;
    const after = afterOwedDone(seen);
    this.seen = after === undefined ? seen : undefined;
    return after;
  }
}

export function encodeRefused(reason: StreamFailure, message: string): Buffer {
  const body = Buffer.from(JSON.stringify({ reason, message }), "utf8");
  return Buffer.concat([encodeFrameHeader(FrameType.Refused, body.length), body]);
}

export interface DirectFrameSink {
  /** A piece of a DATA frame's payload (a view into what arrived, never a copy). */
  data(payload: Buffer): void;
  eof(): void;
  credit(bytes: number): void;
  blocked(): void;
  opened(): void;
  refused(reason: StreamFailure, message: string): void;
  /**
   * The host's DONE: the reader stops there, and `rest` is what followed it in the same slice (the
   * stream's next use, which belongs to whoever takes the stream next).
   */
  done(rest: Buffer): void;
}

/** Parses frames from a byte stream that arrives in arbitrary slices. */
export class DirectFrameReader {
  private readonly header = Buffer.alloc(HEADER_BYTES);
  private headerFill = 0;
  /** Payload bytes left of the current DATA or REFUSED frame. */
  private left = 0;
  private type = 0;
  private refusal: Buffer[] = [];
  /** While push() runs: its chunk and how far it got (for stop()). */
  private chunk: Buffer | undefined;
  private at = 0;
  private stopped = false;

  constructor(
    private readonly sink: DirectFrameSink,
    private readonly maxFrame = DIRECT_MAX_FRAME,
  ) {}

  /**
   * Parses nothing more, at a frame boundary; returns what is left unparsed (the rest of the slice
   * being parsed, or an incomplete frame header kept from the last one) for the stream's next owner.
   * Called from a sink callback, or between slices.
   */
  stop(): Buffer {
    this.stopped = true;
    const heldHeader = this.header.subarray(0, this.headerFill);
    const unparsed = this.chunk ? this.chunk.subarray(this.at) : Buffer.alloc(0);
    if (this.left > 0) throw new DirectProtocolError("stopped inside a frame");
    return heldHeader.length ? Buffer.concat([heldHeader, unparsed]) : Buffer.from(unparsed);
  }

  /** Parses `chunk`; after a DONE frame nothing more is parsed (the sink has the rest). */
  push(chunk: Buffer): void {
    if (this.stopped) return;
    this.chunk = chunk;
    try {
      this.parse(chunk);
    } finally {
      this.chunk = undefined;
    }
  }

  private parse(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && !this.stopped) {
      if (this.left === 0) {
        let type: number;
        let value: number;
        if (this.headerFill === 0 && chunk.length - at >= HEADER_BYTES) {
          type = chunk[at]!;
          value = chunk.readUInt32BE(at + 1);
          at += HEADER_BYTES;
        } else {
          const n = Math.min(HEADER_BYTES - this.headerFill, chunk.length - at);
          chunk.copy(this.header, this.headerFill, at, at + n);
          this.headerFill += n;
          at += n;
          if (this.headerFill < HEADER_BYTES) return;
          this.headerFill = 0;
          type = this.header[0]!;
          value = this.header.readUInt32BE(1);
        }
        this.at = at;
        if (type === FrameType.Done) return this.sink.done(chunk.subarray(at));
        this.startFrame(type, value);
        continue;
      }
      const n = Math.min(this.left, chunk.length - at);
      const piece = chunk.subarray(at, at + n);
      at += n;
      this.left -= n;
      if (this.type === FrameType.Data) this.sink.data(piece);
      else {
        this.refusal.push(piece);
        if (this.left === 0) this.endRefusal();
      }
    }
  }

  private startFrame(type: number, value: number): void {
    switch (type) {
      case FrameType.Data:
        if (value === 0 || value > this.maxFrame) throw new DirectProtocolError(`DATA frame of ${value} bytes`);
        this.type = type;
        this.left = value;
        return;
      case FrameType.Eof:
        return this.sink.eof();
      case FrameType.Credit:
        return this.sink.credit(value);
      case FrameType.Blocked:
        return this.sink.blocked();
      case FrameType.Opened:
        return this.sink.opened();
      case FrameType.Refused:
        if (value === 0 || value > 64 * 1024) throw new DirectProtocolError(`REFUSED frame of ${value} bytes`);
        this.type = type;
        this.left = value;
        this.refusal = [];
        return;
      default:
        throw new DirectProtocolError(`unknown frame type ${type}`);
    }
  }

  private endRefusal(): void {
    let reason: StreamFailure = "failed";
    let message = "refused";
    try {
      const parsed = JSON.parse(Buffer.concat(this.refusal).toString("utf8")) as { reason?: StreamFailure; message?: string };
      reason = parsed.reason ?? reason;
      message = parsed.message ?? message;
    } catch {
      throw new DirectProtocolError("REFUSED frame is not JSON");
    }
    this.sink.refused(reason, message);
  }
}

/**
 * The receiving side's bookkeeping: how much it has taken in and used up, and when to hand credit
 * back. `used` counts bytes the consumer has taken (written on, read out); credit returns in batches.
 *
 * The window grows as TCP's receive buffer does, when it is what limits the stream: the sender says
 * BLOCKED when it has data and no credit, and if our consumer has taken everything that arrived,
 * the credit's round trip (not the consumer) is the bottleneck, so the window doubles, up to
 * DIRECT_MAX_WINDOW. A slow consumer never grows it: what a stream can make us hold stays bounded.
 */
export class CreditReturn {
  private received = 0;
  private returned = 0;

  constructor(
    private window = DIRECT_WINDOW,
    private readonly maxWindow = DIRECT_MAX_WINDOW,
  ) {}

  get currentWindow(): number {
    return this.window;
  }

  /** Bytes arrived; false if the sender overran the credit it was given. */
  arrived(bytes: number): boolean {
    this.received += bytes;
    return this.received - this.returned <= this.window;
  }

  /** Given the total the consumer has used so far, the credit to send now (0: not yet). */
  due(usedTotal: number): number {
    const owed = usedTotal - this.returned;
    const batch = Math.max(1, Math.floor(this.window / CREDIT_BATCH_SHARE));
    // In batches, unless the sender is close to running dry.
    if (owed <= 0 || (owed < batch && this.window - (this.received - this.returned) >= batch)) return 0;
    this.returned += owed;
    return owed;
  }

  /** The sender ran dry: the credit to send now, the window doubled if our consumer keeps up. */
  blocked(usedTotal: number): number {
    const owed = Math.max(0, usedTotal - this.returned);
    this.returned += owed;
    if (usedTotal < this.received || this.window >= this.maxWindow) return owed;
    const extra = Math.min(this.window, this.maxWindow - this.window);
    this.window += extra;
    return owed + extra;
  }
}
