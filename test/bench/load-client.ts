// A small load client the benchmarks run INSIDE the laptop namespace against a local port (a
// forward of ktctl or of kubectl) or, through connect, a cluster address. Prints one JSON line.
// TARGET is PORT (on 127.0.0.1) or HOST:PORT (a ClusterIP, or a name the laptop resolves).
//   bun test/bench/load-client.ts bulk TARGET MIB            TCP echo: MiB up and back, MB/s
//   bun test/bench/load-client.ts keepalive TARGET COUNT     sequential HTTP requests on one connection
//   bun test/bench/load-client.ts fresh TARGET COUNT         sequential HTTP requests, a new connection each
//   bun test/bench/load-client.ts first TARGET TIMEOUT_MS    time until the first HTTP answer (from now)
//   bun test/bench/load-client.ts firstcurl URL TIMEOUT_MS   the same with curl, one process per attempt
//                                                            (no resolver cache: a name that did not
//                                                            resolve a moment ago is asked again)
//   bun test/bench/load-client.ts concurrent T1,T2,... COUNT all connections opened at once and held
//                                                            open; COUNT requests on each, all in parallel

import { connect, type Socket } from "node:net";

const [mode, targetText, amountText] = process.argv.slice(2);
const amount = Number(amountText);
const parseTarget = (text: string) => {
  const colon = text.lastIndexOf(":");
  return colon < 0 ? { host: "127.0.0.1", port: Number(text) } : { host: text.slice(0, colon), port: Number(text.slice(colon + 1)) };
};
const { host, port } = mode === "concurrent" || mode === "firstcurl" ? { host: "", port: 1 } : parseTarget(targetText ?? "");
const REQUEST = Buffer.from("GET /bench HTTP/1.1\r\nHost: bench\r\n\r\n");
const REQUEST_CLOSE = Buffer.from("GET /bench HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");

const open = (to = { host, port }): Promise<Socket> =>
  new Promise((resolve, reject) => {
    const socket = connect({ port: to.port, host: to.host, noDelay: true });
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
        socket.off("error", reject);
        socket.off("close", closedEarly);
        resolve();
      }
    };
    // Closed before the whole answer: a failed request, not one that waits forever.
    const closedEarly = () => reject(new Error("closed before the whole response"));
    socket.on("data", onData);
    socket.once("error", reject);
    socket.once("close", closedEarly);
  });
}

async function bulk(mib: number) {
  const socket = await open();
  const total = mib * 1024 * 1024;
  const block = Buffer.alloc(256 * 1024, 0x61);
  const started = performance.now();
  let received = 0;
  let stalled: Timer | undefined;
  // A connection that ends, or goes quiet, before every byte came back is a failure to report with
  // where it stopped, not a wait until the caller's timeout that says nothing.
  const done = new Promise<void>((resolve, reject) => {
    const fail = (why: string) => reject(new Error(`bulk: the connection ${why} after ${received} of ${total} bytes came back`));
    // Nothing back for this long on a link that moves 100+ MB/s is a stall.
    stalled = setTimeout(() => fail("stalled for 30 s"), 30_000);
    socket.on("data", (chunk: Buffer) => {
      received += chunk.length;
      stalled!.refresh();
      if (received >= total) resolve();
    });
    socket.once("end", () => fail("was ended by the other side"));
    socket.once("close", () => fail("closed"));
    socket.once("error", (error) => fail(`failed (${error.message})`));
  }).finally(() => clearTimeout(stalled));
  const send = async () => {
    for (let sent = 0; sent < total; sent += block.length) {
      if (!socket.write(block)) await Promise.race([new Promise((r) => socket.once("drain", r)), done]);
    }
  };
  await Promise.all([send(), done]);
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
  let failures = 0;
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    try {
      const socket = await open();
      socket.write(REQUEST_CLOSE);
      await readResponse(socket);
      samples.push(performance.now() - t);
      socket.destroy();
    } catch (error) {
      failures++;
      console.error(`fresh request ${i + 1} failed after ${(performance.now() - t).toFixed(1)} ms: ${(error as Error).message}`);
    }
  }
  return { ...summary(samples), failures };
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
      // Not answering yet (nothing listens, or the path is not up): try again shortly.
      await Bun.sleep(5);
    }
  }
  return { firstAnswerMs: null };
}

async function firstcurl(timeoutMs: number) {
  const started = performance.now();
  let attempts = 0;
  while (performance.now() - started < timeoutMs) {
    attempts++;
    const curl = Bun.spawn(["curl", "-s", "-o", "/dev/null", "-m", "2", "-w", "%{http_code}", targetText!], { stdout: "pipe", stderr: "ignore" });
    const [code, exit] = await Promise.all([new Response(curl.stdout).text(), curl.exited]);
    if (exit === 0 && code === "200") return { firstAnswerMs: performance.now() - started, attempts };
    await Bun.sleep(20);
  }
  return { firstAnswerMs: null, attempts };
}

/** Every target gets one connection; all are open at the same time before any request is sent. */
async function concurrent(requestsEach: number) {
  const targets = targetText!.split(",").map(parseTarget);
  const started = performance.now();
  const errors: string[] = [];
  const sockets = await Promise.all(
    targets.map((t) =>
      open(t).catch((error: Error) => {
        errors.push(`open ${t.host}:${t.port}: ${error.message}`);
        return undefined;
      }),
    ),
  );
  const openMs = performance.now() - started;
  const opened = sockets.filter((s): s is Socket => s !== undefined);
  const samples: number[] = [];
  await Promise.all(
    opened.map(async (socket) => {
      try {
        for (let i = 0; i < requestsEach; i++) {
          const t = performance.now();
          socket.write(REQUEST);
          await Promise.race([readResponse(socket), new Promise((_, reject) => socket.once("close", () => reject(new Error("closed before the answer"))))]);
          samples.push(performance.now() - t);
        }
      } catch (error) {
        errors.push((error as Error).message);
      }
    }),
  );
  for (const socket of opened) socket.destroy();
  return {
    connections: targets.length,
    openedTogether: opened.length,
    requests: samples.length,
    errors: errors.length,
    firstErrors: errors.slice(0, 3),
    openAllMs: openMs,
    seconds: (performance.now() - started) / 1000,
    ...(samples.length ? summary(samples) : {}),
  };
}

const modes: Record<string, (n: number) => Promise<unknown>> = { bulk, keepalive, fresh, first, firstcurl, concurrent };
const run = modes[mode ?? ""];
if (!run || !port) {
  console.error("usage: load-client.ts bulk|keepalive|fresh|first TARGET AMOUNT | firstcurl URL TIMEOUT_MS | concurrent T1,T2,... COUNT");
  process.exit(2);
}
console.log(JSON.stringify(await run(amount)));
process.exit(0);
