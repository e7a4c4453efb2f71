// The mesh router: one listener per port of the meshed service. Each new connection is sniffed
// (HTTP/1, HTTP/2 preface, or neither) and handed to the matching proxy; anything that is not HTTP
// is spliced to the original pods as raw TCP. Routes change at run time through the admin endpoint
// (admin.ts) without touching connections in flight.

import net from "node:net";
import type { ListenerConfig, RouterConfig, Upstream } from "../../core/protocol/router.ts";
import { serveHttp1, type ListenerContext } from "./http1-proxy.ts";
import { Http2Proxy } from "./http2-proxy.ts";
import { connectTcp, DEFAULT_POOL_OPTIONS, UpstreamHealth, UpstreamPool, type PoolOptions } from "./pool.ts";
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
  server: net.Server;
  context: ListenerContext;
  http2: Http2Proxy;
  sockets: Set<net.Socket>;
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
      for (const listener of this.config.listeners) await this.listen(listener);
    } catch (error) {
      this.stop();
      throw error;
    }
  }

  stop(): void {
    for (const listener of this.listeners.splice(0)) {
      listener.server.close();
      listener.http2.close();
      for (const socket of listener.sockets) socket.destroy();
    }
    this.pool.close();
  }

  private async listen(listener: ListenerConfig): Promise<void> {
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
    const sockets = new Set<net.Socket>();
    const http2 = new Http2Proxy(context);
    const server = net.createServer({ allowHalfOpen: true }, (socket) => {
      sockets.add(socket);
      socket.once("close", () => sockets.delete(socket));
      this.counters.connections++;
      if (protocol === "tcp") this.splice(socket, Buffer.alloc(0), fallback);
      else this.sniff(socket, context, http2, protocol === "auto" ? this.config.sniffTimeoutMs : undefined);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: this.options.host ?? "0.0.0.0", port }, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", (error) => this.log.error("router.listener-error", { port, error: error.message }));
    this.listeners.push({ server, context, http2, sockets });
    this.log.info("router.listening", { port, name, protocol, fallback: `${fallback.host}:${fallback.port}` });
  }

  /**
   * Reads until the first bytes tell the protocol. With a `silenceMs`, silence that long means a
   * server-speaks-first protocol; without, a silent client is simply waited for.
   */
  private sniff(socket: net.Socket, context: ListenerContext, http2: Http2Proxy, silenceMs: number | undefined): void {
    let buffered: Buffer = Buffer.alloc(0);
    let decided = false;
    const decide = (protocol: "http1" | "http2" | "raw") => {
      decided = true;
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("error", onError);
      if (protocol === "http1") serveHttp1(socket, buffered, context);
      else if (protocol === "http2") http2.accept(socket, buffered);
      else this.splice(socket, buffered, context.fallback);
    };
    const onData = (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const protocol = classify(buffered);
      if (protocol !== "more") decide(protocol);
    };
    // A peer that connects and leaves without a word (a TCP probe) needs nothing from anyone.
    const onEnd = () => {
      if (!decided && buffered.length === 0) {
        clearTimeout(timer);
        socket.destroy();
      } else if (!decided) decide("raw");
    };
    const onError = () => {
      clearTimeout(timer);
      socket.destroy();
    };
    const timer =
      silenceMs === undefined
        ? undefined
        : setTimeout(() => {
            if (!decided) decide("raw");
          }, silenceMs);
    socket.on("data", onData);
    socket.on("end", onEnd);
    socket.on("error", onError);
  }

  /** Not HTTP: the original pods get the connection as it is. */
  private splice(client: net.Socket, initial: Buffer, fallback: Upstream): void {
    this.counters.rawConnections++;
    client.pause();
    client.on("error", () => client.destroy());
    connectTcp(fallback, (this.options.pool ?? DEFAULT_POOL_OPTIONS).connectTimeoutMs).then(
      (upstream) => {
        if (client.destroyed) return void upstream.destroy();
        upstream.on("error", () => {
          upstream.destroy();
          client.destroy();
        });
        client.on("error", () => upstream.destroy());
        upstream.once("close", () => client.destroy());
        client.once("close", () => upstream.destroy());
        if (initial.length > 0) upstream.write(initial);
        const ended = client.readableEnded;
        client.pipe(upstream);
        upstream.pipe(client);
        if (ended) upstream.end();
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
