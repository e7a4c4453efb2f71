// What the ui costs a session, measured on a real tunnel (shadow subprocess, loopback): the same
// remote listener three ways, side by side, interleaved run by run so machine noise hits all alike:
//   none     no observer at all (the code before `ktctl ui` existed);
//   no ui    the observer every mode now passes (api.ui.tap), with no ui open: it answers "no";
//   ui open  a ui hub is open and connected, so every connection is tapped and its records sent.
// For each: bulk throughput of one stream (MB/s) and sequential keep-alive HTTP/1.1 requests (req/s).
//   bun test/bench/ui-tap.ts [MiB per run, default 128] [requests per run, default 2000] [runs, default 5]

import net from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ObserveConnection } from "../../core/plugin-api.ts";
import { createTunnel } from "../../core/tunnel/client.ts";
import { createSessionKeyPair } from "../../core/protocol/keys.ts";
import { openUiHub } from "../../core/ui/hub.ts";
import { createUiMembers } from "../../core/ui/api.ts";
import { ShadowProcess, localServer } from "../unit/tunnel-harness.ts";

const MIB = 1024 * 1024;
const size = Number(process.argv[2] ?? 128) * MIB;
const requests = Number(process.argv[3] ?? 2000);
const runs = Number(process.argv[4] ?? 5);
const block = Buffer.alloc(256 * 1024, 0x5a);

const home = mkdtempSync(join(tmpdir(), "ktctl-ui-bench-"));
process.env.KTCTL_HOME = home;
const quiet = { debug() {}, info() {}, warn: console.warn, error: console.error } as any;
const { ui } = createUiMembers(quiet);

// source: sends `size` bytes; http: answers every request on a keep-alive connection.
const source = await localServer((socket) => {
  socket.resume();
  void (async () => {
    for (let left = size; left > 0; left -= block.length) {
      if (!socket.write(left >= block.length ? block : block.subarray(0, left))) await new Promise((r) => socket.once("drain", r));
    }
    socket.end();
  })();
});
const ANSWER = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";
const http = await localServer((socket) => {
  let pending = "";
  socket.on("data", (chunk: Buffer) => {
    pending += chunk.toString("latin1");
    let end: number;
    while ((end = pending.indexOf("\r\n\r\n")) >= 0) {
      pending = pending.slice(end + 4);
      socket.write(ANSWER);
    }
  });
});

const keys = createSessionKeyPair();
const shadow = await ShadowProcess.start(keys.publicKey, 0, { KTCTL_LOG_LEVEL: "info" });
const tunnel = await createTunnel({ connect: async () => net.connect(shadow.port, "127.0.0.1"), privateKey: keys.privateKey, logger: quiet });
const freePort = () =>
  new Promise<number>((resolve) => {
    const probe = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
const connect = (port: number) => new Promise<net.Socket>((resolve) => {
  const socket = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true }, () => resolve(socket));
});

type Variant = "none" | "no ui" | "ui open";
const observe: Record<Variant, ObserveConnection | undefined> = {
  none: undefined,
  "no ui": (origin) => ui.tap({ via: "bench", local: { host: "127.0.0.1", port: 1 }, remote: `${origin.address}:${origin.port}` }),
  "ui open": (origin) => ui.tap({ via: "bench", local: { host: "127.0.0.1", port: 1 }, remote: `${origin.address}:${origin.port}` }),
};
const ports: Record<Variant, { bulk: number; http: number }> = {} as any;
for (const variant of Object.keys(observe) as Variant[]) {
  ports[variant] = { bulk: await freePort(), http: await freePort() };
  await tunnel.addRemoteListener(ports[variant].bulk, "127.0.0.1", source.port, observe[variant]);
  await tunnel.addRemoteListener(ports[variant].http, "127.0.0.1", http.port, observe[variant]);
}

async function bulk(port: number): Promise<number> {
  const socket = await connect(port);
  const started = performance.now();
  let total = 0;
  socket.on("data", (chunk: Buffer) => (total += chunk.length));
  socket.end();
  await new Promise((resolve) => socket.once("end", resolve));
  if (total !== size) throw new Error(`moved ${total} of ${size} bytes`);
  return size / MIB / ((performance.now() - started) / 1000);
}

async function requestsPerSecond(port: number): Promise<number> {
  const socket = await connect(port);
  const request = Buffer.from("GET /bench HTTP/1.1\r\nHost: bench\r\nVERSION: mark\r\n\r\n");
  let answered = 0;
  let buffered = "";
  const started = performance.now();
  await new Promise<void>((resolve) => {
    socket.on("data", (chunk: Buffer) => {
      buffered += chunk.toString("latin1");
      while (buffered.length >= ANSWER.length) {
        buffered = buffered.slice(ANSWER.length);
        if (++answered === requests) return resolve();
        socket.write(request);
      }
    });
    socket.write(request);
  });
  const rate = requests / ((performance.now() - started) / 1000);
  socket.destroy();
  return rate;
}

let received = 0;
const results: Record<Variant, { bulk: number[]; http: number[] }> = { none: { bulk: [], http: [] }, "no ui": { bulk: [], http: [] }, "ui open": { bulk: [], http: [] } };
console.log(`${size / MIB} MiB and ${requests} keep-alive requests per run, ${runs} runs, variants interleaved`);
for (let run = 0; run < runs; run++) {
  for (const variant of Object.keys(observe) as Variant[]) {
    // A ui is open only for its own variant; the session notices through the directory watch.
    const hub = variant === "ui open" ? await openUiHub(home, quiet) : undefined;
    hub?.subscribe((e) => e.event.type === "traffic" && received++);
    while (ui.watching !== Boolean(hub)) await Bun.sleep(5);
    results[variant].bulk.push(await bulk(ports[variant].bulk));
    results[variant].http.push(await requestsPerSecond(ports[variant].http));
    await hub?.close();
  }
}
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
for (const variant of Object.keys(observe) as Variant[]) {
  const r = results[variant];
  console.log(
    `${variant.padEnd(8)} bulk ${median(r.bulk).toFixed(0).padStart(5)} MB/s (${r.bulk.map((v) => v.toFixed(0)).join(", ")})   ` +
      `http ${median(r.http).toFixed(0).padStart(6)} req/s (${r.http.map((v) => v.toFixed(0)).join(", ")})`,
  );
}
console.log(`records the ui received: ${received}`);

await tunnel.close();
await shadow.stop();
await source.close();
await http.close();
rmSync(home, { recursive: true, force: true });
process.exit(0);
