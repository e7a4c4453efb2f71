// SOCKS5 and HTTP proxy on one loopback port (the first byte tells them apart: 0x05 is SOCKS5).
// Every connection is carried by `openStream(host, port)`; names travel unresolved, so the cluster
// side resolves them with cluster DNS and the connect namespace's search path.
//   SOCKS5: no authentication, CONNECT, IPv4 and domain names (RFC 1928).
//   HTTP:   CONNECT host:port (any TCP protocol, TLS included), and plain requests with an absolute
//           URI (`GET http://echo/ HTTP/1.1`), sent on as origin-form requests, one per connection.

import { createServer, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { ExitCode, KtctlError } from "../errors.ts";
import { carry } from "./carry.ts";
import type { OpenStream, ProxyServer, ProxyServerOptions } from "../plugin-api.ts";

export type { OpenStream, ProxyServer, ProxyServerOptions };

const MAX_HEAD = 64 * 1024;

/** Buffered reads from a socket during a handshake; the rest is handed over with `detach`. */
class HandshakeReader {
  private buffer = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  private ended = false;
  private readonly onData = (chunk: Buffer) => {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    this.waiter?.();
  };
  private readonly onEnd = () => {
    this.ended = true;
    this.waiter?.();
  };

  constructor(private readonly socket: Socket) {
    socket.on("data", this.onData);
    socket.on("end", this.onEnd);
    socket.on("close", this.onEnd);
  }

  private async until(ready: () => boolean): Promise<void> {
    while (!ready()) {
      if (this.ended) throw new Error("client closed during the handshake");
      await new Promise<void>((resolve) => (this.waiter = resolve));
      this.waiter = undefined;
    }
  }

  async peek(): Promise<number> {
    await this.until(() => this.buffer.length > 0);
    return this.buffer[0]!;
  }

  async read(n: number): Promise<Buffer> {
    await this.until(() => this.buffer.length >= n);
    const out = this.buffer.subarray(0, n);
    this.buffer = this.buffer.subarray(n);
    return out;
  }

  /** Up to and including `delimiter`. */
  async readUntil(delimiter: string, max: number): Promise<Buffer> {
    let at = -1;
    await this.until(() => {
      at = this.buffer.indexOf(delimiter);
      if (at < 0 && this.buffer.length > max) throw new Error("request head too large");
      return at >= 0;
    });
    return this.read(at + delimiter.length);
  }

  /** Stops reading; returns what was read past the handshake. The socket is left paused. */
  detach(): Buffer {
    this.socket.pause();
    this.socket.off("data", this.onData);
    this.socket.off("end", this.onEnd);
    this.socket.off("close", this.onEnd);
    return this.buffer;
  }
}

/** SOCKS5 reply code for a failure to open the stream (RFC 1928 section 6). */
export function socksReplyFor(error: unknown): number {
  const e = error as { reason?: string; code?: string };
  const reason = e?.reason ?? e?.code ?? "";
  switch (reason) {
    case "refused":
    case "ECONNREFUSED":
      return 5;
    case "not-found":
    case "ENOTFOUND":
    case "unreachable":
    case "EHOSTUNREACH":
      return 4;
    case "ENETUNREACH":
      return 3;
    case "timeout":
    case "ETIMEDOUT":
      return 4;
    default:
      return 1;
  }
}

/** host:port of a CONNECT target or URL authority; IPv6 in brackets. */
export function parseAuthority(authority: string, defaultPort?: number): { host: string; port: number } | undefined {
  const m = /^(\[[^\]]+\]|[^:\s/]+)(?::(\d{1,5}))?$/.exec(authority);
  if (!m) return undefined;
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (port === undefined || port < 1 || port > 65535) return undefined;
  return { host: m[1]!.replace(/^\[|\]$/g, ""), port };
}

const HOP_BY_HOP = new Set(["proxy-connection", "proxy-authorization", "keep-alive", "connection"]);

/**
 * The request as the origin server must see it: origin-form target, no proxy headers, and
 * `Connection: close`, because the next request on the client's connection may be for another host.
 */
