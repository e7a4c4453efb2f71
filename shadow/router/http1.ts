// HTTP/1.1 message framing, as much as a router needs: where a request or response head ends,
// what it says (method, path, the few headers that decide framing and routing), and where its body
// ends. Bytes are forwarded untouched; this module only finds the boundaries.
//
// Strict on purpose (RFC 9112): CRLF line endings only, no obs-fold, no Content-Length together
// with Transfer-Encoding, one Content-Length value. When the router and an upstream could
// disagree on where a request ends, a second request could hide in the first one's body and skip
// routing; refusing such requests with 400 closes that door.

export const MAX_HEAD_BYTES = 64 * 1024;

export type BodyKind =
  | { kind: "none" }
  | { kind: "length"; length: number }
  | { kind: "chunked" }
  /** Response body that ends when the upstream closes the connection. */
  | { kind: "close" };

export interface RequestHead {
  method: string;
  /** The request target as sent (origin-form "/a?b", or absolute-form, or authority-form for CONNECT). */
  target: string;
  /** The path part used for prefix routes. */
  path: string;
  minorVersion: number;
  /** Lowercase name -> value (repeated headers joined with ", "). */
  headers: Record<string, string>;
  body: BodyKind;
  keepAlive: boolean;
  /** Upgrade request (WebSocket, h2c) or CONNECT: after a 101 / 2xx the connection becomes a raw tunnel. */
  upgrade: boolean;
  /** Expect: 100-continue. */
  expectContinue: boolean;
  /** Bytes of the head including the blank line. */
  headLength: number;
}

export interface ResponseHead {
  status: number;
  minorVersion: number;
  headers: Record<string, string>;
  body: BodyKind;
  keepAlive: boolean;
  /** An interim 1xx answer (not 101): the final answer follows on the same connection. */
  interim: boolean;
  /** 101, or 2xx to CONNECT: both sides now speak something else; splice them. */
  switching: boolean;
  headLength: number;
}

export class HttpParseError extends Error {
  constructor(
    message: string,
    /** Status to answer the client with. */
    readonly status = 400,
  ) {
    super(message);
    this.name = "HttpParseError";
  }
}

const CR = 13;
const LF = 10;

/** Index just past the blank line that ends a head in buf[from..], or -1 while incomplete. */
const HEAD_END = Buffer.from("\r\n\r\n", "latin1");

export function findHeadEnd(buf: Buffer, from = 0): number {
  const at = buf.indexOf(HEAD_END, from);
  return at < 0 ? -1 : at + 4;
}

/** tchar of RFC 9110, as a lookup table: a per-character test with no regular expression on the hot path. */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1;

function isToken(text: string, from: number, to: number): boolean {
  if (to <= from) return false;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (c >= 128 || TCHAR[c] === 0) return false;
  }
  return true;
}

/** Space or tab. */
const isBlank = (c: number) => c === 32 || c === 9;

interface ParsedFields {
  headers: Record<string, string>;
  contentLengths: string[];
  transferEncoding: string[];
  connection: string[];
}

/** Comma-separated list elements, trimmed, empty ones dropped. */
function listOf(value: string, lowercase: boolean): string[] {
  const out: string[] = [];
  for (const part of value.split(",")) {
    const item = part.trim();
    if (item.length > 0) out.push(lowercase ? item.toLowerCase() : item);
  }
  return out;
}

/**
 * Reads the header lines of `head` (the head as latin1 text without its final CRLFCRLF), from
 * `start`, the index just past the first line's CRLF. Walks the text with indexOf instead of
 * splitting it: this runs for every request and every answer.
 */
