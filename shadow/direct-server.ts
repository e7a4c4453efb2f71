// The shadow's end of direct streams (see core/protocol/direct-streams.ts): a loopback listener that
// the host reaches through port-forward streams. Each connection names its target after a token
// only the authenticated host knows; the shadow connects and then relays, framing both ways, with
// per-stream credit so it never has to stop reading the port-forward side.

import net from "node:net";
import { randomBytes, timingSafeEqual } from "node:crypto";
import {
  CreditReturn,
  DIRECT_IDLE_MS,
  DIRECT_TOKEN_BYTES,
  DirectFrameReader,
  DirectProtocolError,
  FrameType,
  OwedDone,
  decodePreamble,
  directFramePool,
  packDataFrames,
  encodeFrameHeader,
  encodeRefused,
  type DirectTarget,
} from "../core/protocol/direct-streams.ts";
import { streamFailureOf, type StreamFailure } from "../core/protocol/tunnel.ts";
import type { FramePool } from "../core/protocol/frame-packing.ts";
import type { ShadowLog } from "./log.ts";
import { uncorkWithFirstBytes } from "./first-bytes.ts";
import { SerialWriter } from "./serial-writer.ts";
import { StreamListener } from "./stream-listener.ts";

export interface DirectServerOptions {
  log: ShadowLog;
  /** Where to listen; only the port-forward (which connects to the pod's loopback) needs to reach it. */
  host?: string;
  port?: number;
  /** Bound on connecting to a target. */
  connectTimeoutMs?: number;
  /** Why a target refused, in words for the host (the same sentences the SSH path uses). */
  explain(reason: StreamFailure, host: string, error: Error): string;
}

export class DirectServer {
  readonly token = randomBytes(DIRECT_TOKEN_BYTES);
  /**
   * Frame buffers, reused once written, shared by every relay: a fresh buffer per frame cost more
   * (page faults, zeroing) than the copy into it; reusing them took about a tenth off the relay's
   * CPU per byte.
   */
  private readonly framePool = directFramePool();
  private listener!: StreamListener<NonNullable<ReturnType<typeof decodePreamble>>>;

  private constructor(private readonly options: DirectServerOptions) {}

  static async start(options: DirectServerOptions): Promise<DirectServer> {
    const direct = new DirectServer(options);
    direct.listener = await StreamListener.start({
      kind: "direct",
      log: options.log,
      host: options.host,
      port: options.port,
      decode: decodePreamble,
      // A stream the host opened ahead of need waits silent; a preamble once begun must finish soon.
      idleMs: DIRECT_IDLE_MS,
      accepted: (socket, { target, rest }, id) => {
        socket.pause();
        if (!timingSafeEqual(target.token, direct.token)) return "wrong token";
        // A reusable stream reads its next preamble as soon as this connection has ended cleanly,
        // its DONE still to come in front of that preamble.
        const reuse = target.reusable ? (rest: Buffer) => direct.listener.readPreamble(socket, id, rest, true) : undefined;
        direct.connect(id, socket, target, rest, reuse);
        return undefined;
      },
    });
    return direct;
  }

  get port(): number {
    return this.listener.port;
  }

  close(): void {
    this.listener.close();
  }

  private connect(id: number, socket: net.Socket, { host, port, window }: DirectTarget, early: Buffer, reuse: ((rest: Buffer) => void) | undefined): void {
    const { log } = this.options;
    const target = net.connect({ host, port, allowHalfOpen: true, noDelay: true });
    const timer = setTimeout(
      () => target.destroy(Object.assign(new Error("no answer"), { code: "ETIMEDOUT" })),
      this.options.connectTimeoutMs ?? 10_000,
    );
    const failed = (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.off("close", streamGone);
      const reason = streamFailureOf(error.code);
      socket.end(encodeRefused(reason, this.options.explain(reason, host, error)));
      log.info("stream.failed", { direct: id, to: `${host}:${port}`, reason, error: error.code ?? error.message });
    };
    // The stream gone before the target answered: nobody is left to answer.
    const streamGone = () => {
      if (target.connecting) target.destroy();
    };
    target.once("error", failed);
    target.once("connect", () => {
      clearTimeout(timer);
      target.off("error", failed);
      socket.off("close", streamGone);
      if (socket.destroyed) return void target.destroy();
      target.setNoDelay(true);
      // A host that sent bytes with its preamble is not waiting for OPENED: it leaves with the
      // target's first answer.
      const hold = early.length > 0;
      if (hold) socket.cork();
      socket.write(encodeFrameHeader(FrameType.Opened, 0));
      relay({
        socket,
        target,
        window,
        early,
        framePool: this.framePool,
        reset: (why) => log.debug("stream.reset", { direct: id, to: `${host}:${port}`, why }),
        reuse,
      });
      if (hold) uncorkWithFirstBytes(socket, target);
      log.debug("stream.open", { direct: id, to: `${host}:${port}` });
    });
    socket.once("close", streamGone);
  }
}

