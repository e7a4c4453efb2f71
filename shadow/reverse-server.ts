// The shadow's end of reverse streams (see core/protocol/reverse-streams.ts): a loopback listener
// the host reaches through port-forward streams it opens ahead of need. Each waiting stream belongs
// to the SSH connection whose token it presented; that connection's remote listeners hand cluster
// connections to its waiting streams, and fall back to SSH channels when none is waiting.

import net from "node:net";
import { randomBytes, timingSafeEqual } from "node:crypto";
import { DIRECT_TOKEN_BYTES, FrameType, LATE_EOF_HOLD_MS, OwedDone, directFramePool, encodeFrameHeader } from "../core/protocol/direct-streams.ts";
import { REVERSE_IDLE_MS, decodeReversePreamble, encodeAssignment } from "../core/protocol/reverse-streams.ts";
import { relay } from "./direct-server.ts";
import type { ShadowLog } from "./log.ts";
import { uncorkWithFirstBytes } from "./first-bytes.ts";
import { StreamListener } from "./stream-listener.ts";

export interface ReverseServerOptions {
  log: ShadowLog;
  /** Where to listen; only the port-forward (which connects to the pod's loopback) needs to reach it. */
  host?: string;
  port?: number;
  /** How long a stream may wait for a connection (default REVERSE_IDLE_MS). */
  idleMs?: number;
}

/** A waiting reverse stream, taken for one cluster connection. */
export interface ReverseCarrier {
  /** Carries `client` (a connection accepted on listener `listenerPort`) to the host. */
  carry(client: net.Socket, listenerPort: number): void;
}

interface Waiting {
  /** The SSH connection whose listeners the stream serves. */
  connection: number;
  socket: net.Socket;
  window: number;
  /** Waits again after each connection that ends cleanly ("KTR2"). */
  reusable: boolean;
  /** Its host takes a late EOF in front of the next assignment ("KTR3"). */
  lateEof: boolean;
  /** Back before the host's DONE of its last connection ("early-reuse"): that DONE, awaited. */
  lastDone: OwedDone;
  /** Back with its last connection's EOF kept: sent in front of the next assignment, or alone when this fires. */
  eofOwed: ReturnType<typeof setTimeout> | undefined;
  timer: ReturnType<typeof setTimeout>;
  /** Stops watching the stream as a waiting one. */
  release(): void;
}

export class ReverseServer {
  /** One token per SSH connection that asked; a stream presenting it waits for that connection's listeners. */
  private readonly tokens = new Map<number, Buffer>();
  private readonly waiting = new Map<number, Waiting[]>();
  /** Frame buffers the relays reuse once written (the direct server keeps its own). */
  private readonly framePool = directFramePool();
  private listener!: StreamListener<NonNullable<ReturnType<typeof decodeReversePreamble>>>;

  private constructor(private readonly options: ReverseServerOptions) {}

  static async start(options: ReverseServerOptions): Promise<ReverseServer> {
    const reverse = new ReverseServer(options);
    reverse.listener = await StreamListener.start({
      kind: "reverse",
      log: options.log,
      host: options.host,
      port: options.port,
      decode: decodeReversePreamble,
      accepted: (socket, { preamble, rest }) => {
        const connection = reverse.connectionOf(preamble.token);
        if (connection === undefined) return "wrong token";
        // Nothing may follow the preamble until the stream is assigned: the host waits for us.
        if (rest.length > 0) return "data on a waiting reverse stream";
        reverse.wait(connection, socket, preamble.window, { reusable: preamble.reusable === true, lateEof: preamble.lateEof === true });
        return undefined;
      },
    });
    return reverse;
  }

  get port(): number {
    return this.listener.port;
  }

  /** The token for `connection`'s reverse streams (the same one if it asks again). */
  tokenFor(connection: number): Buffer {
    let token = this.tokens.get(connection);
    if (!token) this.tokens.set(connection, (token = randomBytes(DIRECT_TOKEN_BYTES)));
    return token;
  }

  /**
   * A stream of `connection`'s that waits for a cluster connection, if there is one: one that owes
   * its last connection's EOF first (it then leaves with this assignment), else the longest waiting.
   */
  take(connection: number): ReverseCarrier | undefined {
    const queue = this.waiting.get(connection);
    if (!queue?.length) return undefined;
    const owing = queue.findLastIndex((waiting) => waiting.eofOwed !== undefined);
    const entry = owing >= 0 ? queue.splice(owing, 1)[0] : queue.shift();
    if (!entry) return undefined;
    entry.release();
    return { carry: (client, listenerPort) => this.carry(entry, client, listenerPort) };
  }

  /** The connection is gone: its token stops working and its waiting streams close. */
  forget(connection: number): void {
    this.tokens.delete(connection);
    for (const entry of this.waiting.get(connection)?.splice(0) ?? []) {
      entry.release();
      entry.socket.destroy();
    }
    this.waiting.delete(connection);
  }

