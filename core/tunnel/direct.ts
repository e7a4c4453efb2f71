// The host's end of direct streams (see core/protocol/direct-streams.ts): a stream into the cluster as a Duplex
// over one port-forward stream to the shadow's direct port. It behaves like the SSH channels it
// stands in for: half-close both ways (end() sends EOF; 'end' is the far side's EOF), eof() and
// close() as splice uses them, and back-pressure by per-stream credit.

import { Duplex } from "node:stream";
import {
  CreditReturn,
  DIRECT_WINDOW,
  DirectFrameReader,
  DirectProtocolError,
  FrameType,
  encodeDataFrames,
  encodeFrameHeader,
  encodePreamble,
  LATE_EOF_HOLD_MS,
} from "../protocol/direct-streams.ts";
import { StreamOpenError } from "./stream-error.ts";


const READ_HIGH_WATER_MARK = 256 * 1024;

/**
 * Runs `then` once the event loop's next poll is behind: Bun reads a FIN that came with data in the
 * poll after the one that read the data, after this turn's immediates (measured: data, microtasks,
 * immediates, end, then the immediates queued by those).
 */
function afterNextPoll(then: () => void): void {
  setImmediate(() => setImmediate(then));
}

/** Opens port-forward streams to another port of the shadow's pod, on the link's own connection. */
export interface SiblingStreams {
  /** A stream to `port`; `first` is written on it before anything else (with its opening, if it can). */
  open(port: number, first?: Buffer): Duplex;
  readonly accepting: boolean;
}

export interface DirectEndpoint {
  port: number;
  token: Buffer;
}

/**
 * Streams to the shadow's direct port opened ahead of need. Opening one is the slow part of a new
 * connection (the container runtime sets up the stream pair and dials the shadow from inside the
 * pod's network namespace: 1-2 ms on the test node, more under load); a waiting one leaves only
 * the shadow's dial to the target on the connection's path. Idle ones are replaced well before
 * the shadow would drop them (DIRECT_IDLE_MS).
 *
 * Refilling is kept off the connections' path: opening streams costs our event loop, the API
 * server, the kubelet, the runtime and the shadow CPU on the very path a connection's first bytes
 * take. So the pool refills in batches, once it is down to `lowWater`, and only after the stream
 * that took it there has had its first answer (or closed): measured, a refill sent between a
 * connection's preamble and its first data was most of what a new connection cost over a request
 * on an open one. Only an empty pool refills at once (the next connection would open its own).
 */
export class CarrierPool {
  private readonly idle: IdleCarrier[] = [];
  private readonly timer: ReturnType<typeof setInterval>;
  private refillPending = false;
  private closed = false;

  constructor(
    private readonly siblings: SiblingStreams,
    private readonly port: number,
    private readonly size = CARRIER_POOL_SIZE,
    private readonly lowWater = CARRIER_POOL_LOW_WATER,
  ) {
    this.refill();
    this.timer = setInterval(() => this.renew(), CARRIER_IDLE_MS / 2);
    this.timer.unref?.();
  }

  /**
   * A stream to the direct port with `first` written on it: a waiting one if there is one, the one
   * back most recently first (so those a burst left over age, and `renew` lets them go). With
   * `hold`, a waiting one keeps `first` corked (`held`): its taker uncorks it with its first bytes.
   * What the carrier's last connection still owes (its EOF, then its DONE) leaves in the same
   * write, just before `first`.
   */
  take(first: Buffer, hold = false): TakenCarrier {
    const entry = this.idle.pop();
    let carrier: Duplex;
    if (entry) {
      carrier = entry.carrier;
      carrier.off("close", entry.drop).off("end", entry.drop).off("error", entry.drop).off("data", entry.collect);
      carrier.pause();
      clearTimeout(entry.eofOwed);
      if (entry.leftovers.length > 0) carrier.unshift(Buffer.concat(entry.leftovers));
      if (hold) carrier.cork();
      const owed = [
        ...(entry.eofOwed !== undefined ? [encodeFrameHeader(FrameType.Eof, 0)] : []),
        ...(entry.doneOwed ? [encodeFrameHeader(FrameType.Done, 0)] : []),
      ];
      carrier.write(owed.length > 0 ? Buffer.concat([...owed, first]) : first);
    } else carrier = this.siblings.open(this.port, first);
    if (this.idle.length <= this.lowWater) this.refillAfter(carrier);
    return { carrier, held: hold && entry !== undefined };
  }