export interface RelayOptions {
  /** The port-forward side: frames. */
  socket: net.Socket;
  /** The other side: plain bytes. */
  target: net.Socket;
  /** Credit each side starts with. */
  window: number;
  /** What arrived on `socket` after the preamble. */
  early: Buffer;
  framePool: FramePool;
  reset(why: string): void;
  /**
   * Given for a reusable stream: as soon as the connection has ended cleanly (EOF both ways),
   * `socket` is handed back (paused, with every listener of the relay's removed) with the bytes
   * not parsed yet, its DONE still owed ("early-reuse" in tunnel.ts): it comes later, in front of
   * the stream's next use. `eofOwed`: the EOF of this connection was kept (holdLateEof) and is the
   * next owner's to send, first.
   */
  reuse?(rest: Buffer, eofOwed: boolean): void;
  /**
   * With reuse: a target that ends its side after the host's side has ended (its EOF then only
   * tells the host's reading end) hands the stream back with that EOF owed, instead of sending it
   * as a message of its own ("late-eof", tunnel.ts).
   */
  holdLateEof?: boolean;
  /**
   * The stream's last connection still owes its DONE: until it comes, the host's frames are that
   * connection's leftovers (CREDIT, BLOCKED), dropped.
   */
  donePending?: boolean;
}

/**
 * Carries frames from `socket` (the port-forward side) to `target` and bytes from `target` back as
 * frames, each way under the other side's credit. Ends each way on EOF; resets both on any error.
 * (Exported for shadow/reverse-server.ts: a reverse stream relays exactly the same way.)
 */
