// Clients and helpers for the router's unit tests: a raw keep-alive HTTP/1.1 client (so tests see
// exactly which connection carries what), h2c and gRPC-style calls, a WebSocket conversation, and
// a router started in-process in front of real local servers.

import http2 from "node:http2";
import net from "node:net";
import { WebSocket } from "ws";
import type { LogFields, ShadowLog } from "../../shadow/log.ts";
import type { Answer } from "../e2e/fixtures/protocol-server.ts";

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** One TCP connection, many requests in sequence (or pipelined), answers read by Content-Length. */
export class RawClient {
  private buffer = Buffer.alloc(0);
  private waiters: { resolve: (r: RawResponse) => void; reject: (e: Error) => void }[] = [];
  private closedError: Error | undefined;
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.drain();
    });
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
    const fail = (error: Error) => {
      this.closedError = error;
      for (const waiter of this.waiters.splice(0)) waiter.reject(error);
    };
    socket.on("error", fail);
    socket.on("close", () => fail(new Error("connection closed")));
  }

  static connect(port: number, host = "127.0.0.1"): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, host, () => resolve(new RawClient(socket)));
      socket.once("error", reject);
    });
  }

  send(text: string | Buffer): void {
    this.socket.write(text);
  }

  /** Resolves with the next complete answer on this connection. */
  next(): Promise<RawResponse> {
    return new Promise((resolve, reject) => {
      if (this.closedError && this.buffer.length === 0) return reject(this.closedError);
      this.waiters.push({ resolve, reject });
      this.drain();
    });
  }

  request(text: string | Buffer): Promise<RawResponse> {
    this.send(text);
    return this.next();
  }

  close(): void {
    this.socket.destroy();
  }

  private drain(): void {
    while (this.waiters.length > 0) {
      const end = this.buffer.indexOf("\r\n\r\n");
      if (end < 0) return;
      const lines = this.buffer.toString("latin1", 0, end).split("\r\n");
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(":");
        headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      const status = Number(lines[0]!.split(" ")[1]);
      const length = status === 101 || (status >= 100 && status < 200) ? 0 : Number(headers["content-length"] ?? 0);
      if (this.buffer.length < end + 4 + length) return;
      const body = this.buffer.toString("utf8", end + 4, end + 4 + length);
      this.buffer = this.buffer.subarray(end + 4 + length);
      this.waiters.shift()!.resolve({ status, headers, body });
      if (status === 101) return; // what follows is another protocol
    }
  }

  /** Bytes received after the last complete answer (for upgraded connections). */
  takeRest(): Buffer {
    const rest = this.buffer;
    this.buffer = Buffer.alloc(0);
    return rest;
  }
}

export const get = (path: string, headers: Record<string, string> = {}) =>
  `GET ${path} HTTP/1.1\r\nHost: echo\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("")}\r\n`;

export const podOf = (response: RawResponse): string => (JSON.parse(response.body) as Answer).pod;

/** An h2c call on a session; resolves with the answer's headers, body and trailers. */
export function h2Call(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: Buffer | string,
): Promise<{ headers: http2.IncomingHttpHeaders; body: Buffer; trailers?: http2.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, { endStream: body === undefined });
    let responseHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | undefined;
    const chunks: Buffer[] = [];
    stream.on("response", (h) => (responseHeaders = h));
    stream.on("trailers", (t) => (trailers = t));
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => resolve({ headers: responseHeaders, body: Buffer.concat(chunks), trailers }));
    stream.on("error", reject);
    if (body !== undefined) stream.end(body);
  });
}

/** A gRPC unary call as bytes on the wire: a 5-byte frame header, then the message. */
export function grpcFrame(message: Buffer): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  return frame;
}

/** Opens a WebSocket, reads the server's hello, sends one message, reads the echo. */
export function wsConversation(url: string, headers: Record<string, string>): Promise<{ hello: Answer; echo: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    let hello: Answer | undefined;
    ws.on("message", (data) => {
      if (!hello) {
        hello = JSON.parse(String(data)) as Answer;
        ws.send("ping");
      } else {
        resolve({ hello, echo: String(data) });
        ws.close();
      }
    });
    ws.on("error", reject);
    ws.on("unexpected-response", (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
  });
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A ShadowLog that keeps its lines for assertions. */
export function memoryLog(): ShadowLog & { lines: string[] } {
  const lines: string[] = [];
  const emit = (level: string) => (event: string, fields?: LogFields) =>
    lines.push(`${level} ${event} ${Object.entries(fields ?? {}).map(([k, v]) => `${k}=${v}`).join(" ")}`);
  return { lines, debug: emit("debug"), info: emit("info"), warn: emit("warn"), error: emit("error") };
}

/** A local TCP server on a free loopback port, each connection handed to `serve`; close() ends them all. */
export async function localServer(serve: (socket: net.Socket) => void): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    serve(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A TCP server for the raw-splice tests: echoes, or greets first and then echoes. */
export function tcpServer(greeting?: string): Promise<{ port: number; close(): Promise<void> }> {
  return localServer((socket) => {
    if (greeting) socket.write(greeting);
    socket.pipe(socket);
  });
}

/** Reads from a socket until `predicate` holds for everything read so far. */
export function readUntil(socket: net.Socket, predicate: (text: string) => boolean, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    const timer = setTimeout(() => {
      socket.off("data", onData);
      reject(new Error(`timed out; got ${JSON.stringify(text)}`));
    }, timeoutMs);
    const onData = (chunk: Buffer) => {
      text += chunk.toString("latin1");
      if (predicate(text)) {
        clearTimeout(timer);
        socket.off("data", onData);
        resolve(text);
      }
    };
    socket.on("data", onData);
  });
}