  /**
   * A reusable stream whose connection has ended cleanly: it waits again (or closes, past the
   * bound). `eofOwed`: that connection's EOF was kept (lateEof), to leave with the next use, or
   * alone after LATE_EOF_HOLD_MS.
   */
  give(carrier: Duplex, doneOwed: boolean, eofOwed = false): void {
    if (this.closed || this.idle.length >= CARRIER_POOL_MAX || !this.siblings.accepting) {
      // Not kept: the connection still ends cleanly at the shadow (its target gets a FIN, not a reset).
      if (eofOwed && !carrier.destroyed && !carrier.writableEnded) return void carrier.end(encodeFrameHeader(FrameType.Eof, 0));
      return void carrier.destroy();
    }
    this.keep(carrier, doneOwed, eofOwed);
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    for (const { carrier, eofOwed } of this.idle.splice(0)) {
      clearTimeout(eofOwed);
      carrier.destroy();
    }
  }

  /** Refills once `carrier` has had its first answer or closed; at once when nothing waits. */
  private refillAfter(carrier: Duplex): void {
    if (this.refillPending) return;
    this.refillPending = true;
    const go = () => {
      carrier.off("data", go).off("close", go);
      // After the answer has gone on its way: setImmediate runs once this turn's I/O is done.
      setImmediate(() => {
        this.refillPending = false;
        this.refill();
      });
    };
    if (this.idle.length === 0) go();
    else carrier.once("data", go).once("close", go);
  }

  private refill(): void {
    while (!this.closed && this.siblings.accepting && this.idle.length < this.size) {
      let carrier: Duplex;
      try {
        carrier = this.siblings.open(this.port);
      } catch {
        return; // the connection is closing; the link will notice
      }
      this.keep(carrier);
    }
  }

  /**
   * A waiting stream keeps being read, so that its end is seen while it waits (the shadow closed
   * it: a late reset of its last target, or the idle limit), not by the connection that takes it.
   * What arrives is its last connection's CREDIT and BLOCKED, kept for its next taker to drop.
   */
  private keep(carrier: Duplex, doneOwed = false, eofOwed = false): void {
    const entry: IdleCarrier = { carrier, since: Date.now(), doneOwed, eofOwed: undefined, leftovers: [], drop: () => {}, collect: () => {} };
    entry.drop = () => {
      const at = this.idle.indexOf(entry);
      if (at >= 0) this.idle.splice(at, 1);
      clearTimeout(entry.eofOwed);
      carrier.destroy();
    };
    if (eofOwed) {
      entry.eofOwed = setTimeout(() => {
        entry.eofOwed = undefined;
        if (!carrier.destroyed) carrier.write(encodeFrameHeader(FrameType.Eof, 0));
      }, LATE_EOF_HOLD_MS);
    }
    let kept = 0;
    entry.collect = (chunk: Buffer) => {
      entry.leftovers.push(chunk);
      // A few frames at most; more is a shadow that does not follow the protocol.
      if ((kept += chunk.length) > MAX_IDLE_LEFTOVERS) entry.drop();
    };
    carrier.once("close", entry.drop).once("end", entry.drop).on("error", entry.drop).on("data", entry.collect);
    carrier.resume();
    this.idle.push(entry);
  }

  private renew(): void {
    const stale = Date.now() - CARRIER_IDLE_MS;
    while (this.idle.length > 0 && this.idle[0]!.since < stale) this.idle.shift()!.drop();
    this.refill();
  }
}

interface IdleCarrier {
  carrier: Duplex;
  since: number;
  /** Its last connection's DONE is still to be sent (in front of its next preamble). */
  doneOwed: boolean;
  /** Its last connection's EOF was kept: it leaves in front of the DONE, or alone when this fires. */
  eofOwed: ReturnType<typeof setTimeout> | undefined;
  /** What arrived while it waited. */
  leftovers: Buffer[];
  drop: () => void;
  collect: (chunk: Buffer) => void;
}

const MAX_IDLE_LEFTOVERS = 64 * 1024;

/** A stream from the pool, and whether what was written on it is held back (corked) for its taker. */
export interface TakenCarrier {
  carrier: Duplex;
  held: boolean;
}

/** Streams kept waiting per link: enough for a client that opens connections back to back. */
export const CARRIER_POOL_SIZE = 4;
/** Bound on waiting streams, those back from their connections included. */
export const CARRIER_POOL_MAX = 32;
/** The pool refills (to CARRIER_POOL_SIZE, in one batch) once this few are left. */
export const CARRIER_POOL_LOW_WATER = 2;
/** A waiting stream is replaced after this long, well before the shadow would drop them. */
export const CARRIER_IDLE_MS = 60_000;

