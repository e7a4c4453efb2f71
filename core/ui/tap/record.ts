// What every protocol tap shares: making records with the connection's facts, and keeping bodies
// only when asked and never past the limit.

import type { TapOptions, TrafficProtocol, TrafficRecord } from "../../plugin-api.ts";

/** No body is kept past this, whatever a tap asks for. */
export const BODY_LIMIT_BYTES = 64 * 1024;

export interface TapSink {
  readonly options: TapOptions;
  newRecord(protocol: TrafficProtocol): TrafficRecord;
  bodyKeeper(): BodyKeeper;
  emit(record: TrafficRecord): void;
}

let sequence = 0;

/** Record ids: unique within the process, short enough for a URL. */
export const nextRecordId = (): string => `${process.pid.toString(36)}-${(++sequence).toString(36)}`;

export function createSink(options: TapOptions, emit: (record: TrafficRecord) => void): TapSink {
  const limit = Math.min(Math.max(0, options.bodyBytes ?? 0), BODY_LIMIT_BYTES);
  return {
    options,
    newRecord: (protocol) => ({
      id: nextRecordId(),
      sessionId: options.sessionId,
      via: options.via,
      protocol,
      time: Date.now(),
      requestBytes: 0,
      responseBytes: 0,
      remote: options.remote,
      local: options.local,
    }),
    bodyKeeper: () => new BodyKeeper(limit),
    emit,
  };
}

/** Copies the first `limit` bytes of a request and a response body (nothing when limit is 0). */
export class BodyKeeper {
  private requestParts: Buffer[] = [];
  private responseParts: Buffer[] = [];
  private requestKept = 0;
  private responseKept = 0;
  private truncated = false;

  constructor(private readonly limit: number) {}

  request(data: Uint8Array): void {
    this.requestKept = this.keep(this.requestParts, this.requestKept, data);
  }

  response(data: Uint8Array): void {
    this.responseKept = this.keep(this.responseParts, this.responseKept, data);
  }

  fill(record: TrafficRecord): void {
    if (!this.limit) return;
    if (this.requestKept) record.requestBody = Buffer.concat(this.requestParts).toString("base64");
    if (this.responseKept) record.responseBody = Buffer.concat(this.responseParts).toString("base64");
    if (this.truncated) record.bodyTruncated = true;
  }

  private keep(parts: Buffer[], kept: number, data: Uint8Array): number {
    if (!this.limit || !data.length) return kept;
    const room = this.limit - kept;
    if (data.length > room) this.truncated = true;
    if (room <= 0) return kept;
    // A copy: the caller's buffer belongs to the relay and may be reused.
    const piece = Buffer.from(data.subarray(0, room));
    parts.push(piece);
    return kept + piece.length;
  }
}
