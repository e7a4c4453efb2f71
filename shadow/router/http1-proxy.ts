// One HTTP/1.1 client connection through the router. Each request is routed on its own headers
// (keep-alive clients send many requests on one connection, and each may belong to someone else),
// forwarded byte for byte over a pooled upstream connection, and its answer streamed back. An
// upgrade (WebSocket, `Upgrade: h2c`, CONNECT) is routed on the upgrade request; once the upstream
// agrees (101 / 2xx), the two connections are spliced and the router steps out.
//
// Why not node:http + http.Agent: measured under Bun on this code base's machine, a node:http
// proxy with a keep-alive Agent did 4.6k req/s on one connection and 6.3k on 16, this framing
// proxy 13.5k and 17.3k (docs/mesh.md, "The router"). Bytes are not re-serialised, so header
// case, order and duplicates reach the upstream exactly as the client sent them. Both sides are
// Bun sockets (byte-socket.ts): per request, one read and one write each way, and no stream
// machinery in between.

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
import { spliceBytes, type ByteSink, type ByteSocket } from "./byte-socket.ts";
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
const CLIENT_IDLE_S = 120;
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

export function serveHttp1(client: ByteSocket, initial: Buffer, ctx: ListenerContext): void {
  new Http1Connection(client, initial, ctx).start();
}

class Http1Connection implements UpstreamHandler {
  /** The client socket's events. */
  private readonly clientSink: ByteSink = {
    data: (chunk) => this.onClientData(chunk),
    end: () => this.onClientEnd(),
    close: () => this.onClientGone(),
    drain: () => this.onClientDrained(),
    timeout: () => {
      // Idle that long between requests: the connection is let go. A long answer in progress is left alone.
      if (this.phase === "head" && this.pending.length === 0) this.endClient();
    },
  };
  private pending: Buffer;
  private phase: Phase = "head";
  private clientEnded = false;
  private clientPaused = false;
  private exchange: Exchange | undefined;
  private upstreamPausedForClient = false;

  constructor(
    private readonly client: ByteSocket,
    initial: Buffer,
    private readonly ctx: ListenerContext,
  ) {
    this.pending = initial;
  }

  start(): void {
    const { client } = this;
    client.sink = this.clientSink;
    client.idleTimeout(CLIENT_IDLE_S);
    this.ctx.counters.http1Connections++;
    if (client.closed) return this.onClientGone();
    this.clientEnded = client.readEnded;
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

  private onClientData(chunk: Buffer): void {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    if (this.phase === "head") this.pump();
    else if (this.phase === "exchange") this.forwardRequestBody();
    else if (this.phase === "connecting" && this.pending.length > MAX_PENDING_BYTES) this.pauseClient();
  }

  private onClientEnd(): void {
    this.clientEnded = true;
    const exchange = this.exchange;
    if (exchange && !exchange.requestBody.done && this.pending.length === 0) {
      // The request was cut off: the upstream would wait for the rest for ever.
      return this.abort();
    }
    if (this.phase === "head") this.pump();
  }

  private onClientGone(): void {
    if (this.phase === "tunnel" || this.phase === "closed") return;
    this.abort();
  }

  /** The client took everything: the upstream paused for it may send on. */
  private onClientDrained(): void {
    if (!this.upstreamPausedForClient) return;
    this.upstreamPausedForClient = false;
    this.exchange?.upstream?.resume();
  }

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
      if (!exchange.upstream!.write(part)) this.pauseClient();
    }
    // Pipelined requests wait until this exchange is over; do not let them pile up meanwhile.
    if (exchange.requestBody.done && this.pending.length > MAX_PENDING_BYTES) this.pauseClient();
  }

  /** The upstream took every request byte: a client paused for it may send on. */
  drain(): void {
    if (this.phase === "exchange") this.resumeClient();
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
    if (!connection.write(exchange.head)) this.pauseClient();
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
      exchange.upstream!.pause();
    }
  }

  private responseComplete(exchange: Exchange, extraBytes: boolean): void {
    const upstream = exchange.upstream!;
    upstream.handler = undefined;
    const { request, response, requestBody } = exchange;
    const upstreamReusable = response!.keepAlive && request.keepAlive && requestBody.done && !extraBytes;
    if (upstreamReusable) this.ctx.pool.release(upstream);
    else upstream.destroy();
    // The pool resumes what it keeps; the client's drain has nothing left to resume.
    this.upstreamPausedForClient = false;
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

  close(error?: Error): void {
    if (this.exchange && this.phase === "exchange") this.upstreamFailed(error?.message ?? "the upstream connection closed");
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
    client.idleTimeout(0);
    if (this.pending.length > 0) upstream.write(this.pending);
    this.pending = EMPTY;
    this.upstreamPausedForClient = false;
    this.clientPaused = false;
    client.resume();
    // Back-pressure both ways, and each side's FIN to the other.
    spliceBytes(client, upstream);
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
    this.client.write(response);
    this.endClient();
  }

  /**
   * Sends FIN after what is queued and reads (and drops) whatever the client still sends until it
   * closes too, so the close is a FIN and not a reset that could destroy the answer in flight.
   */
  private endClient(): void {
    this.phase = "closed";
    const { client } = this;
    client.sink = { data: () => undefined, end: () => client.end(), close: () => undefined, drain: () => undefined };
    this.resumeClient();
    client.shutdown();
    if (client.readEnded) client.end();
    setTimeout(() => client.destroy(), 5_000).unref?.();
  }

  private abort(): void {
    this.phase = "closed";
    this.exchange?.upstream?.destroy();
    this.exchange = undefined;
    this.client.destroy();
  }
}