export function rewriteProxyRequest(head: string): { host: string; port: number; head: string } | undefined {
  const lines = head.split("\r\n");
  const [method, target, version] = (lines[0] ?? "").split(" ");
  if (!method || !target || !version) return undefined;
  const m = /^http:\/\/([^/?#]+)([^#]*)/i.exec(target);
  if (!m) return undefined;
  const authority = parseAuthority(m[1]!.replace(/^[^@]*@/, ""), 80);
  if (!authority) return undefined;
  const path = m[2] || "/";
  const headers = lines.slice(1).filter((line) => line && !HOP_BY_HOP.has(line.slice(0, line.indexOf(":")).trim().toLowerCase()));
  if (!headers.some((line) => /^host\s*:/i.test(line))) headers.unshift(`Host: ${m[1]}`);
  return { ...authority, head: [`${method} ${path} ${version}`, ...headers, "Connection: close", "", ""].join("\r\n") };
}

export function startProxyServer(options: ProxyServerOptions): Promise<ProxyServer> {
  const host = options.host ?? "127.0.0.1";
  const sockets = new Set<Socket>();
  const counts = { socks: 0, connect: 0, http: 0, refused: 0 };

  const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    void serve(socket).catch(() => socket.destroy());
  });

  const open = async (target: { host: string; port: number }) => options.openStream(target.host, target.port);

  async function serve(socket: Socket) {
    const reader = new HandshakeReader(socket);
    if ((await reader.peek()) === 0x05) return socks(socket, reader);
    return http(socket, reader);
  }

  async function socks(socket: Socket, reader: HandshakeReader) {
    const [, methodCount] = await reader.read(2);
    const methods = await reader.read(methodCount!);
    if (!methods.includes(0x00)) {
      socket.end(Buffer.from([0x05, 0xff]));
      counts.refused++;
      return;
    }
    socket.write(Buffer.from([0x05, 0x00]));
    const [version, command, , addressType] = await reader.read(4);
    let targetHost: string | undefined;
    if (addressType === 0x01) targetHost = [...(await reader.read(4))].join(".");
    else if (addressType === 0x03) targetHost = (await reader.read((await reader.read(1))[0]!)).toString("latin1");
    else if (addressType === 0x04) await reader.read(16);
    const port = (await reader.read(2)).readUInt16BE(0);
    const reply = (code: number) => Buffer.from([0x05, code, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);
    if (version !== 0x05 || command !== 0x01 || !targetHost) {
      // 7: command not supported (BIND, UDP ASSOCIATE); 8: address type not supported (IPv6).
      socket.end(reply(command !== 0x01 ? 0x07 : 0x08));
      counts.refused++;
      return;
    }
    const rest = reader.detach();
    let remote: Duplex;
    try {
      remote = await open({ host: targetHost, port });
    } catch (error) {
      options.onError?.(error, `${targetHost}:${port}`);
      socket.end(reply(socksReplyFor(error)));
      counts.refused++;
      return;
    }
    counts.socks++;
    socket.write(reply(0x00));
    if (rest.length) remote.write(rest);
    void carry(socket, remote);
  }

  async function http(socket: Socket, reader: HandshakeReader) {
    const head = (await reader.readUntil("\r\n\r\n", MAX_HEAD)).toString("latin1");
    const [method, target] = head.split("\r\n")[0]!.split(" ");
    const fail = (status: string, text: string) => {
      socket.end(`HTTP/1.1 ${status}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(text) + 1}\r\nConnection: close\r\n\r\n${text}\n`);
      counts.refused++;
    };
    let destination: { host: string; port: number } | undefined;
    let firstBytes: Buffer | string = "";
    if (method === "CONNECT") {
      destination = target ? parseAuthority(target) : undefined;
      if (!destination) return fail("400 Bad Request", `bad CONNECT target ${target}`);
    } else {
      const rewritten = rewriteProxyRequest(head);
      if (!rewritten) return fail("400 Bad Request", "this is a proxy: send absolute http:// URIs or CONNECT");
      destination = rewritten;
      firstBytes = rewritten.head;
    }
    const rest = reader.detach();
    let remote: Duplex;
    try {
      remote = await open(destination);
    } catch (error) {
      options.onError?.(error, `${destination.host}:${destination.port}`);
      return fail("502 Bad Gateway", `ktctl: ${(error as Error)?.message ?? error}`);
    }
    if (method === "CONNECT") {
      counts.connect++;
      socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    } else {
      counts.http++;
      remote.write(firstBytes);
    }
    if (rest.length) remote.write(rest);
    void carry(socket, remote);
  }

  return new Promise((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) => {
      reject(
        error.code === "EADDRINUSE"
          ? new KtctlError(`proxy port ${options.port} on ${host} is already in use`, ExitCode.portInUse, "choose another with --proxyPort")
          : error,
      );
    });
    server.listen({ host, port: options.port, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : options.port;
      resolve({
        host,
        port,
        stats: () => ({ ...counts, open: sockets.size }),
        close: () =>
          new Promise<void>((done) => {
            for (const socket of sockets) socket.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
