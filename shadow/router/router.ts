// The mesh router: one listener per port of the meshed service. Each new connection is sniffed
// (HTTP/1, HTTP/2 preface, or neither) and handed to the matching proxy; anything that is not HTTP
// is spliced to the original pods as raw TCP. Routes change at run time through the admin endpoint
// (admin.ts) without touching connections in flight. Every socket is one of Bun's own
// (byte-socket.ts), not a node:net stream.

import type { ListenerConfig, RouterConfig, Upstream } from "../../core/protocol/router.ts";
import { connectBytes, listenBytes, spliceBytes, type ByteListener, type ByteSocket } from "./byte-socket.ts";
import { serveHttp1, type ListenerContext } from "./http1-proxy.ts";
import { UpstreamSessions } from "./h2-sessions.ts";
import { Http2Proxy } from "./http2-proxy.ts";
import { Http2Relay } from "./http2-relay.ts";
import { DEFAULT_POOL_OPTIONS, UpstreamHealth, UpstreamPool, type PoolOptions } from "./pool.ts";
import { RouteTable } from "./routes.ts";
import { classify } from "./sniff.ts";
import { RouterCounters } from "./stats.ts";
import type { ShadowLog } from "../log.ts";

export interface RouterOptions {
  /** Address the service ports listen on (every address by default). */
  host?: string;
  pool?: PoolOptions;
  /** How long a developer upstream that refused is skipped. */
  healthDownMs?: number;
}

interface Listener {
  bytes: ByteListener;
  http2: Http2Relay;
  /** Serves h2c connections whose original pods cannot be reached. */
  http2Unrelayed: Http2Proxy;
  sessions: UpstreamSessions;
}

export class Router {
  readonly routes = new RouteTable();
  readonly counters = new RouterCounters();
  readonly pool: UpstreamPool;
  private readonly health: UpstreamHealth;
  private readonly listeners: Listener[] = [];

  constructor(
    readonly config: RouterConfig,
    private readonly log: ShadowLog,
    private readonly options: RouterOptions = {},
  ) {
    this.pool = new UpstreamPool(options.pool ?? DEFAULT_POOL_OPTIONS);
    this.health = new UpstreamHealth(options.healthDownMs);
  }

  async start(): Promise<void> {
    try {
      for (const listener of this.config.listeners) this.listen(listener);
    } catch (error) {
      this.stop();
      throw error;
    }
  }

  stop(): void {
    for (const listener of this.listeners.splice(0)) {
      listener.bytes.server.stop(true);
      listener.http2.close();
      listener.http2Unrelayed.close();
      listener.sessions.close();
      for (const socket of listener.bytes.open) socket.destroy();
    }
    this.pool.close();
  }

  private listen(listener: ListenerConfig): void {
    const { port, fallback, name } = listener;
    const protocol = listener.protocol ?? "auto";
    const context: ListenerContext = {
      port,
      fallback,
      routes: this.routes,
      pool: this.pool,
      health: this.health,
      counters: this.counters,
      log: this.log,
      connectTimeoutMs: (this.options.pool ?? DEFAULT_POOL_OPTIONS).connectTimeoutMs,
    };
    const sessions = new UpstreamSessions(context.connectTimeoutMs);
    const http2Unrelayed = new Http2Proxy(context, sessions);
    const http2 = new Http2Relay(context, sessions, http2Unrelayed);
    let bytes: ByteListener;
    try {
      bytes = listenBytes(this.options.host ?? "0.0.0.0", port, (socket) => {
        this.counters.connections++;
        if (protocol === "tcp") this.splice(socket, Buffer.alloc(0), fallback);
        else this.sniff(socket, context, http2, protocol === "auto" ? this.config.sniffTimeoutMs : undefined);
      });
    } catch (error) {
      http2Unrelayed.close();
      sessions.close();
      throw error;
    }
    this.listeners.push({ bytes, http2, http2Unrelayed, sessions });
    this.log.info("router.listening", { port, name, protocol, fallback: `${fallback.host}:${fallback.port}` });
  }

  /**
   * Reads until the first bytes tell the protocol. With a `silenceMs`, silence that long means a
   * server-speaks-first protocol; without, a silent client is simply waited for.
   */
  private sniff(socket: ByteSocket, context: ListenerContext, http2: Http2Relay, silenceMs: number | undefined): void {
    let buffered: Buffer = Buffer.alloc(0);
    let decided = false;
    const decide = (protocol: "http1" | "http2" | "raw") => {
      decided = true;
      clearTimeout(timer);
      if (protocol === "raw") return this.splice(socket, buffered, context.fallback);
      if (protocol === "http1") serveHttp1(socket, buffered, context);
      else http2.accept(socket, buffered);
    };
    const timer =
      silenceMs === undefined
        ? undefined
        : setTimeout(() => {
            if (!decided) decide("raw");
          }, silenceMs);
    socket.sink = {
      data: (chunk) => {
        buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
        const protocol = classify(buffered);
        if (protocol !== "more") decide(protocol);
      },
      // A peer that connects and leaves without a word (a TCP probe) needs nothing from anyone.
      end: () => {
        if (decided) return;
        if (buffered.length > 0) return decide("raw");
        clearTimeout(timer);
          socket.destroy();
      },
      close: () => {
        clearTimeout(timer);
        },
      drain: () => undefined,
    };
  }

  /** Not HTTP: the original pods get the connection as it is. */
  private splice(client: ByteSocket, initial: Buffer, fallback: Upstream): void {
    this.counters.rawConnections++;
    client.pause();
    // Until the upstream answers, the client's FIN or close is only remembered (ByteSocket keeps both).
    client.sink = { data: () => undefined, end: () => undefined, close: () => undefined, drain: () => undefined };
    connectBytes(fallback, (this.options.pool ?? DEFAULT_POOL_OPTIONS).connectTimeoutMs).then(
      (upstream) => {
        if (client.closed) {
          return void upstream.destroy();
        }
        if (initial.length > 0) upstream.write(initial);
        spliceBytes(client, upstream);
        client.resume();
      },
      (error: Error) => {
        this.counters.upstreamErrors++;
        this.log.info("raw.connect-failed", { error: error.message });
        client.destroy();
      },
    );
  }
}
