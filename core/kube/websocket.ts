// A WebSocket client for the API server's streaming endpoints, binary messages only.
// Why not `ws` or Bun's WebSocket: both refuse the subprotocol "SPDY/3.1+portforward.k8s.io"
// ("/" and "+" are not RFC 6455 token characters), and that is the name the API server answers
// to. Owning the client also lets a port-forward write each frame without an extra copy: payloads
// handed to sendOwned are masked in place.
//
// Frames are passed up as they arrive, a message split over several frames in several pieces: the
// SPDY tunnel is a byte stream that does not care where messages end, and v4 only needs to know
// which piece starts a message.

import { createHash, randomBytes, randomFillSync } from "node:crypto";
import net from "node:net";
import tls from "node:tls";
import type { TlsMaterial } from "./transport.ts";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/** The most a client frame header takes (2 + 8 length bytes + 4 mask bytes): see sendWithHeadroom. */
export const WS_HEADROOM = 14;
const MAX_HANDSHAKE_BYTES = 1024 * 1024;
/**
 * Bound on the TCP handshake alone. On a silent network (packets lost, nothing refused) a SYN waits
 * on the kernel's backoff (resent after 1, 3, 7, 15 s), so a connection begun during an outage may
 * not try again until seconds after the network is back, and then miss the caller's bound on the
 * whole upgrade. Given up after the first resend, the caller's next attempt sends its SYN at once.
 * The rest of the upgrade keeps the caller's bound: a loaded API server may answer slowly.
 */
const TCP_HANDSHAKE_TIMEOUT_MS = 2_500;
const OP_CONTINUATION = 0x0;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;

export interface WebSocketRequest {
  /** ws:// or wss:// URL. */
  url: string;
  headers: Record<string, string>;
  /** Offered in Sec-WebSocket-Protocol, in order of preference. */
  protocols: string[];
  tls: TlsMaterial;
  timeoutMs: number;
}

/** The server answered the upgrade with something other than 101. */
export class UpgradeRefusedError extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`upgrade refused with HTTP ${status}`);
    this.name = "UpgradeRefusedError";
  }
}

export interface WebSocketHandlers {
  /** A piece of a data message; `first` on the piece that starts a message. */
  data(payload: Buffer, first: boolean): void;
  /** The connection is over: `error` unset for a clean close by either side. */
  closed(error?: Error): void;
}

/** Masks `data[from, to)` in place with `key`, the key's byte 0 applying at `from`. */
export function maskInPlace(data: Uint8Array, key: Uint8Array, from = 0, to = data.length): void {
  let i = from;
  // Bytes up to a 4-byte boundary of the underlying memory, then whole words, then the tail.
  const misalign = (data.byteOffset + i) & 3;
  const head = Math.min(to, misalign ? i + (4 - misalign) : i);
  for (; i < head; i++) data[i]! ^= key[(i - from) & 3]!;
  const words = (to - i) >>> 2;
  if (words > 0) {
    const k = (i - from) & 3;
    // The word at memory position i sees key bytes k, k+1, k+2, k+3 (mod 4); little-endian words.
    const word =
      (key[k & 3]! | (key[(k + 1) & 3]! << 8) | (key[(k + 2) & 3]! << 16) | (key[(k + 3) & 3]! << 24)) >>> 0;
    const view = new Uint32Array(data.buffer, data.byteOffset + i, words);
    for (let w = 0; w < words; w++) view[w]! ^= word;
    i += words * 4;
  }
  for (; i < to; i++) data[i]! ^= key[(i - from) & 3]!;
}

/** A client frame header (with its mask key) for a payload of `length` bytes. */
export function frameHeader(opcode: number, length: number, key: Uint8Array, fin = true): Buffer {
  const size = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const header = Buffer.allocUnsafe(size + 4);
  header[0] = (fin ? 0x80 : 0) | opcode;
  if (length < 126) {
    header[1] = 0x80 | length;
  } else if (length < 65536) {
    header[1] = 0x80 | 126;
    header.writeUInt16BE(length, 2);
  } else {
    header[1] = 0x80 | 127;
    header.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
    header.writeUInt32BE(length >>> 0, 6);
  }
  header.set(key, size);
  return header;
}

/** Parses server frames (unmasked) from a byte stream that arrives in arbitrary slices. */
export class FrameReader {
  private readonly header = Buffer.alloc(14);
  private headerFill = 0;
  private left = 0;
  private inFrame = false;
  private opcode = 0;
  private fin = false;
  private control: Buffer[] = [];
  /** Inside a message whose frames have not all arrived. */
  private messageOpen = false;
  /** A message has started and none of its bytes has been passed on yet. */
  private firstPending = false;

