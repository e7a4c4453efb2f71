// HTTP/2 over cleartext (h2c with prior knowledge, which is how gRPC talks inside a cluster).
// Every stream is routed on its own headers (a gRPC mark is metadata, i.e. an h2 header) and
// forwarded as a stream of one multiplexed connection per upstream; response headers, body and
// trailers (grpc-status, grpc-message) pass through, and so do resets in both directions.

import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import { Duplex } from "node:stream";
import type { Upstream } from "../../core/protocol/router.ts";
import type { ListenerContext } from "./http1-proxy.ts";
import { connectBytes, type ByteSocket } from "./byte-socket.ts";
import { upstreamKey } from "./pool.ts";

const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants;
const END_STREAM = 0x1;

/** Connection-specific headers HTTP/2 forbids; an HTTP/1-minded peer might still send them. */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "http2-settings"]);

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
  private readonly sessions = new Map<string, Promise<ClientHttp2Session>>();
  private readonly accepted = new Set<Duplex>();

  constructor(private readonly ctx: ListenerContext) {
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
    for (const session of this.sessions.values()) void session.then((s) => s.destroy(), () => undefined);
    this.sessions.clear();
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
      session = await this.session(target);
    } catch (error) {
      if (routed) {
        ctx.health.markDown(target);
        ctx.counters.routed--;
        ctx.counters.fallbacks++;
        ctx.log.info("route.fallback", { port: ctx.port, upstream: upstreamKey(target), why: (error as Error).message });
        target = ctx.fallback;
        routed = false;
        try {
          session = await this.session(target);
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

  /** One connected HTTP/2 session per upstream, made on first use and replaced when it ends. */
  private session(upstream: Upstream): Promise<ClientHttp2Session> {
    const key = upstreamKey(upstream);
    const existing = this.sessions.get(key);
    if (existing) return existing;
    const made = connectBytes(upstream, this.ctx.connectTimeoutMs).then((socket) => new Promise<ClientHttp2Session>((resolve, reject) => {
      const session = http2.connect(`http://${key}`, { createConnection: () => duplexOf(socket) as never });
      const forget = () => {
        if (this.sessions.get(key) === made) this.sessions.delete(key);
      };
      const timer = setTimeout(() => {
        forget();
        session.destroy();
        reject(new Error(`no answer from ${key} within ${this.ctx.connectTimeoutMs} ms`));
      }, this.ctx.connectTimeoutMs);
      session.once("connect", () => {
        clearTimeout(timer);
        resolve(session);
      });
      session.on("error", (error: Error) => {
        clearTimeout(timer);
        forget();
        reject(new Error(`${key}: ${error.message}`));
      });
      session.on("goaway", forget);
      session.on("close", forget);
    }));
    made.catch(() => undefined);
    this.sessions.set(key, made);
    return made;
  }
}

/**
 * The stream node:http2 reads and writes, over the router's own socket, with back-pressure both
 * ways. node:http2 writes each frame on its own (a gRPC answer is three: headers, message,
 * trailers); the frames written in one turn of the event loop leave in one write, one syscall.
 */
export function duplexOf(socket: ByteSocket, initial: Buffer = Buffer.alloc(0)): Duplex {
  let writeDone: ((error?: Error | null) => void) | undefined;
  let batch: Buffer[] = [];
  let flushing = false;
  const flush = () => {
    flushing = false;
    const bytes = batch.length === 1 ? batch[0]! : Buffer.concat(batch);
    batch = [];
    // Bytes the kernel did not take wait in the socket's queue; the next write sees the backlog.
    socket.write(bytes);
  };
  const duplex = new Duplex({
    read: () => socket.resume(),
    write(chunk: Buffer, _encoding, callback) {
      batch.push(chunk);
      if (!flushing) {
        flushing = true;
        queueMicrotask(flush);
      }
      // While the kernel is behind, the next write waits for the drain.
      if (socket.backlog > 0) writeDone = callback;
      else callback();
    },
    final(callback) {
      if (batch.length > 0) flush();
      socket.shutdown();
      callback();
    },
    destroy(error, callback) {
      socket.destroy();
      callback(error);
    },
  });
  socket.sink = {
    data: (chunk) => {
      if (!duplex.push(chunk)) socket.pause();
    },
    end: () => void duplex.push(null),
    close: (error) => void duplex.destroy(error),
    drain: () => {
      const done = writeDone;
      writeDone = undefined;
      done?.();
    },
  };
  if (initial.length > 0) duplex.push(initial);
  if (socket.readEnded) duplex.push(null);
  if (socket.closed) duplex.destroy();
  return duplex;
}
