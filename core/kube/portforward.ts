// One TCP connection to a pod port through the API server's portforward subresource, as a Duplex.
// Protocol v4.channel.k8s.io: each binary message starts with a channel byte (0 data, 1 error for
// the first port); the first two bytes the server sends on each channel are the port number (little
// endian). Written over `ws` (Bun's native client under Bun) rather than client-node's PortForward
// because that one ignores back-pressure both ways, and this stream carries the whole SSH tunnel.

import { Duplex } from "node:stream";
import WebSocket from "ws";
import { ExitCode, KtctlError } from "../errors.ts";
import { apiErrorFrom, connectionErrorFrom } from "./errors.ts";
import type { Transport } from "./transport.ts";

export const PORT_FORWARD_PROTOCOL = "v4.channel.k8s.io";
const DATA_CHANNEL = 0;
const ERROR_CHANNEL = 1;
/** The kubelet reads each message whole (and caps it at 32 MiB); moderate frames keep latency and memory flat. */
export const MAX_FRAME_PAYLOAD = 256 * 1024;
const READ_HIGH_WATER_MARK = 1024 * 1024;
const HANDSHAKE_TIMEOUT_MS = 30_000;

/** Packs data for the data channel into frames of at most `max` payload bytes (one copy per byte, no more). */
export function encodeDataFrames(chunks: readonly Uint8Array[], max = MAX_FRAME_PAYLOAD): Buffer[] {
  const frames: Buffer[] = [];
  let total = 0;
  for (const c of chunks) total += c.byteLength;
  let frame: Buffer | undefined;
  let offset = 0;
  for (const chunk of chunks) {
    let at = 0;
    while (at < chunk.byteLength) {
      if (!frame) {
        const size = Math.min(max, total);
        frame = Buffer.allocUnsafe(size + 1);
        frame[0] = DATA_CHANNEL;
        offset = 1;
      }
      const n = Math.min(chunk.byteLength - at, frame.length - offset);
      frame.set(chunk.subarray(at, at + n), offset);
      offset += n;
      at += n;
      total -= n;
      if (offset === frame.length) {
        frames.push(frame);
        frame = undefined;
      }
    }
  }
  return frames;
}

/** Splits incoming messages into channel and payload, dropping the port-number prefix of each channel. */
export class ChannelDecoder {
  private readonly prefixLeft = new Map<number, number>();

  decode(message: Buffer): { channel: number; payload: Buffer } | undefined {
    if (message.length === 0) return undefined;
    const channel = message[0]!;
    let payload = message.subarray(1);
    const left = this.prefixLeft.get(channel) ?? 2;
    if (left > 0) {
      const skip = Math.min(left, payload.length);
      this.prefixLeft.set(channel, left - skip);
      payload = payload.subarray(skip);
    }
    return { channel, payload };
  }
}

/**
 * The kubelet's error text names network namespaces and container ids; what the user needs is the
 * cause at its end ("connect: connection refused"), so keep the first line's last clause.
 */
export function summarizeForwardError(text: string): string {
  const line = text.split("\n").find((l) => l.trim())?.trim() ?? "";
  const refused = /dial tcp4? [^:]+:(\d+): connect: connection refused/.exec(line);
  if (refused) return `nothing listens on port ${refused[1]} in the pod (connection refused)`;
  return line;
}

class PortForwardStream extends Duplex {
  private readonly decoder = new ChannelDecoder();
  private errorText = "";
  private paused = false;

  constructor(
    private readonly ws: WebSocket,
    private readonly label: string,
  ) {
    super({ allowHalfOpen: false, readableHighWaterMark: READ_HIGH_WATER_MARK });
    ws.on("message", (data: Buffer) => this.onMessage(data));
    ws.on("close", () => this.onClose());
    ws.on("error", (e: Error) => this.destroy(new KtctlError(`port-forward to ${label} broke: ${e.message}`, ExitCode.unreachable)));
  }

