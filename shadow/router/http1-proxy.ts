// One HTTP/1.1 client connection through the router. Each request is routed on its own headers
// (keep-alive clients send many requests on one connection, and each may belong to someone else),
// forwarded byte for byte over a pooled upstream connection, and its answer streamed back. An
// upgrade (WebSocket, `Upgrade: h2c`, CONNECT) is routed on the upgrade request; once the upstream
// agrees (101 / 2xx), the two connections are spliced and the router steps out.
//
// Why not node:http + http.Agent: measured under Bun on this code base's machine, a node:http
// proxy with a keep-alive Agent did 4.6k req/s on one connection and 6.3k on 16, this framing
// proxy 13.5k and 17.3k (docs/mesh.md, "Router design"). Bytes are not re-serialised, so
// header case, order and duplicates reach the upstream exactly as the client sent them.

import type net from "node:net";
import type { Upstream } from "../../core/protocol/router.ts";
import {
  BodyTracker,
  findHeadEnd,
  HttpParseError,
  MAX_HEAD_BYTES,
  parseRequestHead,
  parseResponseHead,
  simpleResponse,
  type RequestHead,
  type ResponseHead,
} from "./http1.ts";
import { ConnectError, type UpstreamConnection, type UpstreamHandler, type UpstreamHealth, type UpstreamPool } from "./pool.ts";
import type { RouteTable } from "./routes.ts";
import type { RouterCounters } from "./stats.ts";
import type { ShadowLog } from "../log.ts";

/** What a listener shares with every connection it accepts. */
export interface ListenerContext {
  port: number;
  fallback: Upstream;
  routes: RouteTable;
  pool: UpstreamPool;
  health: UpstreamHealth;
  counters: RouterCounters;
  log: ShadowLog;
  connectTimeoutMs: number;
}

/** A keep-alive client that sends nothing for this long is closed (its own pool would close it too). */
const CLIENT_IDLE_MS = 120_000;
/** Pipelined bytes buffered while an answer is pending, before the client is paused. */
const MAX_PENDING_BYTES = MAX_HEAD_BYTES;
/** Methods safe to send again when the first upstream closed without answering. */
const REPLAYABLE = new Set(["GET", "HEAD", "OPTIONS"]);
const EMPTY = Buffer.alloc(0);

type Phase = "head" | "connecting" | "exchange" | "tunnel" | "closed";

interface Exchange {
  request: RequestHead;
  target: Upstream;
  /** The target is a developer's shadow (not the original pods). */
  routed: boolean;
  upstream?: UpstreamConnection;
  reused: boolean;
  /** Request bytes already written upstream: the head and the body up to now. */
  head: Buffer;
  requestBody: BodyTracker;
  responseHeadBuffer?: Buffer;
  response?: ResponseHead;
  responseBody?: BodyTracker;
  /** Bytes of the answer already written to the client (interim answers included). */
  answered: number;
  replayed: boolean;
}

export function serveHttp1(client: net.Socket, initial: Buffer, ctx: ListenerContext): void {
  new Http1Connection(client, initial, ctx).start();
}

class Http1Connection implements UpstreamHandler {
  private pending: Buffer;
  private phase: Phase = "head";
  private clientEnded = false;
  private clientPaused = false;
  private exchange: Exchange | undefined;
  private upstreamPausedForClient = false;

  constructor(
    private readonly client: net.Socket,
    initial: Buffer,
    private readonly ctx: ListenerContext,
  ) {
    this.pending = initial;
  }

  start(): void {
    const { client } = this;
    client.setNoDelay(true);
    client.on("data", this.onClientData);
    client.on("end", this.onClientEnd);
    client.on("error", this.onClientGone);
    client.on("close", this.onClientGone);
    // Fires after that long without traffic; a long-polling exchange in progress is left alone.
    client.setTimeout(CLIENT_IDLE_MS, () => {
      if (this.phase === "head" && this.pending.length === 0) this.endClient();
    });
    this.ctx.counters.http1Connections++;
    this.pump();
  }

  // ---- client side --------------------------------------------------------------------------