  close(): void {
    this.listener.close();
  }

  private connectionOf(token: Buffer): number | undefined {
    let found: number | undefined;
    // Every entry compared, in constant time each: which one matched must not show in the timing.
    for (const [connection, known] of this.tokens) if (timingSafeEqual(known, token)) found = connection;
    return found;
  }

  /**
   * `back`: the stream is back from a connection, whose DONE the host still owes: what arrived
   * unparsed, and whether that connection's EOF is still ours to send.
   */
  private wait(connection: number, socket: net.Socket, window: number, kind: { reusable: boolean; lateEof: boolean }, back?: { rest: Buffer; eofOwed: boolean }): void {
    const rest = back?.rest;
    if (socket.destroyed) return;
    if (!this.tokens.has(connection)) return void socket.destroy(); // its SSH connection is gone
    const queue = this.waiting.get(connection) ?? [];
    this.waiting.set(connection, queue);
    const drop = () => {
      const at = queue.indexOf(entry);
      if (at >= 0) queue.splice(at, 1);
      entry.release();
      socket.destroy();
    };
    // Anything from the host before an assignment breaks the protocol (but the last connection's
    // leftovers and DONE, when that is still owed); its end means it gave the stream up.
    const unexpected = () => {
      this.options.log.debug("reverse.unexpected-data", { connection });
      drop();
    };
    const onData = (chunk: Buffer) => {
      if (!entry.lastDone.owed) return unexpected();
      let after: Buffer | undefined;
      try {
        after = entry.lastDone.pass(chunk);
      } catch {
        return unexpected();
      }
      if (after !== undefined && after.length > 0) unexpected();
    };
    const entry: Waiting = {
      connection,
      socket,
      window,
      ...kind,
      lastDone: new OwedDone(rest !== undefined),
      eofOwed: back?.eofOwed ? setTimeout(() => this.sendOwedEof(entry), LATE_EOF_HOLD_MS) : undefined,
      timer: setTimeout(drop, this.options.idleMs ?? REVERSE_IDLE_MS),
      release: () => {
        clearTimeout(entry.timer);
        clearTimeout(entry.eofOwed);
        socket.off("data", onData).off("end", drop).off("close", drop);
        socket.pause(); // until the relay reads it
      },
    };
    socket.on("data", onData).once("end", drop).once("close", drop);
    if (rest?.length) onData(rest);
    if (socket.destroyed) return;
    socket.resume(); // a reused stream was paused between its connections
    queue.push(entry);
  }

  /** The late EOF a waiting stream kept found no next connection in time: it leaves alone. */
  private sendOwedEof(entry: Waiting): void {
    entry.eofOwed = undefined;
    if (!entry.socket.destroyed) entry.socket.write(encodeFrameHeader(FrameType.Eof, 0));
  }

  private carry(entry: Waiting, client: net.Socket, listenerPort: number): void {
    const { connection, socket, window, reusable, lateEof, lastDone } = entry;
    if (socket.destroyed) return void client.destroy();
    client.setNoDelay(true);
    // The assignment leaves in one write with the client's first bytes, which a client that speaks
    // first (HTTP) has usually sent before we accepted, and after the last connection's EOF if the
    // stream kept it. A client that waits for the server to speak first gets the assignment alone,
    // a moment later.
    socket.cork();
    socket.write(
      Buffer.concat([
        ...(entry.eofOwed !== undefined ? [encodeFrameHeader(FrameType.Eof, 0)] : []),
        encodeAssignment({ listenerPort, originAddress: client.remoteAddress ?? "0.0.0.0", originPort: client.remotePort ?? 0 }),
        encodeFrameHeader(FrameType.Opened, 0),
      ]),
    );
    const { log } = this.options;
    relay({
      socket,
      target: client,
      window,
      early: lastDone.held,
      framePool: this.framePool,
      reset: (why) => log.debug("reverse.reset", { port: listenerPort, why }),
      // Back to waiting as soon as both EOFs are behind: the host's DONE (which tells its last
      // frames of this connection from those of the next) may come later, even with the next
      // connection's first frame. Anything else on a waiting stream is wrong.
      reuse: reusable ? (rest, eofOwed) => this.wait(connection, socket, window, { reusable, lateEof }, { rest, eofOwed }) : undefined,
      donePending: lastDone.owed,
      holdLateEof: lateEof,
    });
    // Registered after the relay's own listener: runs once the relay has written the first frame.
    uncorkWithFirstBytes(socket, client);
    // Accepted paused (remote-listeners.ts): the relay reads it from here on.
    client.resume();
    log.debug("reverse.open", { port: listenerPort, from: `${client.remoteAddress}:${client.remotePort}` });
  }
}