function parseFields(head: string, start: number): ParsedFields {
  const headers: Record<string, string> = Object.create(null);
  const contentLengths: string[] = [];
  const transferEncoding: string[] = [];
  const connection: string[] = [];
  let at = start;
  while (at < head.length) {
    let lineEnd = head.indexOf("\r\n", at);
    if (lineEnd < 0) lineEnd = head.length;
    const first = head.charCodeAt(at);
    if (isBlank(first)) throw new HttpParseError("obsolete line folding is not accepted");
    const colon = head.indexOf(":", at);
    if (colon < 0 || colon >= lineEnd) {
      if (colon === at) throw new HttpParseError("header line without a name");
      throw new HttpParseError(head.slice(at, lineEnd).includes("\n") ? "bare CR or LF in a header line" : "header line without a name");
    }
    if (colon === at) throw new HttpParseError("header line without a name");
    if (!isToken(head, at, colon)) throw new HttpParseError(`invalid header name "${head.slice(at, Math.min(colon, at + 40))}"`);
    let valueStart = colon + 1;
    let valueEnd = lineEnd;
    while (valueStart < valueEnd && isBlank(head.charCodeAt(valueStart))) valueStart++;
    while (valueEnd > valueStart && isBlank(head.charCodeAt(valueEnd - 1))) valueEnd--;
    for (let i = valueStart; i < valueEnd; i++) {
      const c = head.charCodeAt(i);
      if (c === 10 || c === 13) throw new HttpParseError("bare CR or LF in a header line");
    }
    const lower = head.slice(at, colon).toLowerCase();
    const value = head.slice(valueStart, valueEnd);
    const earlier = headers[lower];
    headers[lower] = earlier === undefined ? value : `${earlier}, ${value}`;
    if (lower.length >= 10) {
      if (lower === "content-length") contentLengths.push(...listOf(value, false));
      else if (lower === "transfer-encoding") transferEncoding.push(...listOf(value, true));
      else if (lower === "connection") connection.push(...listOf(value, true));
    }
    at = lineEnd + 2;
  }
  return { headers, contentLengths, transferEncoding, connection };
}

function contentLength(values: string[]): number {
  const first = values[0]!;
  if (!/^\d{1,15}$/.test(first) || values.some((v) => v !== first)) throw new HttpParseError("invalid Content-Length");
  return Number(first);
}

function versionOf(text: string): number {
  if (text === "HTTP/1.1") return 1;
  if (text === "HTTP/1.0") return 0;
  throw new HttpParseError(`unsupported protocol version "${text.slice(0, 20)}"`, 505);
}

/** A complete head (ending in CRLFCRLF) as text without the blank line, and where its first line ends. */
function headText(buf: Buffer, end: number): { head: string; firstLineEnd: number } {
  const head = buf.toString("latin1", 0, end - 4);
  const firstLineEnd = head.indexOf("\r\n");
  return { head, firstLineEnd: firstLineEnd < 0 ? head.length : firstLineEnd };
}

function pathOf(target: string): string {
  if (target.startsWith("/")) return target;
  // absolute-form: http://host/path
  const scheme = target.indexOf("://");
  if (scheme > 0) {
    const slash = target.indexOf("/", scheme + 3);
    return slash < 0 ? "/" : target.slice(slash);
  }
  return target; // authority-form (CONNECT) or "*"
}

/** Parses a request head that ends at `end` (as returned by findHeadEnd). */
export function parseRequestHead(buf: Buffer, end: number): RequestHead {
  const { head, firstLineEnd } = headText(buf, end);
  const methodEnd = head.indexOf(" ");
  const targetEnd = methodEnd < 0 ? -1 : head.indexOf(" ", methodEnd + 1);
  const extraSpace = targetEnd < 0 ? -1 : head.indexOf(" ", targetEnd + 1);
  if (methodEnd < 0 || targetEnd < 0 || targetEnd >= firstLineEnd || (extraSpace >= 0 && extraSpace < firstLineEnd)) {
    throw new HttpParseError("malformed request line");
  }
  if (!isToken(head, 0, methodEnd)) throw new HttpParseError("invalid method");
  const method = head.slice(0, methodEnd);
  const target = head.slice(methodEnd + 1, targetEnd);
  if (target.length === 0) throw new HttpParseError("invalid request target");
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f) throw new HttpParseError("invalid request target");
  }
  const minorVersion = versionOf(head.slice(targetEnd + 1, firstLineEnd));
  const { headers, contentLengths, transferEncoding, connection } = parseFields(head, firstLineEnd + 2);

  let body: BodyKind = { kind: "none" };
  if (transferEncoding.length > 0) {
    if (contentLengths.length > 0) throw new HttpParseError("both Content-Length and Transfer-Encoding");
    if (minorVersion === 0) throw new HttpParseError("Transfer-Encoding in an HTTP/1.0 request");
    const chunkedAt = transferEncoding.indexOf("chunked");
    if (chunkedAt !== transferEncoding.length - 1 || transferEncoding.lastIndexOf("chunked") !== chunkedAt) {
      throw new HttpParseError("request Transfer-Encoding must end in a single chunked");
    }
    body = { kind: "chunked" };
  } else if (contentLengths.length > 0) {
    const length = contentLength(contentLengths);
    if (length > 0) body = { kind: "length", length };
  }

  const isConnect = method === "CONNECT";
  const upgrade = isConnect || (headers.upgrade !== undefined && connection.includes("upgrade"));
  return {
    method,
    target,
    path: pathOf(target),
    minorVersion,
    headers,
    body,
    keepAlive: minorVersion === 1 ? !connection.includes("close") : connection.includes("keep-alive"),
    upgrade,
    expectContinue: headers.expect?.toLowerCase() === "100-continue",
    headLength: end,
  };
}

