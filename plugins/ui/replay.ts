// Replays one recorded HTTP/1.1 request against the local process, directly (not through the
// cluster), and reads its answer: the quickest way to see "what does my process say to that?".

import { connect } from "node:net";
import type { TrafficRecord } from "../../core/plugin-api.ts";

const ANSWER_LIMIT = 256 * 1024;
const REPLAY_TIMEOUT_MS = 10_000;
/** Framing headers are rewritten: the replay sends the body it has in one piece and then closes. */
const DROPPED = new Set(["content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"]);

export interface ReplayAnswer {
  status?: number;
  statusLine?: string;
  headers: [string, string][];
  body: string;
  bodyTruncated: boolean;
  durationMs: number;
  /** What the replay could not repeat exactly. */
  notes: string[];
}

export function replayRequest(record: TrafficRecord): Promise<ReplayAnswer> {
  if (record.protocol !== "http1" || !record.local || !record.method || !record.path) {
    return Promise.reject(new Error("only HTTP/1.1 requests can be replayed"));
  }
  const notes: string[] = [];
  const body = record.requestBody ? Buffer.from(record.requestBody, "base64") : Buffer.alloc(0);
  if (record.requestBytes > body.length) {
    notes.push(record.requestBody ? `the body was kept only up to ${body.length} of ${record.requestBytes} bytes` : `the body (${record.requestBytes} bytes) was not kept; replayed without it`);
  }
  const lines = [`${record.method} ${record.path} HTTP/1.1`];
  for (const [name, value] of record.requestHeaders ?? []) if (!DROPPED.has(name.toLowerCase())) lines.push(`${name}: ${value}`);
  lines.push("Connection: close");
  if (body.length || record.requestBytes) lines.push(`Content-Length: ${body.length}`);
  const request = Buffer.concat([Buffer.from(lines.join("\r\n") + "\r\n\r\n", "latin1"), body]);

  const started = performance.now();
  return new Promise((resolve, reject) => {
    const socket = connect({ host: record.local!.host, port: record.local!.port });
    const parts: Buffer[] = [];
    let received = 0;
    let truncated = false;
    const timer = setTimeout(() => socket.destroy(new Error(`no complete answer within ${REPLAY_TIMEOUT_MS / 1000}s`)), REPLAY_TIMEOUT_MS);
    socket.on("connect", () => socket.end(request));
    socket.on("data", (chunk: Buffer) => {
      if (received >= ANSWER_LIMIT) {
        truncated = true;
        return;
      }
      parts.push(chunk);
      received += chunk.length;
    });
    socket.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on("close", (hadError) => {
      clearTimeout(timer);
      if (hadError) return;
      const answer = Buffer.concat(parts);
      const headEnd = answer.indexOf("\r\n\r\n");
      const head = answer.toString("latin1", 0, headEnd < 0 ? answer.length : headEnd).split("\r\n");
      const headers: [string, string][] = head
        .slice(1)
        .filter((line) => line.includes(":"))
        .map((line) => [line.slice(0, line.indexOf(":")).trim(), line.slice(line.indexOf(":") + 1).trim()]);
      resolve({
        statusLine: head[0],
        status: Number(head[0]?.split(" ")[1]) || undefined,
        headers,
        body: headEnd < 0 ? "" : answer.subarray(headEnd + 4).toString("utf8"),
        bodyTruncated: truncated,
        durationMs: Math.round((performance.now() - started) * 10) / 10,
        notes,
      });
    });
  });
}