/**
 * Starts a direct stream: `open` gets the preamble to send first and returns the stream it rides.
 * Bytes may be written at once (the shadow holds them until the target accepts); `opened` settles
 * when the shadow has connected to host:port, or says why not.
 */
export function startDirectStream(
  open: (preamble: Buffer) => TakenCarrier,
  endpoint: DirectEndpoint,
  host: string,
  port: number,
  options: Omit<DirectStreamOptions, "heldPreamble"> = {},
): DirectStream {
  const window = options.window ?? DIRECT_WINDOW;
  const preamble = encodePreamble({ token: endpoint.token, host, port, window, reusable: options.reuse !== undefined });
  const { carrier, held } = open(preamble);
  return new DirectStream(carrier, host, port, { ...options, heldPreamble: held });
}

/** How long a held preamble waits for the connection's first bytes to leave with it. */
export const PREAMBLE_HOLD_MS = 1;

export interface DirectStreamOptions {
  /** Initial credit, each way. */
  window?: number;
  /** Given for a reusable stream ("KTD2", "KTR2"): where its carrier goes after a clean end. */
  reuse?: ReturnCarrier;
  /**
   * A clean end hands the carrier back with its DONE still owed: the DONE then leaves with the
   * carrier's next use instead of crossing every hop as a message of its own. Only with a shadow
   * that takes a stream back before its DONE ("early-reuse"): an older one keeps relaying the
   * finished connection until the DONE, and a late reset of its target would end the stream.
   */
  deferDone?: boolean;
  /** The carrier's last connection still owes the shadow its DONE: it leaves with this stream's first frame. */
  doneOwed?: boolean;
  /**
   * With deferDone, to a shadow with "late-eof": our EOF, when the shadow's came first (the target
   * has answered and closed; the client closes after it), goes back with the carrier to leave in
   * front of its next use (CarrierPool.take), or alone after LATE_EOF_HOLD_MS. Only the target's
   * reading end waits for it: its side has ended.
   */
  lateEof?: boolean;
  /**
   * The carrier is corked with the preamble on it: the first bytes written leave with it, in one
   * piece through the port-forward's hops (or it leaves alone after PREAMBLE_HOLD_MS).
   */
  heldPreamble?: boolean;
  /**
   * The first data this stream sends waits until the event loop's next poll is behind (afterNextPoll):
   * a server that answers and closes (HTTP without keep-alive) has then ended this stream, and the
   * answer and the EOF (and a DONE still owed) cross every hop as one message instead of two.
   * For streams whose far end is the client (reverse streams): their first data is an answer.
   */
  holdFirstData?: boolean;
}

/**
 * Where a reusable stream's carrier goes once its connection has ended cleanly (see DONE in
 * direct-streams.ts): back to the pool it came from, paused, with whatever followed the end put
 * back on it for its next owner, whether the DONE is still owed (deferDone), and whether the EOF
 * is (lateEof).
 */
export type ReturnCarrier = (carrier: Duplex, doneOwed: boolean, eofOwed: boolean) => void;

export class DirectStream extends Duplex {
  readonly opened: Promise<void>;
  private markOpened!: () => void;
  private failOpen!: (error: Error) => void;
  private isOpen = false;
  private sendCredit: number;
  private starved = false;
  /** A write waiting for credit: what is left of it, and its callback. */
  private waiting: { chunks: Buffer[]; callback: (error?: Error | null) => void } | undefined;
  private readonly incoming: CreditReturn;
  private pushed = 0;
  private eofSent = false;
  private eofReceived = false;
  /** Reusable streams: the connection ended cleanly, and the carrier went back to its pool. */
  private handedBack = false;
  private readonly reader: DirectFrameReader;
  private readonly onCarrierData = (chunk: Buffer) => {
    try {
      this.reader.push(chunk);
    } catch (error) {
      this.destroy(error as Error);
    }
  };
  private readonly onCarrierError = (error: Error) => this.lost(error);
  private readonly onCarrierEnd = () => {
    if (!(this.eofSent && this.eofReceived)) this.lost(new Error("the shadow closed the stream"));
  };
  private readonly onCarrierClose = () => {
    if (!this.destroyed && !(this.eofSent && this.eofReceived)) this.lost(new Error("the stream to the shadow closed"));
  };

  private readonly reuse: ReturnCarrier | undefined;
  private readonly deferDone: boolean;
  private readonly lateEof: boolean;
  /** Our EOF was kept for the carrier's next use (lateEof). */
  private eofHeld = false;
  /** The last connection's DONE, corked on the carrier until this stream's first frame joins it. */
  private doneHeld = false;
  private preambleTimer: ReturnType<typeof setTimeout> | undefined;
  /** holdFirstData: "armed" until the first data is written, "holding" until the next poll is behind it. */
  private firstDataHold: "armed" | "holding" | "over";

