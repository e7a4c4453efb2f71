// node:http2 client sessions to upstreams, one per upstream, shared by every client connection of
// a listener: the developers' upstreams of the h2c relay, and every upstream of the node:http2
// proxy that serves a connection when the original pods cannot be reached. Both ride the router's
// own sockets.

import http2, { type ClientHttp2Session } from "node:http2";
import { Duplex } from "node:stream";
import type { Upstream } from "../../core/protocol/router.ts";
import { connectBytes, upstreamKey, type ByteSocket } from "./byte-socket.ts";

export class UpstreamSessions {
  private readonly sessions = new Map<string, Promise<ClientHttp2Session>>();

  constructor(private readonly connectTimeoutMs: number) {}

  /** One connected HTTP/2 session per upstream, made on first use and replaced when it ends. */
  get(upstream: Upstream): Promise<ClientHttp2Session> {
    const key = upstreamKey(upstream);
    const existing = this.sessions.get(key);
    if (existing) return existing;
    const made = connectBytes(upstream, this.connectTimeoutMs).then((socket) => new Promise<ClientHttp2Session>((resolve, reject) => {
      const session = http2.connect(`http://${key}`, { createConnection: () => duplexOf(socket) as never });
      const forget = () => {
        if (this.sessions.get(key) === made) this.sessions.delete(key);
      };
      const timer = setTimeout(() => {
        forget();
        session.destroy();
        reject(new Error(`no answer from ${key} within ${this.connectTimeoutMs} ms`));
      }, this.connectTimeoutMs);
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

  close(): void {
    for (const session of this.sessions.values()) void session.then((s) => s.destroy(), () => undefined);
    this.sessions.clear();
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
