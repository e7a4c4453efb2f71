// HTTP/2 over cleartext through node:http2, server and client: every stream decoded, routed on its
// own headers and forwarded as a stream of one multiplexed session per upstream; response headers,
// body and trailers (grpc-status, grpc-message) pass through, and so do resets in both directions.
// The h2c relay (http2-relay.ts) hands a connection here when the original pods cannot be reached:
// each stream then gets an answer of its own (502, grpc-status 14), and a marked stream still
// reaches its developer.

import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import type { Duplex } from "node:stream";
import type { Upstream } from "../../core/protocol/router.ts";
import type { ListenerContext } from "./http1-proxy.ts";
import { upstreamKey, type ByteSocket } from "./byte-socket.ts";
import { HOP_BY_HOP } from "./h2-frames.ts";
import { duplexOf, type UpstreamSessions } from "./h2-sessions.ts";

const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants;
const END_STREAM = 0x1;


function copyHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name)) continue;
    if (name === "te" && value !== "trailers") continue;
    out[name] = value as string | string[];
  }
  return out;
}

const headerText = (value: string | string[] | undefined): string | undefined => (Array.isArray(value) ? value.join(", ") : value);

/** Answers that carry trailers must be sent with waitForTrailers, and that is decided when the headers go out. */
const expectsTrailers = (headers: IncomingHttpHeaders): boolean =>
  String(headers["content-type"] ?? "").startsWith("application/grpc") || headers.trailer !== undefined;

export class Http2Proxy {
  private readonly server: http2.Http2Server;
  private readonly accepted = new Set<Duplex>();

  constructor(
    private readonly ctx: ListenerContext,
    private readonly sessions: UpstreamSessions,
  ) {
    this.server = http2.createServer();
    this.server.on("stream", (stream, headers, flags) => void this.onStream(stream, headers, flags));
    this.server.on("sessionError", (error) => ctx.log.debug("http2.session-error", { port: ctx.port, error: error.message }));
    this.server.on("error", (error) => ctx.log.warn("http2.error", { port: ctx.port, error: error.message }));
  }

  /** Hands over a client connection whose first bytes (the h2 preface) were already read. */
  accept(socket: ByteSocket, initial: Buffer): void {
    this.ctx.counters.http2Sessions++;
    const duplex = duplexOf(socket, initial);
    this.accepted.add(duplex);
    duplex.once("close", () => this.accepted.delete(duplex));
    this.server.emit("connection", duplex);
  }

  close(): void {
    for (const socket of this.accepted) socket.destroy();
    this.server.close();
  }

  private async onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number): Promise<void> {
    const { ctx } = this;
    stream.on("error", () => undefined); // a client reset is handled by 'close' below
    ctx.counters.requests++;
    const path = String(headers[":path"] ?? "/");
    const match = ctx.routes.match(ctx.port, (name) => headerText(headers[name]), path);
    let target: Upstream = ctx.fallback;
    let routed = false;
    if (match) {
      if (ctx.health.isDown(match.upstream)) ctx.counters.fallbacks++;
      else {
        target = match.upstream;
        routed = true;
        ctx.counters.routed++;
      }
    }

    let session: ClientHttp2Session;
    try {
      session = await this.sessions.get(target);
    } catch (error) {
      if (routed) {
        ctx.health.markDown(target);
        ctx.counters.routed--;
        ctx.counters.fallbacks++;
        ctx.log.info("route.fallback", { port: ctx.port, upstream: upstreamKey(target), why: (error as Error).message });
        target = ctx.fallback;
        routed = false;
        try {
          session = await this.sessions.get(target);
        } catch (again) {
          return this.fail(stream, (again as Error).message);
        }
      } else return this.fail(stream, (error as Error).message);
    }
    if (stream.closed || stream.destroyed) return;

    const endStream = (flags & END_STREAM) !== 0;
    let upstream: ClientHttp2Stream;
    try {
      upstream = session.request({ ...copyHeaders(headers), ":scheme": "http" }, { endStream });
    } catch (error) {
      return this.fail(stream, (error as Error).message);
    }
    if (!endStream) stream.pipe(upstream);

    let responded = false;
    let trailers: IncomingHttpHeaders | undefined;
    upstream.on("response", (responseHeaders, responseFlags) => {
      if (stream.closed || stream.destroyed) return;
      responded = true;
      const out = copyHeaders(responseHeaders);
      if ((responseFlags & END_STREAM) !== 0) {
        // Headers-only answer (a gRPC error is often "trailers-only").
        stream.respond(out, { endStream: true });
        return;
      }
      const waitForTrailers = expectsTrailers(responseHeaders);
      stream.respond(out, { waitForTrailers });
      if (waitForTrailers) {
        stream.once("wantTrailers", () => {
          if (trailers) stream.sendTrailers(copyHeaders(trailers));
          else stream.close(NGHTTP2_INTERNAL_ERROR); // the upstream ended without the trailers it owed
        });
      }
      upstream.pipe(stream);
    });
    upstream.on("trailers", (received) => {
      trailers = received;
    });
    upstream.on("error", () => undefined); // the 'close' below carries the outcome
    upstream.on("close", () => {
      if (stream.closed || stream.destroyed) return;
      if (!responded) return this.fail(stream, `the upstream reset the stream (code ${upstream.rstCode ?? "?"})`);
      if (upstream.rstCode && upstream.rstCode !== http2.constants.NGHTTP2_NO_ERROR) stream.close(upstream.rstCode);
    });
    stream.on("close", () => {
      if (!upstream.closed && !upstream.destroyed) upstream.close(NGHTTP2_CANCEL);
    });
  }

  private fail(stream: ServerHttp2Stream, why: string): void {
    this.ctx.counters.upstreamErrors++;
    this.ctx.log.info("http2.bad-gateway", { port: this.ctx.port, error: why });
    if (stream.closed || stream.destroyed) return;
    if (stream.headersSent) return void stream.close(NGHTTP2_INTERNAL_ERROR);
    try {
      // gRPC clients read grpc-status; 14 is UNAVAILABLE, what a gone backend is.
      stream.respond(
        { ":status": 502, "content-type": "text/plain; charset=utf-8", "grpc-status": "14", "grpc-message": encodeURIComponent(`ktctl router: ${why}`) },
        { endStream: false },
      );
      stream.end(`ktctl router: ${why}\n`);
    } catch {
      stream.close(NGHTTP2_REFUSED_STREAM);
    }
  }
}