/** Parses a response head that ends at `end`, given the method of the request it answers. */
export function parseResponseHead(buf: Buffer, end: number, requestMethod: string): ResponseHead {
  const { head, firstLineEnd } = headText(buf, end);
  const statusLine = head.slice(0, firstLineEnd);
  const match = /^(HTTP\/1\.[01]) (\d{3})(?: .*)?$/.exec(statusLine);
  if (!match) throw new HttpParseError("malformed status line", 502);
  const minorVersion = versionOf(match[1]!);
  const status = Number(match[2]);
  let fields: ParsedFields;
  try {
    fields = parseFields(head, firstLineEnd + 2);
  } catch (error) {
    throw new HttpParseError((error as Error).message, 502);
  }
  const { headers, contentLengths, transferEncoding, connection } = fields;

  const switching = status === 101 || (requestMethod === "CONNECT" && status >= 200 && status < 300);
  const interim = status >= 100 && status < 200 && status !== 101;
  let body: BodyKind;
  if (interim || switching || requestMethod === "HEAD" || status === 204 || status === 304) {
    body = { kind: "none" };
  } else if (transferEncoding.length > 0) {
    body = transferEncoding[transferEncoding.length - 1] === "chunked" ? { kind: "chunked" } : { kind: "close" };
  } else if (contentLengths.length > 0) {
    try {
      body = { kind: "length", length: contentLength(contentLengths) };
    } catch {
      throw new HttpParseError("invalid Content-Length in the response", 502);
    }
  } else {
    body = { kind: "close" };
  }
  const keepAlive =
    body.kind !== "close" && (minorVersion === 1 ? !connection.includes("close") : connection.includes("keep-alive"));
  return { status, minorVersion, headers, body, keepAlive, interim, switching, headLength: end };
}

const enum ChunkState {
  Size,
  SizeSpace,
  Extension,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  TrailerStart,
  TrailerLine,
  TrailerLf,
  FinalLf,
  Done,
}

const MAX_CHUNK_SIZE_DIGITS = 13; // 2^52: far beyond any real chunk, still exact as a JS number
const MAX_METADATA_LINE = 8 * 1024;

/** Finds where a chunked body ends, across any split of the bytes. Feed it every body byte in order. */
export class ChunkedScanner {
  private state = ChunkState.Size;
  private size = 0;
  private digits = 0;
  private remaining = 0;
  private lineLength = 0;

  get done(): boolean {
    return this.state === ChunkState.Done;
  }

