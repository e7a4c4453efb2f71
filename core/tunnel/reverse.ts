// The host's end of reverse streams (see core/protocol/reverse-streams.ts): port-forward streams to
// the shadow's reverse port, opened ahead of need, each waiting for the shadow to assign it a
// cluster connection. An assigned stream becomes a DirectStream (the same framing and credit).
// With a shadow that reuses streams, a stream whose connection ended cleanly waits again; otherwise
// (or after an unclean end) a replacement is opened once it is done, at once when few are left
// waiting. The pool grows with the connections in flight, so parallel clients find streams
// waiting, up to a bound; the shadow drops streams that wait too long, and only what is still
// needed is replaced.

import type { Duplex } from "node:stream";
import { DIRECT_WINDOW, dropLeftovers } from "../protocol/direct-streams.ts";
import { decodeAssignment, encodeReversePreamble, type ReverseAssignment } from "../protocol/reverse-streams.ts";
import { DirectStream, type SiblingStreams } from "./direct.ts";

export interface ReverseEndpoint {
  port: number;
  token: Buffer;
}

/** A cluster connection the shadow handed over on a reverse stream. */
export interface ReverseArrival extends ReverseAssignment {
  /** The connection, as a stream: write to answer the cluster client, end() for its FIN. */
  stream: DirectStream;
}

export interface ReversePoolSize {
  /** Streams kept waiting with no connection in flight. */
  base: number;
  /** Bound on waiting streams, however many connections are in flight. */
  max: number;
}

/** Waiting streams: a few at rest, one more per connection in flight (so a burst finds its own), at most 32. */
export const REVERSE_POOL_SIZE: ReversePoolSize = { base: 4, max: 32 };

export interface ReversePoolOptions {
  /** Streams wait again after each connection that ends cleanly (the shadow has the "reuse" feature). */
  reusable?: boolean;
  /**
   * The shadow gives a stream its next connection before the last one's DONE ("early-reuse"): the
   * DONE then waits on the host and leaves with the next connection's first frame.
   */
  earlyReuse?: boolean;
  /**
   * The shadow may keep a connection's late EOF for the stream's next assignment ("late-eof";
   * "KTR3" preambles): the stream's DirectStream hands the carrier back on that EOF with what
   * followed it, the assignment, as it does for an EOF that arrives alone.
   */
  lateEof?: boolean;
  size?: ReversePoolSize;
  window?: number;
}

const ignore = () => {};

export class ReversePool {
  private readonly waiting = new Set<Duplex>();
  private readonly carried = new Set<DirectStream>();
  private refilling = false;
  private closed = false;
  private readonly reusable: boolean;
  private readonly earlyReuse: boolean;
  private readonly lateEof: boolean;
  private readonly size: ReversePoolSize;
  private readonly window: number;

  constructor(
    private readonly siblings: SiblingStreams,
    private readonly endpoint: ReverseEndpoint,
    private readonly onArrival: (arrival: ReverseArrival) => void,
    options: ReversePoolOptions = {},
  ) {
    this.reusable = options.reusable ?? false;
    this.earlyReuse = this.reusable && (options.earlyReuse ?? false);
    this.lateEof = this.earlyReuse && (options.lateEof ?? false);
    this.size = options.size ?? REVERSE_POOL_SIZE;
    this.window = options.window ?? DIRECT_WINDOW;
    this.refill();
  }

  /** Ends the pool: waiting streams close, carried connections are reset with `error`. */
  close(error: Error): void {
    this.closed = true;
    for (const carrier of this.waiting) carrier.destroy();
    this.waiting.clear();
    for (const stream of this.carried) stream.destroy(error);
    this.carried.clear();
  }

  private target(): number {
    return Math.min(this.size.max, this.size.base + this.carried.size);
  }

  private refill(): void {
    this.refilling = false;
    const preamble = encodeReversePreamble({ token: this.endpoint.token, window: this.window, reusable: this.reusable, lateEof: this.lateEof });
    while (!this.closed && this.siblings.accepting && this.waiting.size < this.target()) {
      let carrier: Duplex;
      try {
        carrier = this.siblings.open(this.endpoint.port, preamble);
      } catch {
        return; // the connection is closing; the link will notice
      }
      this.watch(carrier);
    }
  }

  /** Later, after the bytes of the connection that triggered it. */
  private refillSoon(): void {
    if (this.refilling || this.closed) return;
    this.refilling = true;
    setImmediate(() => this.refill());
  }

  /** Where a reused stream's carrier goes after its connection: waiting again. */
  private readonly back = (carrier: Duplex, doneOwed: boolean) => {
    if (this.closed || this.waiting.size >= this.size.max) return void carrier.destroy();
    this.watch(carrier, doneOwed);
  };

  /** `doneOwed`: the carrier's last connection's DONE has not been sent (earlyReuse). */
  private watch(carrier: Duplex, doneOwed = false): void {
    this.waiting.add(carrier);
    let received: Buffer = Buffer.alloc(0);
    const gone = () => {
      carrier.off("data", onData).off("end", gone).off("close", gone);
      carrier.destroy();
      // The shadow dropped a stream that waited too long: replaced only if still needed.
      if (this.waiting.delete(carrier)) this.refillSoon();
    };
    const onData = (chunk: Buffer) => {
      received = received.length ? Buffer.concat([received, chunk]) : chunk;
      // A reused stream may still bring the shadow's last frames of its last connection first.
      const fresh = dropLeftovers(received);
      if (!fresh) return;
      received = fresh;
      let parsed;
      try {
        parsed = decodeAssignment(received);
      } catch {
        return gone();
      }
      if (!parsed) return;
      carrier.off("data", onData).off("end", gone).off("close", gone).off("error", ignore);
      carrier.pause();
      if (parsed.rest.length > 0) carrier.unshift(parsed.rest);
      this.waiting.delete(carrier);
      this.assigned(carrier, parsed.assignment, doneOwed);
    };
    carrier.on("data", onData).once("end", gone).once("close", gone).on("error", ignore);
    carrier.resume(); // a reused carrier was paused on its way back
  }

  private assigned(carrier: Duplex, assignment: ReverseAssignment, doneOwed: boolean): void {
    const stream = new DirectStream(carrier, assignment.originAddress, assignment.listenerPort, {
      window: this.window,
      reuse: this.reusable ? this.back : undefined,
      deferDone: this.earlyReuse,
      doneOwed,
      holdFirstData: true,
    });
    // Its failure reaches whoever listens (splice); unheard, it must not end the process.
    stream.on("error", () => {});
    this.carried.add(stream);
    // Opening a replacement is work on this process's loop: it waits until this connection is over,
    // unless the waiting streams run low (a burst), when it cannot wait.
    stream.once("close", () => {
      this.carried.delete(stream);
      this.refillSoon();
    });
    carrier.resume();
    if (this.waiting.size < Math.ceil(this.size.base / 2)) this.refillSoon();
    this.onArrival({ ...assignment, stream });
  }
}