  private onMessage(data: Buffer): void {
    const decoded = this.decoder.decode(data);
    if (!decoded || decoded.payload.length === 0) return;
    if (decoded.channel === DATA_CHANNEL) {
      if (!this.push(decoded.payload) && !this.paused) {
        this.paused = true;
        this.ws.pause();
      }
    } else if (decoded.channel === ERROR_CHANNEL) {
      this.errorText += decoded.payload.toString("utf8");
    }
  }

  private onClose(): void {
    if (this.errorText) {
      this.destroy(new KtctlError(`port-forward to ${this.label} failed: ${summarizeForwardError(this.errorText)}`, ExitCode.unreachable));
    } else {
      this.push(null);
    }
  }

  override _read(): void {
    if (this.paused) {
      this.paused = false;
      this.ws.resume();
    }
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.send([chunk], callback);
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    this.send(chunks.map((c) => c.chunk), callback);
  }

  private send(chunks: Buffer[], callback: (error?: Error | null) => void): void {
    if (this.ws.readyState !== WebSocket.OPEN) {
      callback(new KtctlError(`port-forward to ${this.label} is closed`, ExitCode.unreachable));
      return;
    }
    const frames = encodeDataFrames(chunks);
    if (frames.length === 0) {
      callback(); // an empty write: an empty message would only cost the server a read
      return;
    }
    // The send callback fires once the socket has taken the data: that is our back-pressure.
    for (let i = 0; i < frames.length - 1; i++) this.ws.send(frames[i]!);
    this.ws.send(frames[frames.length - 1]!, (err?: Error) => callback(err ?? null));
  }

  override _final(callback: (error?: Error | null) => void): void {
    // v4 has no half-close: our side is done, so the whole connection is.
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.ws.readyState === WebSocket.CONNECTING || this.ws.readyState === WebSocket.OPEN) this.ws.terminate();
    callback(error);
  }
}

/** Opens the WebSocket and resolves once the API server has upgraded it; refusals become KtctlErrors. */
export async function openPortForward(transport: Transport, namespace: string, pod: string, port: number): Promise<Duplex> {
  const { headers, tls } = await transport.credentials();
  const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(pod)}/portforward?ports=${port}`;
  const url = transport.server.replace(/^http/, "ws") + path;
  const label = `${namespace}/${pod}:${port}`;
  const options: WebSocket.ClientOptions & { servername?: string } = {
    headers,
    ca: tls.ca,
    cert: tls.cert,
    key: tls.key,
    rejectUnauthorized: tls.rejectUnauthorized,
    servername: tls.serverName,
    perMessageDeflate: false,
    handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
  };
  const ws = new WebSocket(url, [PORT_FORWARD_PROTOCOL], options);
  ws.binaryType = "nodebuffer";

  await new Promise<void>((resolve, reject) => {
    const fail = (e: Error) => {
      ws.removeAllListeners();
      ws.on("error", () => {});
      reject(e);
    };
    ws.once("open", () => {
      ws.removeAllListeners();
      if (ws.protocol !== PORT_FORWARD_PROTOCOL) {
        ws.terminate();
        reject(new KtctlError(`port-forward to ${label}: API server ${transport.server} does not speak ${PORT_FORWARD_PROTOCOL}`, ExitCode.unreachable));
        return;
      }
      resolve();
    });
    ws.once("unexpected-response", (_req: unknown, res: NodeJS.ReadableStream & { statusCode?: number }) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (body += d));
      res.on("end", () => {
        ws.terminate();
        fail(apiErrorFrom(res.statusCode ?? 500, body, "GET", path, transport.server));
      });
      res.on("error", () => fail(apiErrorFrom(res.statusCode ?? 500, body, "GET", path, transport.server)));
    });
    ws.once("error", (e: Error) => fail(connectionErrorFrom(e, transport.server)));
  });
  return new PortForwardStream(ws, label);
}
