// Upstream connections for HTTP/1.1: kept open between requests and handed out again (keep-alive),
// so a request through the router costs no TCP handshake. Also remembers which developer upstreams
// just refused, so the requests after a failure go straight to the original pods instead of each
// paying for a failed connect.
//
// Each connection is its socket's sink for its whole life and forwards the events to whoever holds
// it now: nothing is attached or removed per request.

import type { Upstream } from "../../core/protocol/router.ts";
import { ConnectError, connectBytes, upstreamKey, type ByteSink, type ByteSocket } from "./byte-socket.ts";

export { ConnectError, upstreamKey };

export interface PoolOptions {
  /** Idle connections kept per upstream. */
  maxIdlePerUpstream: number;
  /**
   * An idle connection older than this is closed, not reused. Below the 5 s idle timeout of
   * Node's http server (a common upstream), so the router does not reuse a connection the
   * upstream is closing at that very moment.
   */
  idleTimeoutMs: number;
  connectTimeoutMs: number;
}

export const DEFAULT_POOL_OPTIONS: PoolOptions = { maxIdlePerUpstream: 256, idleTimeoutMs: 4_000, connectTimeoutMs: 3_000 };

/** Who gets a connection's events while they hold it. */
export interface UpstreamHandler {
  data(chunk: Buffer): void;
  /** The upstream sent its FIN. */
  end(): void;
  /** The connection is gone. */
  close(error?: Error): void;
  /** The upstream took every byte written to it. */
  drain(): void;
}

/** One upstream TCP connection, lent to one exchange at a time. */
export class UpstreamConnection implements ByteSink {
  handler: UpstreamHandler | undefined;
  /** While idle in the pool: when it was returned, and how the pool forgets it. */
  idleSince = 0;
  onIdleEvent: (() => void) | undefined;

  constructor(
    readonly socket: ByteSocket,
    readonly upstream: Upstream,
  ) {
    socket.sink = this;
  }

  get usable(): boolean {
    return !this.socket.closed && !this.socket.readEnded;
  }

  write(bytes: Uint8Array): boolean {
    return this.socket.write(bytes);
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  destroy(): void {
    this.handler = undefined;
    this.socket.destroy();
  }

  /** Hands the bare socket over (to be spliced): this wrapper forwards nothing any more. */
  detach(): ByteSocket {
    this.handler = undefined;
    this.socket.sink = undefined;
    this.socket.resume();
    return this.socket;
  }

  data(chunk: Buffer): void {
    if (this.handler) this.handler.data(chunk);
    else this.idleEvent();
  }

  end(): void {
    if (this.handler) this.handler.end();
    else this.idleEvent();
  }

  close(error?: Error): void {
    if (this.handler) this.handler.close(error);
    else this.idleEvent();
  }

  drain(): void {
    this.handler?.drain();
  }

  /** Anything the upstream does while nobody holds the connection (closes, sends unasked bytes) ends it. */
  private idleEvent(): void {
    this.socket.destroy();
    this.onIdleEvent?.();
  }
}

export class UpstreamPool {
  private readonly idle = new Map<string, UpstreamConnection[]>();
  private readonly sweeper: ReturnType<typeof setInterval>;
  opened = 0;
  reused = 0;

  constructor(private readonly options: PoolOptions = DEFAULT_POOL_OPTIONS) {
    this.sweeper = setInterval(() => this.sweep(), Math.max(250, options.idleTimeoutMs / 2));
    this.sweeper.unref?.();
  }

  /** An idle connection to `upstream` that is still good, if there is one (no waiting). */
  takeIdle(upstream: Upstream): UpstreamConnection | undefined {
    const list = this.idle.get(upstreamKey(upstream));
    if (!list) return undefined;
    const now = performance.now();
    while (list.length > 0) {
      const connection = list.pop()!;
      connection.onIdleEvent = undefined;
      if (now - connection.idleSince < this.options.idleTimeoutMs && connection.usable) {
        this.reused++;
        return connection;
      }
      connection.destroy();
    }
    return undefined;
  }

  /** A new connection. */
  async open(upstream: Upstream): Promise<UpstreamConnection> {
    const socket = await connectBytes(upstream, this.options.connectTimeoutMs);
    this.opened++;
    return new UpstreamConnection(socket, upstream);
  }

  /** Takes back a connection whose last exchange ended cleanly. */
  release(connection: UpstreamConnection): void {
    connection.handler = undefined;
    if (!connection.usable) return connection.destroy();
    const key = upstreamKey(connection.upstream);
    let list = this.idle.get(key);
    if (!list) this.idle.set(key, (list = []));
    if (list.length >= this.options.maxIdlePerUpstream) return connection.destroy();
    connection.resume(); // a paused idle socket would never see the upstream's FIN
    connection.idleSince = performance.now();
    const pool = list;
    connection.onIdleEvent = () => {
      const at = pool.indexOf(connection);
      if (at >= 0) pool.splice(at, 1);
    };
    list.push(connection);
  }

  idleCount(): number {
    let n = 0;
    for (const list of this.idle.values()) n += list.length;
    return n;
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const list of this.idle.values()) for (const connection of list.splice(0)) connection.destroy();
    this.idle.clear();
  }

  private sweep(): void {
    const now = performance.now();
    for (const [key, list] of this.idle) {
      for (let i = list.length - 1; i >= 0; i--) {
        const connection = list[i]!;
        if (now - connection.idleSince >= this.options.idleTimeoutMs) {
          list.splice(i, 1);
          connection.onIdleEvent = undefined;
          connection.destroy();
        }
      }
      if (list.length === 0) this.idle.delete(key);
    }
  }
}

/**
 * Developer upstreams that failed recently. A developer who left without saying so (laptop shut,
 * ktctl killed) leaves a route whose shadow refuses; for `downMs` after a failure their requests go
 * to the original pods at once, then the route is tried again.
 */
export class UpstreamHealth {
  private readonly downUntil = new Map<string, number>();

  constructor(private readonly downMs = 5_000) {}

  isDown(upstream: Upstream): boolean {
    if (this.downUntil.size === 0) return false;
    const key = upstreamKey(upstream);
    const until = this.downUntil.get(key);
    if (until === undefined) return false;
    if (performance.now() < until) return true;
    this.downUntil.delete(key);
    return false;
  }

  markDown(upstream: Upstream): void {
    this.downUntil.set(upstreamKey(upstream), performance.now() + this.downMs);
  }

  markUp(upstream: Upstream): void {
    if (this.downUntil.size > 0) this.downUntil.delete(upstreamKey(upstream));
  }
}