  private pauseClient(): void {
    if (this.clientPaused) return;
    this.clientPaused = true;
    this.client.pause();
  }

  private resumeClient(): void {
    if (!this.clientPaused) return;
    this.clientPaused = false;
    this.client.resume();
  }

  private readonly onClientData = (chunk: Buffer) => {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    if (this.phase === "head") this.pump();
    else if (this.phase === "exchange") this.forwardRequestBody();
    else if (this.phase === "connecting" && this.pending.length > MAX_PENDING_BYTES) this.pauseClient();
  };

  private readonly onClientEnd = () => {
    this.clientEnded = true;
    const exchange = this.exchange;
    if (exchange && !exchange.requestBody.done && this.pending.length === 0) {
      // The request was cut off: the upstream would wait for the rest for ever.
      return this.abort();
    }
    if (this.phase === "head") this.pump();
  };

  private readonly onClientGone = () => {
    if (this.phase === "tunnel" || this.phase === "closed") return;
    this.abort();
  };

  /** Parses and starts the next request while the connection is between exchanges. */
  private pump(): void {
    if (this.phase !== "head") return;
    if (this.pending.length === 0) {
      if (this.clientEnded) this.endClient();
      return;
    }
    const end = findHeadEnd(this.pending);
    if (end < 0) {
      if (this.pending.length > MAX_HEAD_BYTES) this.reject(431, "Request Header Fields Too Large", "request head too large");
      else if (this.clientEnded) this.endClient();
      return;
    }
    let request: RequestHead;
    try {
      request = parseRequestHead(this.pending, end);
    } catch (error) {
      if (!(error instanceof HttpParseError)) throw error;
      return this.reject(error.status, error.status === 505 ? "HTTP Version Not Supported" : "Bad Request", error.message);
    }
    const { counters, routes, health, fallback, port } = this.ctx;
    counters.requests++;
    const match = routes.match(port, (name) => request.headers[name], request.path);
    let target = fallback;
    let routed = false;
    if (match) {
      if (health.isDown(match.upstream)) counters.fallbacks++;
      else {
        target = match.upstream;
        routed = true;
        counters.routed++;
      }
    }
    this.exchange = {
      request,
      target,
      routed,
      reused: false,
      head: EMPTY,
      requestBody: new BodyTracker(request.body),
      answered: 0,
      replayed: false,
    };
    this.phase = "connecting";
    this.connect(this.exchange, false);
  }

  private forwardRequestBody(): void {
    const exchange = this.exchange!;
    if (!exchange.requestBody.done && this.pending.length > 0) {
      const n = exchange.requestBody.take(this.pending);
      const part = this.pending.subarray(0, n);
      this.pending = this.pending.subarray(n);
      if (!exchange.upstream!.write(part)) this.waitForUpstreamDrain(exchange);
    }
    // Pipelined requests wait until this exchange is over; do not let them pile up meanwhile.
    if (exchange.requestBody.done && this.pending.length > MAX_PENDING_BYTES) this.pauseClient();
  }

  private waitForUpstreamDrain(exchange: Exchange): void {
    this.pauseClient();
    exchange.upstream!.socket.once("drain", () => {
      if (this.exchange === exchange) this.resumeClient();
    });
  }

  // ---- upstream side ------------------------------------------------------------------------

  private connect(exchange: Exchange, fresh: boolean): void {
    const idle = fresh ? undefined : this.ctx.pool.takeIdle(exchange.target);
    if (idle) return this.attach(exchange, idle, true);
    this.ctx.pool.open(exchange.target).then(
      (connection) => {
        if (this.exchange !== exchange || this.phase === "closed") return connection.destroy();
        this.attach(exchange, connection, false);
      },
      (error: Error) => {
        if (this.exchange !== exchange) return;
        if (exchange.routed && error instanceof ConnectError) {
          // The developer's shadow refuses (they left, or their laptop is gone): the original pods answer.
          this.fallBack(exchange, error.message);
          return this.connect(exchange, false);
        }
        this.badGateway(`cannot reach ${exchange.routed ? "the developer's shadow" : "the original service"}: ${error.message}`);
      },
    );
  }