  constructor(
    private readonly onData: (payload: Buffer, first: boolean) => void,
    private readonly onControl: (opcode: number, payload: Buffer) => void,
  ) {}

  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (!this.inFrame) {
        // The header: 2 bytes, then 0, 2 or 8 bytes of extended length (server frames carry no mask).
        // A header split between reads resumes here with some of it (maybe more than 2 bytes) kept.
        const need = (n: number) => {
          if (this.headerFill < n) {
            const k = Math.min(n - this.headerFill, chunk.length - at);
            chunk.copy(this.header, this.headerFill, at, at + k);
            this.headerFill += k;
            at += k;
          }
          return this.headerFill >= n;
        };
        if (!need(2)) return;
        if (this.header[1]! & 0x80) throw new Error("the server sent a masked frame");
        const short = this.header[1]! & 0x7f;
        if (!need(short === 126 ? 4 : short === 127 ? 10 : 2)) return;
        this.headerFill = 0;
        this.left = short === 126 ? this.header.readUInt16BE(2) : short === 127 ? this.header.readUInt32BE(2) * 2 ** 32 + this.header.readUInt32BE(6) : short;
        this.fin = (this.header[0]! & 0x80) !== 0;
        this.opcode = this.header[0]! & 0x0f;
        this.inFrame = true;
        if (this.opcode >= OP_CLOSE) {
          if (!this.fin || this.left > 125) throw new Error("invalid control frame");
          this.control = [];
        } else if (this.opcode === OP_CONTINUATION) {
          if (!this.messageOpen) throw new Error("continuation frame outside a message");
        } else {
          if (this.messageOpen) throw new Error("new message inside a fragmented one");
          this.messageOpen = true;
          this.firstPending = true;
        }
        if (this.left === 0) this.endFrame();
        continue;
      }
      const n = Math.min(this.left, chunk.length - at);
      const piece = chunk.subarray(at, at + n);
      at += n;
      this.left -= n;
      if (this.opcode >= OP_CLOSE) {
        this.control.push(piece);
        if (this.left === 0) this.endFrame();
      } else {
        const first = this.firstPending;
        this.firstPending = false;
        if (this.left === 0) this.endFrame();
        this.onData(piece, first);
      }
    }
  }

  private endFrame(): void {
    this.inFrame = false;
    if (this.opcode >= OP_CLOSE) {
      const parts = this.control;
      this.control = [];
      this.onControl(this.opcode, parts.length === 1 ? parts[0]! : Buffer.concat(parts));
    } else if (this.fin) {
      this.messageOpen = false;
    }
  }
}

/** Random mask keys drawn from one refilled pool: one syscall-free draw per frame. */
class MaskKeys {
  private pool = Buffer.alloc(0);
  private at = 0;

  next(): Buffer {
    if (this.at + 4 > this.pool.length) {
      this.pool = Buffer.allocUnsafe(4096);
      randomFillSync(this.pool);
      this.at = 0;
    }
    const key = this.pool.subarray(this.at, this.at + 4);
    this.at += 4;
    return key;
  }
}

export class ClientWebSocket {
  private readonly keys = new MaskKeys();
  private readonly reader: FrameReader;
  private handlers: WebSocketHandlers | undefined;
  private pending: { payload: Buffer; first: boolean }[] = [];
  /** Pieces of the read being parsed, handed up together (see deliver). */
  private batch: { payload: Buffer; first: boolean }[] = [];
  private streamMode = false;
  private closeSent = false;
  private over = false;
  private overError: Error | undefined;

  private constructor(
    private readonly socket: net.Socket,
    readonly protocol: string,
  ) {
    this.reader = new FrameReader(
      (payload, first) => this.batch.push({ payload, first }),
      (opcode, payload) => {
        this.deliver(); // data that came before a close must not come after it
        this.onControl(opcode, payload);
      },
    );
    socket.on("data", (chunk: Buffer) => this.receive(chunk));
    socket.on("error", (error) => this.finish(error));
    socket.on("close", () => this.finish(this.closeSent ? undefined : new Error("connection closed without a close frame")));
    socket.on("end", () => socket.end());
  }

