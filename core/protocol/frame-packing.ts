// Cutting a byte stream into length-prefixed frames, once for every framing the tunnel speaks: SPDY
// data frames and the v4 channel's messages (core/kube/), DATA frames of direct streams (here, for
// host and shadow alike). Each framing says only how big a frame may be and how its header looks.
//
// Two ways to emit a frame from the same cut:
//   - packFrames copies header and payload into one buffer (one copy per byte): what goes to a
//     socket or a WebSocket as one write, so the header never leaves as a segment of its own;
//   - forEachFrame hands out the payload as views (no copy): for a layer that packs again below.
// Frame buffers come from a FramePool and go back to it once written: a fresh 256 KiB buffer per
// frame cost more CPU (page faults, zeroing) than the copy into it, and garbage frames waiting for
// the collector were most of the memory a bulk transfer held.

/** How one framing lays out a frame. */
export interface FrameFormat {
  /** Largest payload of one frame. */
  maxPayload: number;
  headerBytes: number;
  /** Writes the header of a frame of `length` payload bytes at `at` of `frame`. */
  writeHeader(frame: Buffer, at: number, length: number): void;
}

/**
 * Frame buffers of one size, reused once written. Only buffers it made come back into it (each
 * has an ArrayBuffer of its own), and it keeps at most `maxFree`: what a burst needed more is
 * left to the collector.
 */
export class FramePool {
  private readonly free: Buffer[] = [];
  private readonly mine = new WeakSet<ArrayBufferLike>();

  constructor(
    readonly size: number,
    private readonly maxFree = 16,
  ) {}

  take(): Buffer {
    const buffer = this.free.pop();
    if (buffer) return buffer;
    const made = Buffer.allocUnsafeSlow(this.size);
    this.mine.add(made.buffer);
    return made;
  }

  /** Gives back the buffer behind `frame` (a view of it is enough); anything else is ignored. */
  give(frame: Buffer): void {
    if (!this.mine.has(frame.buffer) || this.free.length >= this.maxFree) return;
    this.free.push(Buffer.from(frame.buffer, 0, this.size));
  }

  get idle(): number {
    return this.free.length;
  }
}

/** Frames smaller than this are allocated as they come (small allocations are cheap; a pooled one would pin a big buffer). */
const POOLED_FROM = 16 * 1024;

/**
 * Cuts `chunks` into frames of at most `maxPayload` bytes, packing across chunk boundaries; calls
 * `emit` with each frame's payload as views into the chunks and its total length. The one loop
 * every framing shares.
 */
export function forEachFrame(chunks: readonly Uint8Array[], maxPayload: number, emit: (pieces: Uint8Array[], length: number) => void): void {
  let left = 0;
  for (const chunk of chunks) left += chunk.byteLength;
  let pieces: Uint8Array[] = [];
  let room = Math.min(maxPayload, left);
  for (const chunk of chunks) {
    let at = 0;
    while (at < chunk.byteLength) {
      const n = Math.min(chunk.byteLength - at, room);
      pieces.push(at === 0 && n === chunk.byteLength ? chunk : chunk.subarray(at, at + n));
      at += n;
      room -= n;
      left -= n;
      if (room === 0) {
        const length = pieces.reduce((sum, piece) => sum + piece.byteLength, 0);
        emit(pieces, length);
        pieces = [];
        room = Math.min(maxPayload, left);
      }
    }
  }
}

/**
 * Packs `chunks` into frames of `format`, each one buffer: `headroom` spare bytes (for an outer
 * layer's header), the frame's header, its payload. Big frames come from `pool` when one is given;
 * give each back to it once written.
 */
export function packFrames(format: FrameFormat, chunks: readonly Uint8Array[], options: { headroom?: number; pool?: FramePool } = {}): Buffer[] {
  const headroom = options.headroom ?? 0;
  const out: Buffer[] = [];
  forEachFrame(chunks, format.maxPayload, (pieces, length) => {
    const size = headroom + format.headerBytes + length;
    const pool = options.pool;
    const frame =
      pool && size >= POOLED_FROM && size <= pool.size ? pool.take().subarray(0, size) : Buffer.allocUnsafe(size);
    format.writeHeader(frame, headroom, length);
    let offset = headroom + format.headerBytes;
    for (const piece of pieces) {
      frame.set(piece, offset);
      offset += piece.byteLength;
    }
    out.push(frame);
  });
  return out;
}