  private attach(exchange: Exchange, connection: UpstreamConnection, reused: boolean): void {
    exchange.upstream = connection;
    exchange.reused = reused;
    connection.handler = this;
    this.phase = "exchange";

    // The head and whatever body bytes are already here go out in one write.
    if (exchange.head.length === 0) {
      const bodyStart = exchange.request.headLength;
      const n = exchange.requestBody.take(this.pending, bodyStart);
      exchange.head = this.pending.subarray(0, bodyStart + n);
      this.pending = this.pending.subarray(bodyStart + n);
    }
    // A replay sends the same bytes again (only requests without a body are replayed).
    if (!connection.write(exchange.head)) this.waitForUpstreamDrain(exchange);
    else this.resumeClient();
    this.forwardRequestBody();
  }

  private fallBack(exchange: Exchange, why: string): void {
    const { ctx } = this;
    ctx.health.markDown(exchange.target);
    ctx.counters.routed--;
    ctx.counters.fallbacks++;
    ctx.log.info("route.fallback", { port: ctx.port, upstream: `${exchange.target.host}:${exchange.target.port}`, why });
    exchange.target = ctx.fallback;
    exchange.routed = false;
  }

  data(chunk: Buffer): void {
    const exchange = this.exchange;
    if (!exchange || this.phase !== "exchange") return;
    if (!exchange.response) return this.readResponseHead(exchange, chunk);
    const body = exchange.responseBody!;
    const n = body.take(chunk);
    this.toClient(exchange, n === chunk.length ? chunk : chunk.subarray(0, n));
    if (body.done) this.responseComplete(exchange, n < chunk.length);
  }

  private readResponseHead(exchange: Exchange, chunk: Buffer): void {
    let buf = exchange.responseHeadBuffer ? Buffer.concat([exchange.responseHeadBuffer, chunk]) : chunk;
    for (;;) {
      const end = findHeadEnd(buf);
      if (end < 0) {
        if (buf.length > MAX_HEAD_BYTES) return this.upstreamFailed("response head too large");
        exchange.responseHeadBuffer = buf;
        return;
      }
      let response: ResponseHead;
      try {
        response = parseResponseHead(buf, end, exchange.request.method);
      } catch (error) {
        return this.upstreamFailed((error as Error).message);
      }
      if (response.interim) {
        // 100 Continue, 103 Early Hints: pass on, the final answer follows.
        this.toClient(exchange, buf.subarray(0, end));
        buf = buf.subarray(end);
        exchange.responseHeadBuffer = undefined;
        if (buf.length === 0) return;
        continue;
      }
      exchange.responseHeadBuffer = undefined;
      exchange.response = response;
      if (response.switching) {
        this.toClient(exchange, buf);
        return this.becomeTunnel(exchange);
      }
      if (exchange.routed) this.ctx.health.markUp(exchange.target);
      const body = (exchange.responseBody = new BodyTracker(response.body));
      const n = body.take(buf, end);
      this.toClient(exchange, end + n === buf.length ? buf : buf.subarray(0, end + n));
      if (body.done) this.responseComplete(exchange, end + n < buf.length);
      return;
    }
  }

  private toClient(exchange: Exchange, bytes: Buffer): void {
    if (bytes.length === 0) return;
    exchange.answered += bytes.length;
    if (!this.client.write(bytes) && !this.upstreamPausedForClient) {
      this.upstreamPausedForClient = true;
      const upstream = exchange.upstream!;
      upstream.pause();
      this.client.once("drain", () => {
        this.upstreamPausedForClient = false;
        if (!upstream.socket.destroyed) upstream.resume();
      });
    }
  }

  private responseComplete(exchange: Exchange, extraBytes: boolean): void {
    const upstream = exchange.upstream!;
    upstream.handler = undefined;
    const { request, response, requestBody } = exchange;
    const upstreamReusable = response!.keepAlive && request.keepAlive && requestBody.done && !extraBytes;
    if (upstreamReusable && !this.upstreamPausedForClient) this.ctx.pool.release(upstream);
    else upstream.destroy();
    this.exchange = undefined;

    if (!(request.keepAlive && response!.keepAlive && requestBody.done)) {
      // The client was told the connection closes (or it is still sending a body nobody reads).
      return this.endClient();
    }
    this.phase = "head";
    this.resumeClient();
    this.pump();
  }