  /** Connects, upgrades, and resolves once the server agreed to one of `protocols`. */
  static connect(request: WebSocketRequest): Promise<ClientWebSocket> {
    const url = new URL(request.url);
    const secure = url.protocol === "wss:" || url.protocol === "https:";
    const port = Number(url.port || (secure ? 443 : 80));
    const host = url.hostname.replace(/^\[|\]$/g, "");
    const key = randomBytes(16).toString("base64");
    const lines = [
      `GET ${url.pathname}${url.search} HTTP/1.1`,
      `Host: ${url.host}`,
      "Connection: Upgrade",
      "Upgrade: websocket",
      "Sec-WebSocket-Version: 13",
      `Sec-WebSocket-Key: ${key}`,
      `Sec-WebSocket-Protocol: ${request.protocols.join(", ")}`,
      ...Object.entries(request.headers).map(([name, value]) => `${name}: ${value}`),
    ];
    const socket = secure
      ? tls.connect({
          host,
          port,
          ca: request.tls.ca,
          cert: request.tls.cert,
          key: request.tls.key,
          rejectUnauthorized: request.tls.rejectUnauthorized,
          servername: request.tls.serverName ?? (net.isIP(host) ? undefined : host),
          ALPNProtocols: ["http/1.1"],
        })
      : net.connect({ host, port });
    socket.setNoDelay(true);

    return new Promise((resolve, reject) => {
      let received: Buffer = Buffer.alloc(0);
      let settled = false;
      const timer = setTimeout(() => fail(new Error(`no WebSocket upgrade within ${request.timeoutMs} ms`)), request.timeoutMs);
      const handshakeMs = Math.min(TCP_HANDSHAKE_TIMEOUT_MS, request.timeoutMs);
      const handshakeTimer = setTimeout(() => fail(new Error(`no TCP answer from ${host}:${port} within ${handshakeMs} ms`)), handshakeMs);
      socket.once("connect", () => clearTimeout(handshakeTimer));
      const fail = (error: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clearTimeout(handshakeTimer);
        socket.destroy();
        reject(error);
      };
      const onData = (chunk: Buffer) => {
        received = received.length ? Buffer.concat([received, chunk]) : chunk;
        const end = received.indexOf("\r\n\r\n");
        if (end < 0) {
          if (received.length > MAX_HANDSHAKE_BYTES) fail(new Error("oversized upgrade response"));
          return;
        }
        const head = parseHead(received.subarray(0, end).toString("latin1"));
        const rest = received.subarray(end + 4);
        if (head.status !== 101) {
          socket.off("data", onData);
          readBody(socket, head.headers, rest).then(
            (body) => fail(new UpgradeRefusedError(head.status, body)),
            () => fail(new UpgradeRefusedError(head.status, "")),
          );
          return;
        }
        const accept = createHash("sha1").update(key + GUID).digest("base64");
        if (head.headers.get("sec-websocket-accept") !== accept) return fail(new Error("the server's Sec-WebSocket-Accept does not match"));
        const protocol = head.headers.get("sec-websocket-protocol") ?? "";
        if (!request.protocols.includes(protocol)) {
          return fail(new Error(`the server chose subprotocol "${protocol}", offered: ${request.protocols.join(", ")}`));
        }
        settled = true;
        clearTimeout(timer);
        socket.off("data", onData);
        socket.off("error", fail);
        socket.off("close", onClose);
        const ws = new ClientWebSocket(socket, protocol);
        if (rest.length) ws.receive(rest);
        resolve(ws);
      };
      const onClose = () => fail(new Error("connection closed during the WebSocket upgrade"));
      socket.on("data", onData);
      socket.once("error", fail);
      socket.once("close", onClose);
      socket.write(`${lines.join("\r\n")}\r\n\r\n`);
    });
  }

  /**
   * Starts delivering; data that arrived before is delivered first. In stream mode message
   * boundaries do not matter to the reader (SPDY), so everything one read brought in comes up as one
   * piece; otherwise only the pieces of one message are joined.
   */
  attach(handlers: WebSocketHandlers, options: { stream?: boolean } = {}): void {
    this.streamMode = options.stream ?? false;
    this.handlers = handlers;
    const pending = this.pending;
    this.pending = [];
    for (const { payload, first } of pending) handlers.data(payload, first);
    if (this.over) handlers.closed(this.overError);
  }

  get open(): boolean {
    return !this.over && !this.closeSent;
  }

  /**
   * Sends `payload` as one binary message. The payload is masked IN PLACE: pass only buffers
   * nobody reads afterwards. The callback runs once the socket has taken the bytes.
   */
  sendOwned(payload: Buffer, callback?: (error?: Error | null) => void): boolean {
    if (!this.open) {
      callback?.(new Error("WebSocket is closed"));
      return false;
    }
    const key = this.keys.next();
    maskInPlace(payload, key);
    this.socket.cork();
    this.socket.write(frameHeader(OP_BINARY, payload.length, key));
    const more = this.socket.write(payload, callback);
    this.socket.uncork();
    return more;
  }

