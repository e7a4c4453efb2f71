// HTTP/1.1 as the tap sees it: two byte streams read incrementally, requests queued in order so a
// pipelined or keep-alive connection pairs each response with its request. The reader only finds
// message boundaries (Content-Length, chunked, until close); it never changes or holds bytes.

import type { TrafficRecord } from "../../plugin-api.ts";
import { BodyKeeper, type TapSink } from "./record.ts";

/** A head larger than this is not HTTP we can follow: the tap stops reading that connection. */
export const MAX_HEAD_BYTES = 64 * 1024;

export interface MessageHead {
  startLine: string;
  headers: [string, string][];
}

/** How a message's body ends. */
export type BodyFraming = { kind: "none" } | { kind: "length"; bytes: number } | { kind: "chunked" } | { kind: "close" } | { kind: "raw" };

interface ReaderEvents {
  /** Returns how the body of this message is framed. */
  head(head: MessageHead): BodyFraming;
  body(data: Uint8Array): void;
  end(): void;
}

const CRLF_CRLF = Buffer.from("\r\n\r\n");

/** Reads consecutive messages of one direction. */
export class MessageReader {
  private head: Buffer[] = [];
  private headBytes = 0;
  private headTail: Buffer = Buffer.alloc(0);
  private framing: BodyFraming | undefined;
  private remaining = 0;
  private chunk: "size" | "data" | "data-end" | "trailer" = "size";
  private line = "";
  broken = false;

  constructor(private readonly events: ReaderEvents) {}

  push(data: Uint8Array): void {
    let bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    while (bytes.length && !this.broken) {
      if (!this.framing) bytes = this.readHead(bytes);
      else bytes = this.readBody(bytes);
    }
  }

  /** The connection closed: a body that runs until close ends here. */
  close(): void {
    if (this.framing?.kind === "close") {
      this.framing = undefined;
      this.events.end();
    }
  }

  private readHead(bytes: Buffer): Buffer {
    // Search across the boundary of earlier pieces: keep the last 3 bytes seen in view.
    const tail = this.headTail;
    const window = tail.length ? Buffer.concat([tail, bytes]) : bytes;
    const found = window.indexOf(CRLF_CRLF);
    if (found < 0) {
      this.head.push(bytes);
      this.headBytes += bytes.length;
      this.headTail = Buffer.from(window.subarray(Math.max(0, window.length - 3)));
      if (this.headBytes > MAX_HEAD_BYTES) this.broken = true;
      return Buffer.alloc(0);
    }
    const used = found + 4 - tail.length;
    this.head.push(bytes.subarray(0, used));
    const text = Buffer.concat(this.head).toString("latin1");
    this.head = [];
    this.headBytes = 0;
    this.headTail = Buffer.alloc(0);
    const lines = text.slice(0, -4).split("\r\n");
    // Tolerate stray empty lines between messages (RFC 9112 §2.2).
    while (lines.length && lines[0] === "") lines.shift();
    if (!lines.length) return bytes.subarray(used);
    const headers: [string, string][] = [];
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      if (colon > 0) headers.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()]);
    }
    const framing = this.events.head({ startLine: lines[0]!, headers });
    this.startBody(framing);
    return bytes.subarray(used);
  }

  private startBody(framing: BodyFraming): void {
    if (framing.kind === "none" || (framing.kind === "length" && framing.bytes === 0)) {
      this.events.end();
      return;
    }
    this.framing = framing;
    this.remaining = framing.kind === "length" ? framing.bytes : 0;
    this.chunk = "size";
    this.line = "";
  }

  private finishBody(): void {
    this.framing = undefined;
    this.events.end();
  }

  private readBody(bytes: Buffer): Buffer {
    const framing = this.framing!;
    if (framing.kind === "close" || framing.kind === "raw") {
      this.events.body(bytes);
      return Buffer.alloc(0);
    }
    if (framing.kind === "length") {
      const take = Math.min(this.remaining, bytes.length);
      this.events.body(bytes.subarray(0, take));
      this.remaining -= take;
      if (this.remaining === 0) this.finishBody();
      return bytes.subarray(take);
    }
    return this.readChunked(bytes);
  }

  private readChunked(bytes: Buffer): Buffer {
    let at = 0;
    while (at < bytes.length) {
      if (this.chunk === "data") {
        const take = Math.min(this.remaining, bytes.length - at);
        this.events.body(bytes.subarray(at, at + take));
        at += take;
        this.remaining -= take;
        if (this.remaining === 0) {
          this.chunk = "data-end";
          this.remaining = 2;
        }
        continue;
      }
      if (this.chunk === "data-end") {
        const take = Math.min(this.remaining, bytes.length - at);
        at += take;
        this.remaining -= take;
        if (this.remaining === 0) this.chunk = "size";
        continue;
      }
      // "size" and "trailer" are line-oriented.
      const newline = bytes.indexOf(10, at);
      if (newline < 0) {
        this.line += bytes.toString("latin1", at);
        if (this.line.length > MAX_HEAD_BYTES) this.broken = true;
        return Buffer.alloc(0);
      }
      const line = (this.line + bytes.toString("latin1", at, newline)).replace(/\r$/, "");
      this.line = "";
      at = newline + 1;
      if (this.chunk === "size") {
        const size = parseInt(line.split(";")[0]!.trim(), 16);
        if (!Number.isFinite(size) || size < 0) {
          this.broken = true;
          return Buffer.alloc(0);
        }
        if (size === 0) this.chunk = "trailer";
        else {
          this.chunk = "data";
          this.remaining = size;
        }
      } else if (line === "") {
        this.finishBody();
        return bytes.subarray(at);
      }
    }
    return Buffer.alloc(0);
  }
}