  end(): void {
    const exchange = this.exchange;
    if (!exchange || this.phase !== "exchange") return;
    if (exchange.responseBody?.endOfStream()) {
      // A body delimited by the connection's close is complete now.
      return this.responseComplete(exchange, false);
    }
    this.upstreamFailed("the upstream closed the connection");
  }

  error(error: Error): void {
    if (this.exchange && this.phase === "exchange") this.upstreamFailed(error.message);
  }

  close(): void {
    if (this.exchange && this.phase === "exchange") this.upstreamFailed("the upstream connection closed");
  }

  private upstreamFailed(why: string): void {
    const exchange = this.exchange!;
    exchange.upstream!.destroy();
    exchange.upstream = undefined;

    if (exchange.answered === 0) {
      const { request } = exchange;
      const replayable = request.body.kind === "none" && !request.upgrade && (REPLAYABLE.has(request.method) || exchange.reused);
      if (replayable && !exchange.replayed) {
        exchange.replayed = true;
        exchange.responseHeadBuffer = undefined;
        exchange.response = undefined;
        this.phase = "connecting";
        // A developer's shadow that took the connection and dropped it has nobody behind it.
        if (exchange.routed && !exchange.reused) this.fallBack(exchange, why);
        return this.connect(exchange, exchange.reused);
      }
      if (exchange.routed) this.ctx.health.markDown(exchange.target);
      return this.badGateway(why);
    }
    // Part of the answer is out already: only a broken connection tells the client it is incomplete.
    this.ctx.counters.upstreamErrors++;
    this.abort();
  }

  // ---- endings ------------------------------------------------------------------------------

  /** The upstream agreed to switch protocols: from now on the router only copies bytes. */
  private becomeTunnel(exchange: Exchange): void {
    const { client } = this;
    const upstream = exchange.upstream!.detach();
    this.phase = "tunnel";
    this.exchange = undefined;
    this.ctx.counters.upgrades++;
    client.off("data", this.onClientData);
    client.off("end", this.onClientEnd);
    client.setTimeout(0);
    if (this.pending.length > 0) upstream.write(this.pending);
    this.pending = EMPTY;
    this.upstreamPausedForClient = false;
    const destroyBoth = () => {
      client.destroy();
      upstream.destroy();
    };
    upstream.on("error", destroyBoth);
    client.on("error", destroyBoth);
    upstream.once("close", () => client.destroy());
    client.once("close", () => upstream.destroy());
    // pipe() carries back-pressure, and each side's FIN to the other (both sockets allow half-open).
    client.pipe(upstream);
    upstream.pipe(client);
    this.clientPaused = false;
    client.resume();
    if (this.clientEnded) upstream.end();
  }

  private reject(status: number, reason: string, message: string): void {
    this.ctx.counters.badRequests++;
    this.ctx.log.debug("http1.rejected", { port: this.ctx.port, status, error: message });
    this.respondAndClose(simpleResponse(status, reason, message));
  }

  private badGateway(why: string): void {
    this.ctx.counters.upstreamErrors++;
    this.ctx.log.info("http1.bad-gateway", { port: this.ctx.port, error: why });
    this.exchange = undefined;
    this.respondAndClose(simpleResponse(502, "Bad Gateway", `ktctl router: ${why}`));
  }

  private respondAndClose(response: Buffer): void {
    this.phase = "closed";
    this.client.off("data", this.onClientData);
    this.client.resume(); // read and drop the rest, so the close is a FIN and not a reset
    this.client.end(response);
    setTimeout(() => this.client.destroy(), 5_000).unref?.();
  }

  private endClient(): void {
    this.phase = "closed";
    this.client.end();
    setTimeout(() => this.client.destroy(), 5_000).unref?.();
  }

  private abort(): void {
    this.phase = "closed";
    this.exchange?.upstream?.destroy();
    this.exchange = undefined;
    this.client.destroy();
  }
}