  /**
   * Sends `buffer` minus its first WS_HEADROOM bytes as one binary message, writing the frame header
   * into that headroom: one socket write, no copy. The payload is masked in place, as in sendOwned.
   */
  sendWithHeadroom(buffer: Buffer, callback?: (error?: Error | null) => void): boolean {
    if (!this.open) {
      callback?.(new Error("WebSocket is closed"));
      return false;
    }
    const length = buffer.length - WS_HEADROOM;
    const key = this.keys.next();
    maskInPlace(buffer, key, WS_HEADROOM);
    const header = frameHeader(OP_BINARY, length, key);
    const start = WS_HEADROOM - header.length;
    header.copy(buffer, start);
    return this.socket.write(start === 0 ? buffer : buffer.subarray(start), callback);
  }

  /** Sends a copy of `payload` as one binary message (the caller's buffer is left alone). */
  send(payload: Uint8Array, callback?: (error?: Error | null) => void): boolean {
    return this.sendOwned(Buffer.from(payload), callback);
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  /** A clean close: a close frame, then the server closes the connection. */
  close(code = 1000): void {
    if (this.over || this.closeSent) return;
    this.closeSent = true;
    const body = Buffer.alloc(2);
    body.writeUInt16BE(code);
    const key = this.keys.next();
    maskInPlace(body, key);
    this.socket.write(Buffer.concat([frameHeader(OP_CLOSE, 2, key), body]));
    // The server answers with its own close frame and closes; do not wait forever for a peer that does not.
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  destroy(): void {
    this.closeSent = true;
    this.socket.destroy();
  }

  /**
   * Hands up what one read brought, joining pieces where allowed: a server that writes a message as
   * many small frames would otherwise cost every layer above one call per frame. Joining copies a
   * read's worth of bytes; each piece passed up costs far more than that (and a syscall downstream).
   */
  private deliver(): void {
    const batch = this.batch;
    if (batch.length === 0) return;
    this.batch = [];
    let start = 0;
    for (let i = 1; i <= batch.length; i++) {
      if (i < batch.length && (this.streamMode || !batch[i]!.first)) continue;
      const payload = i - start === 1 ? batch[start]!.payload : Buffer.concat(batch.slice(start, i).map((p) => p.payload));
      const first = batch[start]!.first;
      if (this.handlers) this.handlers.data(payload, first);
      else this.pending.push({ payload, first });
      start = i;
    }
  }

  private receive(chunk: Buffer): void {
    try {
      this.reader.push(chunk);
      this.deliver();
    } catch (error) {
      this.batch = [];
      this.socket.destroy();
      this.finish(error as Error);
    }
  }

  private onControl(opcode: number, payload: Buffer): void {
    if (opcode === OP_PING) {
      if (this.over || this.closeSent) return;
      const key = this.keys.next();
      const body = Buffer.from(payload);
      maskInPlace(body, key);
      this.socket.write(Buffer.concat([frameHeader(OP_PONG, body.length, key), body]));
    } else if (opcode === OP_CLOSE) {
      if (!this.closeSent) {
        this.closeSent = true;
        const key = this.keys.next();
        const body = Buffer.from(payload.subarray(0, 2));
        maskInPlace(body, key);
        this.socket.write(Buffer.concat([frameHeader(OP_CLOSE, body.length, key), body]));
      }
      this.socket.end();
      this.finish(undefined);
    }
    // pongs: nothing to do
  }

  private finish(error: Error | undefined): void {
    if (this.over) return;
    this.over = true;
    this.overError = error;
    this.handlers?.closed(error);
  }
}

function parseHead(text: string): { status: number; headers: Map<string, string> } {
  const [statusLine = "", ...lines] = text.split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0);
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return { status, headers };
}

/** The body of a refusal: by Content-Length, chunked, or to the end of the connection. */
function readBody(socket: net.Socket, headers: Map<string, string>, initial: Buffer): Promise<string> {
  const length = headers.has("content-length") ? Number(headers.get("content-length")) : undefined;
  const chunked = /chunked/i.test(headers.get("transfer-encoding") ?? "");
  return new Promise((resolve, reject) => {
    let data = initial;
    const done = () => {
      socket.off("data", onData);
      resolve((chunked ? dechunk(data) : data.subarray(0, length ?? data.length)).toString("utf8"));
    };
    const complete = () =>
      (length !== undefined && data.length >= length) || (chunked && /(^|\r\n)0\r\n\r\n$/.test(data.subarray(-7).toString("latin1")));
    const onData = (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      if (complete() || data.length > MAX_HANDSHAKE_BYTES) done();
    };
    if (complete()) return done();
    socket.on("data", onData);
    socket.once("end", done);
    socket.once("close", done);
    socket.once("error", reject);
  });
}

function dechunk(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  while (at < data.length) {
    const lineEnd = data.indexOf("\r\n", at);
    if (lineEnd < 0) break;
    const size = parseInt(data.subarray(at, lineEnd).toString("latin1"), 16);
    if (!size) break;
    parts.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
  return Buffer.concat(parts);
}
