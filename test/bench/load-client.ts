// A small load client the benchmarks run INSIDE the laptop namespace against a local port (a
// forward of ktctl or of kubectl). Prints one JSON line.
//   bun test/bench/load-client.ts bulk PORT MIB            TCP echo: MiB up and back, MB/s
//   bun test/bench/load-client.ts keepalive PORT COUNT     sequential HTTP requests on one connection
//   bun test/bench/load-client.ts fresh PORT COUNT         sequential HTTP requests, a new connection each
//   bun test/bench/load-client.ts first PORT TIMEOUT_MS    time until the first HTTP answer (from now)

import { connect, type Socket } from "node:net";

const [mode, portText, amountText] = process.argv.slice(2);
const port = Number(portText);
const amount = Number(amountText);
const REQUEST = Buffer.from("GET /bench HTTP/1.1\r\nHost: bench\r\n\r\n");
const REQUEST_CLOSE = Buffer.from("GET /bench HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");

const open = (): Promise<Socket> =>
  new Promise((resolve, reject) => {
    const socket = connect({ port, host: "127.0.0.1", noDelay: true });
    socket.once("connect", () => resolve(socket));
    socket.once("error", reject);
  });

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function summary(samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b);
  return { count: sorted.length, p50ms: percentile(sorted, 50), p99ms: percentile(sorted, 99), meanMs: sorted.reduce((a, b) => a + b, 0) / sorted.length };
}

/** Reads one HTTP response with Content-Length from a socket; resolves with nothing else read. */
function readResponse(socket: Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    let buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      const headerEnd = buffer.indexOf("\r\n\r\n");
      if (headerEnd < 0) return;
      const length = Number(/content-length:\s*(\d+)/i.exec(buffer.subarray(0, headerEnd).toString())?.[1] ?? -1);
      if (length < 0) return reject(new Error("response without Content-Length"));
      if (buffer.length >= headerEnd + 4 + length) {
        socket.off("data", onData);
        resolve();
      }
    };
    socket.on("data", onData);
    socket.once("error", reject);
  });
}

async function bulk(mib: number) {
  const socket = await open();
  const total = mib * 1024 * 1024;
  const block = Buffer.alloc(256 * 1024, 0x61);
  const started = performance.now();
  let received = 0;
  const done = new Promise<void>((resolve) =>
    socket.on("data", (chunk: Buffer) => {
      received += chunk.length;
      if (received >= total) resolve();
    }),
  );
  for (let sent = 0; sent < total; sent += block.length) {
    if (!socket.write(block)) await new Promise((r) => socket.once("drain", r));
  }
  await done;
  const seconds = (performance.now() - started) / 1000;
  socket.destroy();
  // Bytes crossed the link twice (up and back).
  return { mib, seconds, mbPerSecond: (2 * total) / 1e6 / seconds };
}

async function keepalive(count: number) {
  const socket = await open();
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    socket.write(REQUEST);
    await readResponse(socket);
    samples.push(performance.now() - t);
  }
  socket.destroy();
  return summary(samples);
}

async function fresh(count: number) {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    const socket = await open();
    socket.write(REQUEST_CLOSE);
    await readResponse(socket);
    samples.push(performance.now() - t);
    socket.destroy();
  }
  return summary(samples);
}

async function first(timeoutMs: number) {
  const started = performance.now();
  while (performance.now() - started < timeoutMs) {
    try {
      const socket = await open();
      socket.write(REQUEST_CLOSE);
      await Promise.race([readResponse(socket), new Promise((_, reject) => socket.once("close", () => reject(new Error("closed"))))]);
      socket.destroy();
      return { firstAnswerMs: performance.now() - started };
    } catch {
      await Bun.sleep(20);
    }
  }
  return { firstAnswerMs: null };
}

const modes: Record<string, (n: number) => Promise<unknown>> = { bulk, keepalive, fresh, first };
const run = modes[mode ?? ""];
if (!run || !port) {
  console.error("usage: load-client.ts bulk|keepalive|fresh|first PORT AMOUNT");
  process.exit(2);
}
console.log(JSON.stringify(await run(amount)));
process.exit(0);
