// The load generator of the mesh benchmark. It runs INSIDE a pod (compiled with `bun build
// --compile`, started in a pod of the shadow image, which carries the libraries a Bun binary
// links), so it measures the cluster path: service address -> (router ->) pods.
//   mesh-load h1 HOST:PORT CONNS DURATION_MS ["Header: value"]
//       CONNS keep-alive connections, each sending GET / and waiting for the answer, for DURATION_MS
//   mesh-load rate HOST:PORT RATE DURATION_MS CONNS ["Header: value"]
//       open loop: RATE requests per second, spread over up to CONNS keep-alive connections; each
//       latency is counted from the moment the request was due (so queueing shows, not hides)
//   mesh-load grpc HOST:PORT STREAMS DURATION_MS ["header: value"]
//       one h2c connection, STREAMS concurrent gRPC Health/Check calls at a time
//   mesh-load idle
//       does nothing until killed (the pod's main process)
// Prints one JSON line: requests, errors, rps, p50/p90/p99/max latency in ms.

import http2 from "node:http2";
import net from "node:net";

interface Result {
  mode: string;
  target: string;
  concurrency: number;
  requests: number;
  errors: number;
  rps: number;
  p50ms: number;
  p90ms: number;
  p99ms: number;
  maxMs: number;
}

function summarise(mode: string, target: string, concurrency: number, latencies: number[], errors: number, elapsedMs: number): Result {
  latencies.sort((a, b) => a - b);
  const at = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN;
  const round = (v: number) => Math.round(v * 1000) / 1000;
  return {
    mode,
    target,
    concurrency,
    requests: latencies.length,
    errors,
    rps: Math.round(latencies.length / (elapsedMs / 1000)),
    p50ms: round(at(0.5)),
    p90ms: round(at(0.9)),
    p99ms: round(at(0.99)),
    maxMs: round(latencies[latencies.length - 1] ?? NaN),
  };
}

function split(target: string): { host: string; port: number } {
  const colon = target.lastIndexOf(":");
  return { host: target.slice(0, colon), port: Number(target.slice(colon + 1)) };
}

/**
 * One keep-alive connection sending requests back to back until `deadline`. A server may close a
 * keep-alive connection between answers (nginx does after `keepalive_requests`, 1000 by default):
 * the client then opens a new one and goes on, as a real client's pool would; the time the new
 * connection takes counts in the next request's latency.
 */
function h1Connection(host: string, port: number, request: Buffer, deadline: number, latencies: number[]): Promise<number> {
  return new Promise((resolve) => {
    let errors = 0;
    let finished = false;
    const finish = () => {
      if (!finished) (finished = true), resolve(errors);
    };
    const open = () => {
      const socket = net.connect({ host, port, noDelay: true });
      let buffer: Buffer = Buffer.alloc(0);
      let started = 0;
      let answered = true;
      const send = () => {
        if (performance.now() >= deadline) {
          socket.end();
          return finish();
        }
        started = performance.now();
        answered = false;
        socket.write(request);
      };
      socket.on("connect", send);
      socket.on("data", (chunk: Buffer) => {
        buffer = buffer.length ? Buffer.concat([buffer, chunk]) : chunk;
        for (;;) {
          const end = buffer.indexOf("\r\n\r\n");
          if (end < 0) return;
          const length = Number(/content-length:\s*(\d+)/i.exec(buffer.toString("latin1", 0, end))?.[1] ?? -1);
          if (length < 0) {
            errors++;
            socket.destroy();
            return finish();
          }
          if (buffer.length < end + 4 + length) return;
          if (!buffer.toString("latin1", 0, 12).includes(" 200")) errors++;
          buffer = buffer.subarray(end + 4 + length);
          latencies.push(performance.now() - started);
          answered = true;
          send();
        }
      });
      let connected = false;
      socket.on("connect", () => (connected = true));
      // A reset shows as an error followed by close: close decides.
      socket.on("error", () => undefined);
      // Closed between answers, or before any byte of the pending answer (the server's last
      // answer said "Connection: close" while our next GET was on its way): a new connection, and
      // the GET again, as HTTP clients do for idempotent requests. Closed mid-answer: an error.
      socket.on("close", () => {
        if (finished) return;
        if (!connected || (!answered && buffer.length > 0)) {
          errors++;
          return finish();
        }
        open();
      });
    };
    open();
  });
}

async function h1(target: string, conns: number, durationMs: number, header?: string): Promise<Result> {
  const { host, port } = split(target);
  const request = Buffer.from(`GET / HTTP/1.1\r\nHost: ${host}\r\n${header ? `${header}\r\n` : ""}\r\n`);
  const latencies: number[] = [];
  const start = performance.now();
  const deadline = start + durationMs;
  const errors = await Promise.all(Array.from({ length: conns }, () => h1Connection(host, port, request, deadline, latencies)));
  return summarise("h1", target, conns, latencies, errors.reduce((a, b) => a + b, 0), performance.now() - start);
}

/** A keep-alive connection for the open-loop mode: one request in flight at a time. */
class RateConnection {
  private buffer: Buffer = Buffer.alloc(0);
  private due = 0;
  busy = false;
  ready: Promise<void>;