  constructor(
    private readonly carrier: Duplex,
    private readonly host: string,
    private readonly port: number,
    options: DirectStreamOptions = {},
  ) {
    super({ allowHalfOpen: true, readableHighWaterMark: READ_HIGH_WATER_MARK });
    const window = options.window ?? DIRECT_WINDOW;
    this.reuse = options.reuse;
    this.deferDone = options.deferDone ?? false;
    this.lateEof = this.deferDone && this.reuse !== undefined && (options.lateEof ?? false);
    if (options.doneOwed) {
      carrier.cork();
      carrier.write(encodeFrameHeader(FrameType.Done, 0));
      this.doneHeld = true;
    }
    if (options.heldPreamble) this.preambleTimer = setTimeout(() => this.releasePreamble(), PREAMBLE_HOLD_MS);
    this.firstDataHold = options.holdFirstData ? "armed" : "over";
    this.sendCredit = window;
    this.incoming = new CreditReturn(window);
    this.opened = new Promise((resolve, reject) => {
      this.markOpened = resolve;
      this.failOpen = reject;
    });
    this.opened.catch(() => {}); // a failed open is reported to whoever awaits it, not as unhandled
    this.reader = new DirectFrameReader({
      data: (payload) => this.onData(payload),
      eof: () => {
        this.eofReceived = true;
        this.push(null);
        this.finishIfDone();
      },
      // Before OPENED (or REFUSED), CREDIT and BLOCKED are a reused stream's leftovers of its last
      // connection: the shadow sends neither for a connection it has not opened yet.
      credit: (bytes) => {
        if (!this.isOpen) return;
        this.sendCredit += bytes;
        this.starved = false;
        this.flushWaiting();
      },
      blocked: () => {
        if (this.isOpen) this.sendCreditFrame(this.incoming.blocked(this.pushed - this.readableLength));
      },
      opened: () => {
        this.isOpen = true;
        this.markOpened();
      },
      refused: (reason, message) => {
        const error = new StreamOpenError(host, port, reason, message);
        this.failOpen(error);
        this.destroy(error);
      },
      done: () => {
        throw new DirectProtocolError("DONE from the shadow");
      },
    });
    carrier.on("data", this.onCarrierData).on("error", this.onCarrierError).on("end", this.onCarrierEnd).on("close", this.onCarrierClose);
    carrier.resume(); // a reused carrier was paused while it waited
  }

  /** SSH channel vocabulary, so splice() treats a direct stream like a channel: half-close. */
  eof(): void {
    this.end();
  }

  /** SSH channel vocabulary: close both ways now. */
  close(): void {
    this.destroy(); // _destroy ends the carrier, or leaves a handed-back one to its pool
  }

  /** The connection ended cleanly: the carrier leaves this stream (which may still hold unread data) for its pool. */
  private handBack(): void {
    this.handedBack = true;
    const rest = this.reader.stop();
    this.carrier.off("data", this.onCarrierData).off("error", this.onCarrierError).off("end", this.onCarrierEnd).off("close", this.onCarrierClose);
    this.carrier.pause();
    if (rest.length > 0) this.carrier.unshift(rest);
    this.reuse!(this.carrier, this.deferDone, this.eofHeld);
  }

  private lost(error: Error): void {
    if (this.destroyed) return;
    if (!this.isOpen) {
      const failure = new StreamOpenError(this.host, this.port, "failed", error.message);
      this.failOpen(failure);
      return void this.destroy(failure);
    }
    this.destroy(error);
  }

  private onData(payload: Buffer): void {
    if (this.eofReceived || !this.incoming.arrived(payload.length)) {
      this.destroy(new Error("the shadow sent more than its credit"));
      return;
    }
    this.pushed += payload.length;
    this.push(payload);
    this.returnCredit();
  }

  /** Credit goes back for what our reader has taken out of the buffer. */
  private returnCredit(): void {
    this.sendCreditFrame(this.incoming.due(this.pushed - this.readableLength));
  }

  /** Credit only matters while the shadow may still send: none after its EOF (or after our end). */
  private sendCreditFrame(bytes: number): void {
    if (bytes > 0 && !this.eofReceived && !this.carrier.writableEnded && !this.carrier.destroyed) {
      this.toCarrier(encodeFrameHeader(FrameType.Credit, bytes));
    }
  }