  /**
   * Scans buf[start..]. Returns the offset just past the end of the body if it ends inside buf,
   * else -1 (everything given belonged to the body).
   */
  scan(buf: Buffer, start = 0): number {
    let i = start;
    const n = buf.length;
    while (i < n) {
      switch (this.state) {
        case ChunkState.Data: {
          const take = Math.min(this.remaining, n - i);
          i += take;
          this.remaining -= take;
          if (this.remaining === 0) this.state = ChunkState.DataCr;
          continue;
        }
        case ChunkState.Done:
          return i;
      }
      const byte = buf[i++]!;
      switch (this.state) {
        case ChunkState.Size: {
          const digit = hexValue(byte);
          if (digit >= 0) {
            if (++this.digits > MAX_CHUNK_SIZE_DIGITS) throw new HttpParseError("chunk size too large");
            this.size = this.size * 16 + digit;
          } else if (this.digits === 0) {
            throw new HttpParseError("chunk size missing");
          } else if (byte === 32 || byte === 9) {
            this.state = ChunkState.SizeSpace;
          } else if (byte === 59 /* ; */) {
            this.state = ChunkState.Extension;
            this.lineLength = 0;
          } else if (byte === CR) {
            this.state = ChunkState.SizeLf;
          } else {
            throw new HttpParseError("invalid chunk size");
          }
          break;
        }
        case ChunkState.SizeSpace:
          if (byte === 59) {
            this.state = ChunkState.Extension;
            this.lineLength = 0;
          } else if (byte === CR) this.state = ChunkState.SizeLf;
          else if (byte !== 32 && byte !== 9) throw new HttpParseError("invalid chunk size line");
          break;
        case ChunkState.Extension:
          if (byte === CR) this.state = ChunkState.SizeLf;
          else if (byte === LF) throw new HttpParseError("bare LF in a chunk extension");
          else if (++this.lineLength > MAX_METADATA_LINE) throw new HttpParseError("chunk extension too long");
          break;
        case ChunkState.SizeLf:
          if (byte !== LF) throw new HttpParseError("chunk size line not ended by CRLF");
          if (this.size === 0) {
            this.state = ChunkState.TrailerStart;
          } else {
            this.remaining = this.size;
            this.state = ChunkState.Data;
          }
          this.size = 0;
          this.digits = 0;
          break;
        case ChunkState.DataCr:
          if (byte !== CR) throw new HttpParseError("chunk data not followed by CRLF");
          this.state = ChunkState.DataLf;
          break;
        case ChunkState.DataLf:
          if (byte !== LF) throw new HttpParseError("chunk data not followed by CRLF");
          this.state = ChunkState.Size;
          break;
        case ChunkState.TrailerStart:
          if (byte === CR) this.state = ChunkState.FinalLf;
          else if (byte === LF) throw new HttpParseError("bare LF in the trailer section");
          else {
            this.state = ChunkState.TrailerLine;
            this.lineLength = 1;
          }
          break;
        case ChunkState.TrailerLine:
          if (byte === CR) this.state = ChunkState.TrailerLf;
          else if (byte === LF) throw new HttpParseError("bare LF in a trailer");
          else if (++this.lineLength > MAX_METADATA_LINE) throw new HttpParseError("trailer line too long");
          break;
        case ChunkState.TrailerLf:
          if (byte !== LF) throw new HttpParseError("trailer line not ended by CRLF");
          this.state = ChunkState.TrailerStart;
          break;
        case ChunkState.FinalLf:
          if (byte !== LF) throw new HttpParseError("chunked body not ended by CRLF");
          this.state = ChunkState.Done;
          return i;
      }
    }
    return this.state === ChunkState.Done ? i : -1;
  }
}

function hexValue(byte: number): number {
  if (byte >= 48 && byte <= 57) return byte - 48;
  if (byte >= 97 && byte <= 102) return byte - 87;
  if (byte >= 65 && byte <= 70) return byte - 55;
  return -1;
}

/** Tracks where one message body ends, whatever its framing. */
export class BodyTracker {
  private remaining: number;
  private readonly chunked: ChunkedScanner | undefined;
  private finished: boolean;

  constructor(readonly body: BodyKind) {
    this.remaining = body.kind === "length" ? body.length : 0;
    this.chunked = body.kind === "chunked" ? new ChunkedScanner() : undefined;
    this.finished = body.kind === "none";
  }

  get done(): boolean {
    return this.finished;
  }

  /**
   * How many bytes of buf[start..] belong to this body. When the body ends inside buf, `done`
   * turns true and the bytes after it belong to the next message.
   */
  take(buf: Buffer, start = 0): number {
    if (this.finished) return 0;
    const available = buf.length - start;
    switch (this.body.kind) {
      case "length": {
        const take = Math.min(available, this.remaining);
        this.remaining -= take;
        if (this.remaining === 0) this.finished = true;
        return take;
      }
      case "chunked": {
        const end = this.chunked!.scan(buf, start);
        if (end < 0) return available;
        this.finished = true;
        return end - start;
      }
      case "close":
        return available;
      default:
        return 0;
    }
  }

  /** The peer closed: a close-delimited body is complete, any other is truncated. */
  endOfStream(): boolean {
    if (this.body.kind === "close") this.finished = true;
    return this.finished;
  }
}

/** A short complete response the router itself gives (errors), always closing the connection. */
export function simpleResponse(status: number, reason: string, message: string): Buffer {
  const body = `${message}\n`;
  return Buffer.from(
    `HTTP/1.1 ${status} ${reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `connection: close\r\nx-ktctl-router: ${status}\r\n\r\n${body}`,
  );
}