  constructor(
    host: string,
    port: number,
    private readonly done: (dueAt: number, ok: boolean) => void,
  ) {
    const socket = (this.socket = net.connect({ host, port, noDelay: true }));
    this.ready = new Promise((resolve, reject) => {
      socket.once("connect", () => resolve());
      socket.once("error", reject);
    });
    socket.on("data", (chunk: Buffer) => {
      this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
      const end = this.buffer.indexOf("\r\n\r\n");
      if (end < 0) return;
      const length = Number(/content-length:\s*(\d+)/i.exec(this.buffer.toString("latin1", 0, end))?.[1] ?? -1);
      if (length < 0 || this.buffer.length < end + 4 + length) return;
      const ok = this.buffer.toString("latin1", 0, 12).includes(" 200");
      this.buffer = this.buffer.subarray(end + 4 + length);
      this.busy = false;
      this.done(this.due, ok);
    });
  }

  readonly socket: net.Socket;

  send(request: Buffer, dueAt: number): void {
    this.busy = true;
    this.due = dueAt;
    this.socket.write(request);
  }
}

async function rate(target: string, perSecond: number, durationMs: number, conns: number, header?: string): Promise<Result & { offered: number }> {
  const { host, port } = split(target);
  const request = Buffer.from(`GET / HTTP/1.1\r\nHost: ${host}\r\n${header ? `${header}\r\n` : ""}\r\n`);
  const latencies: number[] = [];
  let errors = 0;
  const queue: number[] = [];
  const connections: RateConnection[] = [];
  const dispatch = () => {
    for (const connection of connections) {
      if (queue.length === 0) return;
      if (!connection.busy) connection.send(request, queue.shift()!);
    }
  };
  for (let i = 0; i < conns; i++) {
    connections.push(
      new RateConnection(host, port, (dueAt, ok) => {
        if (ok) latencies.push(performance.now() - dueAt);
        else errors++;
        dispatch();
      }),
    );
  }
  await Promise.all(connections.map((c) => c.ready));
  const start = performance.now();
  const interval = 1000 / perSecond;
  let issued = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      const elapsed = now - start;
      const shouldHave = Math.min(Math.floor(elapsed / interval), Math.floor(durationMs / interval));
      for (; issued < shouldHave; issued++) queue.push(start + issued * interval);
      dispatch();
      if (elapsed >= durationMs && queue.length === 0 && connections.every((c) => !c.busy)) return resolve();
      if (elapsed > durationMs + 10_000) return resolve();
      setTimeout(tick, 1);
    };
    tick();
  });
  for (const connection of connections) connection.socket.end();
  return { ...summarise("rate", target, conns, latencies, errors + queue.length, durationMs), offered: perSecond };
}

/** An empty HealthCheckRequest in gRPC framing. */
const GRPC_REQUEST = Buffer.from([0, 0, 0, 0, 0]);

async function grpc(target: string, streams: number, durationMs: number, header?: string): Promise<Result> {
  const session = http2.connect(`http://${target}`);
  session.on("error", () => undefined);
  const extra: Record<string, string> = {};
  if (header) {
    const colon = header.indexOf(":");
    extra[header.slice(0, colon).trim().toLowerCase()] = header.slice(colon + 1).trim();
  }
  const latencies: number[] = [];
  let errors = 0;
  const start = performance.now();
  const deadline = start + durationMs;
  const call = () =>
    new Promise<void>((resolve) => {
      const started = performance.now();
      const stream = session.request({
        ":method": "POST",
        ":path": "/grpc.health.v1.Health/Check",
        "content-type": "application/grpc",
        te: "trailers",
        ...extra,
      });
      let status: string | undefined;
      stream.on("response", (headers) => (status ??= headers["grpc-status"] as string | undefined));
      stream.on("trailers", (trailers) => (status = trailers["grpc-status"] as string | undefined));
      stream.on("data", () => undefined);
      stream.on("end", () => {
        if (status === "0") latencies.push(performance.now() - started);
        else errors++;
        resolve();
      });
      stream.on("error", () => {
        errors++;
        resolve();
      });
      stream.end(GRPC_REQUEST);
    });
  await Promise.all(
    Array.from({ length: streams }, async () => {
      while (performance.now() < deadline) await call();
    }),
  );
  session.close();
  return summarise("grpc", target, streams, latencies, errors, performance.now() - start);
}

const [mode, target, a, b, c] = process.argv.slice(2);
if (mode === "idle") {
  setInterval(() => undefined, 1 << 30);
} else if (mode === "h1") {
  console.log(JSON.stringify(await h1(target!, Number(a), Number(b), c)));
  process.exit(0);
} else if (mode === "rate") {
  console.log(JSON.stringify(await rate(target!, Number(a), Number(b), Number(c), process.argv[7])));
  process.exit(0);
} else if (mode === "grpc") {
  console.log(JSON.stringify(await grpc(target!, Number(a), Number(b), c)));
  process.exit(0);
} else {
  console.error("usage: mesh-load h1 HOST:PORT CONNS DURATION_MS [HEADER] | rate HOST:PORT RATE DURATION_MS CONNS [HEADER] | grpc HOST:PORT STREAMS DURATION_MS [HEADER] | idle");
  process.exit(2);
}
