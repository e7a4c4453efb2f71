// An open-loop HTTP load: LOAD_RATE requests per second to LOAD_URL for LOAD_SECONDS, each started on
// its schedule whether or not earlier ones have answered (a stalled path piles requests up rather
// than slowing the load down, as real clients do). Requests alternate between a kept-alive
// connection (the client's pool) and a new connection per request (`Connection: close`), so both a
// long-lived stream through the tunnel and a stream per request are exercised.
//
// One JSON line per request on stdout once it is settled: {"t": start (epoch ms), "ms": latency,
// "ok": 0|1, "ka": 0|1, "e": why it failed}. A request is ok when it answers 200 within
// LOAD_TIMEOUT_MS with a body holding LOAD_EXPECT. The last line is {"done": requests}.
//
// It imports nothing, so the same text runs on the laptop (`bun load-generator.ts`) and in a pod
// (passed to a Bun binary as `-e`).

const url = process.env.LOAD_URL ?? "";
const rate = Number(process.env.LOAD_RATE ?? "50");
const seconds = Number(process.env.LOAD_SECONDS ?? "60");
const expected = process.env.LOAD_EXPECT ?? "";
const timeoutMs = Number(process.env.LOAD_TIMEOUT_MS ?? "5000");
if (!url || !(rate > 0) || !(seconds > 0)) {
  console.error("load-generator: LOAD_URL, LOAD_RATE > 0 and LOAD_SECONDS > 0 are required");
  process.exit(2);
}

const out = (line: object) => process.stdout.write(`${JSON.stringify(line)}\n`);

async function once(index: number): Promise<void> {
  const keepAlive = index % 2 === 0;
  const started = Date.now();
  const startedPrecise = performance.now();
  let ok = false;
  let error = "";
  try {
    const response = await fetch(url, {
      keepalive: keepAlive,
      headers: keepAlive ? {} : { connection: "close" },
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = await response.text();
    ok = response.status === 200 && body.includes(expected);
    if (!ok) error = `status ${response.status}: ${body.slice(0, 80)}`;
  } catch (e) {
    error = String((e as Error)?.message ?? e).slice(0, 120);
  }
  const line: Record<string, unknown> = { t: started, ms: Math.round((performance.now() - startedPrecise) * 10) / 10, ok: ok ? 1 : 0, ka: keepAlive ? 1 : 0 };
  if (!ok) line.e = error;
  out(line);
}

const total = Math.round(rate * seconds);
const origin = performance.now();
const inFlight = new Set<Promise<void>>();
for (let i = 0; i < total; i++) {
  // Scheduled against the start, not the previous request: a late timer does not shift the rest.
  const due = origin + (i * 1000) / rate;
  const wait = due - performance.now();
  if (wait > 0) await Bun.sleep(wait);
  const request = once(i).finally(() => inFlight.delete(request));
  inFlight.add(request);
}
await Promise.all(inFlight);
out({ done: total });

export {}; // a module, for its top-level await
