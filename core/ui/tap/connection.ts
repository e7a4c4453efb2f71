// The tap for one connection that reached the laptop: it looks at the first bytes from the cluster
// to tell HTTP/1.1, HTTP/2 (prior knowledge: h2c, gRPC) and anything else apart, then hands the
// copies of both directions to that protocol's reader. Anything it cannot follow (a garbled head,
// TLS, a database protocol) is recorded as one TCP connection: bytes each way and duration.

import type { ConnectionTap, TapOptions, TrafficRecord } from "../../plugin-api.ts";
import { CLIENT_PREFACE, H2Tap } from "./h2.ts";
import { Http1Tap } from "./http1.ts";
import { createSink, type TapSink } from "./record.ts";

interface ProtocolTap {
  readonly broken: boolean;
  fromClient(chunk: Uint8Array): void;
  fromServer(chunk: Uint8Array): void;
  end(): void;
}

/** An HTTP/1.x request line: token, space, target, space, version. */
const REQUEST_LINE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+ \S+ HTTP\/1\.[01]\r?$/;
/** How much of the first line we wait for before calling a connection plain TCP. */
const SNIFF_BYTES = 8 * 1024;

type Verdict = "http1" | "h2" | "tcp" | undefined;

function sniff(start: Buffer): Verdict {
  const prefaceLength = Math.min(start.length, CLIENT_PREFACE.length);
  if (start.subarray(0, prefaceLength).equals(CLIENT_PREFACE.subarray(0, prefaceLength))) {
    return start.length >= CLIENT_PREFACE.length ? "h2" : undefined;
  }
  const newline = start.indexOf(10);
  if (newline < 0) {
    // A method token is letters; anything else early on is not HTTP/1.
    if (!/^[A-Za-z-]*( \S*( H?T?T?P?\/?1?\.?[01]?\r?)?)?$/.test(start.toString("latin1"))) return "tcp";
    return start.length >= SNIFF_BYTES ? "tcp" : undefined;
  }
  return REQUEST_LINE.test(start.toString("latin1", 0, newline)) ? "http1" : "tcp";
}

export function createConnectionTap(options: TapOptions, emit: (record: TrafficRecord) => void): ConnectionTap {
  const sink: TapSink = createSink(options, emit);
  const connection = sink.newRecord("tcp");
  const started = performance.now();
  let protocol: ProtocolTap | undefined;
  let verdict: Verdict;
  let head: Buffer[] = [];
  let early: Buffer[] = [];
  let ended = false;

  const decide = () => {
    const start = Buffer.concat(head);
    verdict = sniff(start);
    if (!verdict) return;
    head = [];
    if (verdict !== "tcp") {
      protocol = verdict === "h2" ? new H2Tap(sink) : new Http1Tap(sink);
      protocol.fromClient(start);
      for (const chunk of early) protocol.fromServer(chunk);
    }
    early = [];
  };

  return {
    fromClient(chunk) {
      if (ended) return;
      connection.requestBytes += chunk.length;
      if (verdict === undefined) {
        head.push(Buffer.from(chunk));
        decide();
      } else protocol?.fromClient(chunk);
    },
    fromServer(chunk) {
      if (ended) return;
      connection.responseBytes += chunk.length;
      // A server that speaks first (SMTP, MySQL): not HTTP.
      if (verdict === undefined && !head.length) verdict = "tcp";
      if (verdict === undefined) early.push(Buffer.from(chunk));
      else protocol?.fromServer(chunk);
    },
    end() {
      if (ended) return;
      ended = true;
      if (protocol && !protocol.broken) {
        protocol.end();
        return;
      }
      if (protocol) protocol.end();
      // Plain TCP (or HTTP we lost track of): the connection itself is the record.
      connection.durationMs = Math.round((performance.now() - started) * 10) / 10;
      if (protocol) connection.error = "not followed past an unreadable message";
      emit(connection);
    },
  };
}