const header = (headers: [string, string][], name: string): string | undefined => {
  const lower = name.toLowerCase();
  return headers.find(([n]) => n.toLowerCase() === lower)?.[1];
};

function requestFraming(headers: [string, string][]): BodyFraming {
  if (/(^|,)\s*chunked\s*$/i.test(header(headers, "transfer-encoding") ?? "")) return { kind: "chunked" };
  const length = Number(header(headers, "content-length"));
  return Number.isSafeInteger(length) && length > 0 ? { kind: "length", bytes: length } : { kind: "none" };
}

interface Pending {
  record: TrafficRecord;
  started: number;
  bodies: BodyKeeper;
  head: boolean;
  connectMethod: boolean;
}

/** Follows one HTTP/1.1 connection; emits one record per request once its response has ended. */
export class Http1Tap {
  private readonly queue: Pending[] = [];
  private current: Pending | undefined;
  private responseFor: Pending | undefined;
  /** After a 101 or a CONNECT the bytes are no longer HTTP: only counted. */
  private switched = false;
  private readonly requests: MessageReader;
  private readonly responses: MessageReader;

  constructor(private readonly sink: TapSink) {
    this.requests = new MessageReader({
      head: (head) => this.requestHead(head),
      body: (data) => {
        if (!this.current) return;
        this.current.record.requestBytes += data.length;
        this.current.bodies.request(data);
      },
      end: () => (this.current = undefined),
    });
    this.responses = new MessageReader({
      head: (head) => this.responseHead(head),
      body: (data) => {
        const pending = this.responseFor;
        if (!pending) return;
        pending.record.responseBytes += data.length;
        pending.bodies.response(data);
      },
      end: () => this.responseEnded(),
    });
  }

  get broken(): boolean {
    return this.requests.broken || this.responses.broken;
  }

  fromClient(chunk: Uint8Array): void {
    if (!this.switched) this.requests.push(chunk);
  }

  fromServer(chunk: Uint8Array): void {
    if (!this.switched) this.responses.push(chunk);
  }

  end(): void {
    this.responses.close();
    for (const pending of [this.responseFor, ...this.queue]) {
      if (!pending) continue;
      if (pending.record.status === undefined) pending.record.error = "connection closed before the response";
      this.emit(pending);
    }
    this.queue.length = 0;
    this.responseFor = undefined;
  }

  private requestHead(head: MessageHead): BodyFraming {
    const [method = "", path = ""] = head.startLine.split(" ");
    const record = this.sink.newRecord("http1");
    record.method = method;
    record.path = path;
    record.authority = header(head.headers, "host");
    record.requestHeaders = head.headers;
    const markHeader = this.sink.options.markHeader;
    if (markHeader) record.mark = header(head.headers, markHeader);
    const pending: Pending = {
      record,
      started: performance.now(),
      bodies: this.sink.bodyKeeper(),
      head: method === "HEAD",
      connectMethod: method === "CONNECT",
    };
    this.queue.push(pending);
    this.current = pending;
    return requestFraming(head.headers);
  }

  private responseHead(head: MessageHead): BodyFraming {
    const status = Number(head.startLine.split(" ")[1]);
    const pending = this.queue[0];
    // Interim answers (100 Continue, 103) precede the real one: nothing to record.
    if (status >= 100 && status < 200 && status !== 101) return { kind: "none" };
    if (!pending) return { kind: "close" };
    this.queue.shift();
    this.responseFor = pending;
    pending.record.status = status;
    pending.record.responseHeaders = head.headers;
    if (status === 101 || (pending.connectMethod && status >= 200 && status < 300)) {
      this.switched = true;
      return { kind: "none" };
    }
    if (pending.head || status === 204 || status === 304) return { kind: "none" };
    const framing = requestFraming(head.headers);
    if (framing.kind !== "none") return framing;
    return header(head.headers, "content-length") !== undefined ? { kind: "none" } : { kind: "close" };
  }

  private responseEnded(): void {
    const pending = this.responseFor;
    // An interim response's end: its request still waits for the real answer.
    if (!pending) return;
    this.responseFor = undefined;
    this.emit(pending);
  }

  private emit(pending: Pending): void {
    pending.record.durationMs = Math.round((performance.now() - pending.started) * 10) / 10;
    pending.bodies.fill(pending.record);
    this.sink.emit(pending.record);
  }
}