export function relay({ socket, target, window, early, framePool, reset, reuse, donePending, holdLateEof }: RelayOptions): void {
  let sendCredit = window;
  const queued: Buffer[] = []; // target bytes waiting for credit
  let targetEnded = false;
  let eofSent = false;
  let eofReceived = false;
  /** Our EOF was kept for the stream's next owner (holdLateEof). */
  let eofHeld = false;
  let written = 0;
  const incoming = new CreditReturn(window);
  const lastDone = new OwedDone(donePending === true);

  let handedOn = false; // a reusable stream, back with its owner for the next connection
  const abort = (why: string) => {
    // After both EOFs the connection is over: the target's late errors (a reset after its FIN, a
    // write it never read) are no business of the stream, nor of its next use.
    if (handedOn || (eofSent && eofReceived)) return void target.destroy();
    if (socket.destroyed && target.destroyed) return;
    reset(why);
    socket.destroy();
    target.destroy();
  };

  // ---- port-forward side -> target -----------------------------------------------------------
  // Credit only matters while the host may still send: none after its EOF (or after our end).
  const sendCreditFrame = (bytes: number) => {
    if (bytes > 0 && !eofReceived && !socket.writableEnded && !socket.destroyed) socket.write(encodeFrameHeader(FrameType.Credit, bytes));
  };
  const toTarget = new SerialWriter(target);
  const returnCredit = () => sendCreditFrame(incoming.due(written - toTarget.pending));
  let starved = false; // we told the host we are BLOCKED and wait for credit
  const reader = new DirectFrameReader({
    data: (payload) => {
      if (eofReceived || !incoming.arrived(payload.length)) throw new DirectProtocolError("DATA beyond the credit given");
      written += payload.length;
      toTarget.write(payload);
    },
    eof: () => {
      eofReceived = true;
      toTarget.end();
      finishIfDone();
    },
    credit: (bytes) => {
      sendCredit += bytes;
      starved = false;
      flushQueued();
    },
    blocked: () => sendCreditFrame(incoming.blocked(written - toTarget.pending)),
    opened: () => {
      throw new DirectProtocolError("OPENED from the host");
    },
    refused: () => {
      throw new DirectProtocolError("REFUSED from the host");
    },
    // The host says DONE only after both EOFs, and by then the stream has left this relay (a
    // reusable one at once, finishIfDone; another one ends): a DONE here is always early.
    // (Until both EOFs, CREDIT and BLOCKED it sent before it saw our EOF may still come: harmless.)
    done: () => {
      throw new DirectProtocolError("DONE before both EOFs");
    },
  });
  const onSocketData = (chunk: Buffer) => {
    try {
      const fresh = lastDone.pass(chunk);
      if (fresh === undefined) return;
      reader.push(fresh);
    } catch (error) {
      return abort(`protocol: ${(error as Error).message}`);
    }
    returnCredit();
  };
  toTarget.onFlushed = returnCredit;

  // ---- target -> port-forward side ------------------------------------------------------------
  const send = (chunk: Buffer) => {
    // Header and payload in one write: written apart, the 5-byte header would leave as a segment
    // of its own and become a frame of its own at every hop of the port-forward. The socket holds
    // each buffer until it has written it; then it serves the next frame.
    for (const frame of packDataFrames([chunk], framePool)) socket.write(frame, () => framePool.give(frame));
    sendCredit -= chunk.length;
  };
  const flushQueued = () => {
    while (queued.length > 0 && sendCredit > 0) {
      const head = queued[0]!;
      if (head.length <= sendCredit) {
        queued.shift();
        send(head);
      } else {
        queued[0] = head.subarray(sendCredit);
        send(head.subarray(0, sendCredit));
      }
    }
    if (queued.length === 0) {
      if (targetEnded) sendEof();
      else target.resume();
    } else if (!starved && !socket.writableEnded && !socket.destroyed) {
      starved = true;
      socket.write(encodeFrameHeader(FrameType.Blocked, 0));
    }
  };
  const sendEof = () => {
    if (eofSent || socket.destroyed) return;
    eofSent = true;
    if (holdLateEof && reuse && eofReceived) eofHeld = true;
    else socket.write(encodeFrameHeader(FrameType.Eof, 0));
    finishIfDone();
  };
  target.on("data", (chunk: Buffer) => {
    if (queued.length === 0 && chunk.length <= sendCredit) return send(chunk);
    queued.push(chunk);
    target.pause();
    flushQueued();
  });
  target.once("end", () => {
    targetEnded = true;
    if (queued.length === 0) sendEof();
  });

  const finishIfDone = () => {
    if (!(eofSent && eofReceived)) return;
    // Both ways are over: let the target's last bytes go, then close it; the stream ends with us,
    // or (reusable) goes back at once, its DONE owed.
    if (target.writableFinished) target.destroy();
    else target.once("finish", () => target.destroy());
    if (!reuse) socket.end();
    else if (!handedOn) release(reader.stop());
  };

  // ---- endings ----------------------------------------------------------------------------------
  // The port-forward side ending before both EOFs means the host (or its link) is gone: reset.
  // (After both EOFs the host ends a stream it does not reuse: nothing to do then.)
  const onSocketEnd = () => {
    if (!(eofSent && eofReceived)) abort("the host ended the stream before both EOFs");
  };
  const onSocketClose = () => {
    if (!target.destroyed && !(eofSent && eofReceived)) target.destroy();
  };
  socket.once("end", onSocketEnd).once("close", onSocketClose);
  target.on("error", (error: NodeJS.ErrnoException) => abort(`target: ${error.code ?? error.message}`));
  target.once("close", () => {
    if (!(eofSent && eofReceived)) abort("the target closed before both EOFs");
  });

  const release = (rest: Buffer) => {
    handedOn = true;
    socket.off("data", onSocketData).off("end", onSocketEnd).off("close", onSocketClose);
    socket.pause();
    reuse!(rest, eofHeld);
  };

  socket.on("data", onSocketData);
  if (early.length) onSocketData(early);
  socket.resume();
}
