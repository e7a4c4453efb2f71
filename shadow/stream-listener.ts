// A loopback listener for the streams the host opens through the port-forward, direct and reverse
// alike: each stream begins with a preamble, read here under time limits, and what follows belongs
// to the owner (direct-server.ts, reverse-server.ts). Only the host can reach this listener, so a
// stream that does not begin as the host's would is closed without a word: a warning the first
// time, debug lines after that.

import net from "node:net";
import { OwedDone } from "../core/protocol/direct-streams.ts";
import type { ShadowLog } from "./log.ts";

/** Once a preamble has begun, the rest must follow promptly. */
const PREAMBLE_TIMEOUT_MS = 10_000;

export interface StreamListenerOptions<T> {
  /** "direct" or "reverse": the prefix of the log's event names. */
  kind: string;
  log: ShadowLog;
  host?: string;
  port?: number;
  /** The preamble at the start of `received`, or undefined while it is incomplete; throws when it is malformed. */
  decode(received: Buffer): T | undefined;
  /** Silence allowed before a stream's first byte (one opened ahead of need); without it the preamble's limit applies from the start. */
  idleMs?: number;
  /**
   * Takes a stream whose preamble decoded (no 'data' listener is left on it). Returns why it is
   * refused instead, and the stream is closed.
   */
  accepted(socket: net.Socket, preamble: T, id: number): string | undefined;
}

export class StreamListener<T> {
  private readonly open = new Set<net.Socket>();
  private refusalLogged = false;
  private nextId = 1;

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
    private readonly options: StreamListenerOptions<T>,
  ) {}

  static async start<T>(options: StreamListenerOptions<T>): Promise<StreamListener<T>> {
    let listener: StreamListener<T> | undefined;
    const server = net.createServer({ noDelay: true, allowHalfOpen: true }, (socket) => listener?.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: options.host ?? "127.0.0.1", port: options.port ?? 0 }, resolve);
    });
    server.on("error", (error) => options.log.error(`${options.kind}.listener-error`, { error: error.message }));
    listener = new StreamListener(server, (server.address() as net.AddressInfo).port, options);
    return listener;
  }

  /** Stops listening and ends every stream, waiting or relaying. */
  close(): void {
    this.server.close();
    for (const socket of this.open) socket.destroy();
  }

  private accept(socket: net.Socket): void {
    const id = this.nextId++;
    const { log, kind } = this.options;
    socket.setNoDelay(true);
    socket.on("error", (error: NodeJS.ErrnoException) => {
      log.debug(`${kind}.socket-error`, { stream: id, error: error.code ?? error.message });
      socket.destroy();
    });
    this.open.add(socket);
    socket.once("close", () => this.open.delete(socket));
    this.readPreamble(socket, id);
  }

  /**
   * Reads a preamble on `socket`, beginning with `received`, and hands the stream to its owner.
   * Also how a reusable stream's next connection begins, once the last one has ended cleanly; with
   * `doneOwed`, the host's DONE for that one is still to come in front of the preamble (with the
   * last connection's leftovers before it), and the stream counts as silent until it has come.
   */
  readPreamble(socket: net.Socket, id: number, received: Buffer = Buffer.alloc(0), doneOwed = false): void {
    const { log, kind, decode, idleMs } = this.options;
    const limit = (event: string, ms: number) =>
      setTimeout(() => {
        log.debug(`${kind}.${event}`, { stream: id });
        socket.destroy();
      }, ms);
    let timer = idleMs === undefined ? limit("preamble-timeout", PREAMBLE_TIMEOUT_MS) : limit("idle-timeout", idleMs);
    const stop = () => {
      clearTimeout(timer);
      socket.off("data", take).off("end", onEnd).off("close", stop);
    };
    // What `parse` makes of the bytes so far: undefined while incomplete, and for a malformed
    // stream, which is refused.
    const attempt = <R>(parse: () => R | undefined): R | undefined => {
      try {
        return parse();
      } catch (error) {
        stop();
        this.refuse(socket, (error as Error).message);
        return undefined;
      }
    };
    const lastDone = new OwedDone(doneOwed);
    const take = (arrived: Buffer) => {
      const chunk = attempt(() => lastDone.pass(arrived));
      if (chunk === undefined || chunk.length === 0) return;
      if (received.length === 0 && idleMs !== undefined) {
        clearTimeout(timer);
        timer = limit("preamble-timeout", PREAMBLE_TIMEOUT_MS);
      }
      received = received.length ? Buffer.concat([received, chunk]) : chunk;
      const preamble = attempt(() => decode(received));
      if (preamble === undefined) return;
      stop();
      const refusal = this.options.accepted(socket, preamble, id);
      if (refusal !== undefined) this.refuse(socket, refusal);
    };
    // Ended before a word: nothing will ever come.
    const onEnd = () => {
      if (received.length === 0) socket.destroy();
    };
    socket.on("data", take).once("end", onEnd).once("close", stop);
    socket.resume(); // a reused stream was paused between its connections
    if (received.length > 0) {
      const first = received;
      received = Buffer.alloc(0);
      take(first);
    }
  }

  private refuse(socket: net.Socket, why: string): void {
    const event = `${this.options.kind}.refused`;
    if (!this.refusalLogged) this.options.log.warn(event, { error: why });
    else this.options.log.debug(event, { error: why });
    this.refusalLogged = true;
    socket.destroy();
  }
}
