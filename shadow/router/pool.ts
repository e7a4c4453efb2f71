// Upstream connections for HTTP/1.1: kept open between requests and handed out again (keep-alive),
// so a request through the router costs no TCP handshake. Also remembers which developer upstreams
// just refused, so the requests after a failure go straight to the original pods instead of each
// paying for a failed connect.

import net from "node:net";
import type { Upstream } from "./contract.ts";

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

export class ConnectError extends Error {
  constructor(
    readonly upstream: Upstream,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ConnectError";
  }
}

export const upstreamKey = (upstream: Upstream): string => `${upstream.host}:${upstream.port}`;

interface Idle {
  socket: net.Socket;
  since: number;
  drop: () => void;
}

/** Opens a TCP connection, bounded by a timeout; rejects with a ConnectError carrying the errno code. */
export function connectTcp(upstream: Upstream, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: upstream.host, port: upstream.port, allowHalfOpen: true });
    const fail = (code: string, message: string) => {
      clearTimeout(timer);
      socket.destroy();
      reject(new ConnectError(upstream, code, message));
    };
    const timer = setTimeout(() => fail("ETIMEDOUT", `no answer from ${upstreamKey(upstream)} within ${timeoutMs} ms`), timeoutMs);
    socket.once("error", (error: NodeJS.ErrnoException) => fail(error.code ?? "ECONNRESET", `${upstreamKey(upstream)}: ${error.message}`));
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.removeAllListeners("error");
      socket.setNoDelay(true);
      resolve(socket);
    });
  });
}

export class UpstreamPool {
  private readonly idle = new Map<string, Idle[]>();
  private readonly sweeper: ReturnType<typeof setInterval>;
  opened = 0;
  reused = 0;

  constructor(private readonly options: PoolOptions = DEFAULT_POOL_OPTIONS) {
    this.sweeper = setInterval(() => this.sweep(), Math.max(250, options.idleTimeoutMs / 2));
    this.sweeper.unref?.();
  }

  /** An idle connection to `upstream` if one is alive, else a new one. */
  async acquire(upstream: Upstream): Promise<{ socket: net.Socket; reused: boolean }> {
    const list = this.idle.get(upstreamKey(upstream));
    const now = performance.now();
    while (list?.length) {
      const entry = list.pop()!;
      entry.drop();
      if (now - entry.since < this.options.idleTimeoutMs && !entry.socket.destroyed && entry.socket.writable && entry.socket.readable) {
        this.reused++;
        return { socket: entry.socket, reused: true };
      }
      entry.socket.destroy();
    }
    const socket = await connectTcp(upstream, this.options.connectTimeoutMs);
    this.opened++;
    return { socket, reused: false };
  }

  /** Takes back a connection whose last exchange ended cleanly. */
  release(upstream: Upstream, socket: net.Socket): void {
    if (socket.destroyed || !socket.writable || !socket.readable) return void socket.destroy();
    const key = upstreamKey(upstream);
    let list = this.idle.get(key);
    if (!list) this.idle.set(key, (list = []));
    if (list.length >= this.options.maxIdlePerUpstream) return void socket.destroy();
    socket.resume(); // a paused idle socket would never see the upstream's FIN
    // While idle, anything the upstream does (closes, or sends bytes nobody asked for) ends it.
    const gone = () => {
      const at = list!.indexOf(entry);
      if (at >= 0) list!.splice(at, 1);
      entry.drop();
      socket.destroy();
    };
    const entry: Idle = {
      socket,
      since: performance.now(),
      drop: () => {
        socket.off("data", gone);
        socket.off("end", gone);
        socket.off("error", gone);
        socket.off("close", gone);
      },
    };
    socket.on("data", gone);
    socket.on("end", gone);
    socket.on("error", gone);
    socket.on("close", gone);
    list.push(entry);
  }

  idleCount(): number {
    let n = 0;
    for (const list of this.idle.values()) n += list.length;
    return n;
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const list of this.idle.values()) for (const entry of list.splice(0)) entry.socket.destroy();
    this.idle.clear();
  }

  private sweep(): void {
    const now = performance.now();
    for (const [key, list] of this.idle) {
      for (let i = list.length - 1; i >= 0; i--) {
        const entry = list[i]!;
        if (now - entry.since >= this.options.idleTimeoutMs) {
          list.splice(i, 1);
          entry.drop();
          entry.socket.destroy();
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
    this.downUntil.delete(upstreamKey(upstream));
  }
}