  override _read(): void {
    this.returnCredit();
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

  /** Sends what the credit allows; the rest waits for CREDIT, and so does the callback. */
  private send(chunks: Buffer[], callback: (error?: Error | null) => void): void {
    chunks = chunks.filter((chunk) => chunk.length > 0); // splice's empty writes only mark a point in the queue
    const now: Buffer[] = [];
    let room = this.sendCredit;
    let i = 0;
    for (; i < chunks.length && room > 0; i++) {
      const chunk = chunks[i]!;
      if (chunk.length <= room) {
        now.push(chunk);
        room -= chunk.length;
      } else {
        now.push(chunk.subarray(0, room));
        chunks[i] = chunk.subarray(room);
        room = 0;
        break;
      }
    }
    const rest = chunks.slice(i);
    this.sendCredit = room;
    if (now.length > 0) {
      if (this.firstDataHold === "armed") this.holdFirstData();
      const frames = encodeDataFrames(now);
      this.carrier.cork();
      for (let f = 0; f < frames.length - 1; f++) this.toCarrier(frames[f]!);
      // Held, the write is done for our writer now: its end (and so our EOF) must be free to join it.
      const held = this.firstDataHold === "holding";
      if (rest.length === 0 && !held) this.toCarrier(frames[frames.length - 1]!, (error?: Error | null) => callback(error));
      else this.toCarrier(frames[frames.length - 1]!);
      this.carrier.uncork();
      this.releasePreamble();
      if (rest.length === 0 && held) callback();
    }
    if (rest.length > 0) {
      this.waiting = { chunks: rest, callback };
      if (!this.starved && !this.carrier.writableEnded && !this.carrier.destroyed) {
        this.starved = true; // told once per wait: the shadow may answer with a bigger window
        this.toCarrier(encodeFrameHeader(FrameType.Blocked, 0));
      }
    } else if (now.length === 0) callback();
  }

  private flushWaiting(): void {
    const waiting = this.waiting;
    if (!waiting || this.sendCredit <= 0) return;
    this.waiting = undefined;
    this.send(waiting.chunks, waiting.callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.eofSent = true;
    if (this.lateEof && this.eofReceived && !this.carrier.destroyed) {
      this.eofHeld = true;
      this.finishIfDone();
      return callback();
    }
    // EOF and (when it is due and not deferred) DONE in one write.
    this.carrier.cork();
    this.toCarrier(encodeFrameHeader(FrameType.Eof, 0), (error?: Error | null) => callback(error));
    this.finishIfDone();
    this.carrier.uncork();
    this.releasePreamble();
    this.releaseFirstData();
  }

  /** Corks the carrier until the next poll is behind, when a FIN that came with the data has ended us. */
  private holdFirstData(): void {
    this.firstDataHold = "holding";
    this.carrier.cork();
    afterNextPoll(() => this.releaseFirstData());
  }

  private releaseFirstData(): void {
    if (this.firstDataHold !== "holding") return;
    this.firstDataHold = "over";
    if (this.carrier.writableCorked > 0) this.carrier.uncork();
  }

  /** Every frame for the shadow: after a DONE still owed, which leaves with the first of them. */
  private toCarrier(frame: Buffer, callback?: (error?: Error | null) => void): void {
    this.carrier.write(frame, callback);
    if (this.doneHeld) {
      this.doneHeld = false;
      this.carrier.uncork();
    }
  }

  /** A held preamble leaves (with whatever was written after it). */
  private releasePreamble(): void {
    if (this.preambleTimer === undefined) return;
    clearTimeout(this.preambleTimer);
    this.preambleTimer = undefined;
    if (this.carrier.writableCorked > 0) this.carrier.uncork();
  }

  /**
   * Both ways are over: end the port-forward stream (the shadow ends its side too), or, reusable,
   * say DONE and hand the carrier back for the next connection.
   */
  private finishIfDone(): void {
    if (!(this.eofSent && this.eofReceived) || this.handedBack) return;
    if (!this.reuse) return void this.carrier.end();
    if (this.carrier.destroyed) return;
    if (!this.deferDone) this.toCarrier(encodeFrameHeader(FrameType.Done, 0));
    this.handBack();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.releasePreamble();
    this.releaseFirstData();
    if (!this.isOpen && !error) this.failOpen(new StreamOpenError(this.host, this.port, "failed", "closed before it opened"));
    // A carrier handed back belongs to its pool.
    if (!this.handedBack) {
      if (this.eofSent && this.eofReceived) this.carrier.end();
      else this.carrier.destroy();
    }
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.callback(error ?? new Error("stream closed"));
    callback(error);
  }
}
