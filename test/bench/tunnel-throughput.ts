// One stream's throughput through the tunnel on loopback, against a direct TCP connection.
//   bun test/bench/tunnel-throughput.ts [MiB per run, default 256] [runs, default 3]
// Real shadow subprocess, real client; the SSH link rides plain TCP here (a port-forward in use).

import net from "node:net";
import type { Duplex } from "node:stream";
import { createTunnel } from "../../core/tunnel/client.ts";
import { createSessionKeyPair } from "../../core/protocol/keys.ts";
import { ShadowProcess, localServer } from "../unit/tunnel-harness.ts";

const MIB = 1024 * 1024;
const size = Number(process.argv[2] ?? 256) * MIB;
const runs = Number(process.argv[3] ?? 3);
const block = Buffer.alloc(256 * 1024, 0x5a);

/** Writes `bytes` with back-pressure, then half-closes. */
async function pour(stream: Duplex, bytes: number): Promise<void> {
  for (let left = bytes; left > 0; left -= block.length) {
    const chunk = left >= block.length ? block : block.subarray(0, left);
    if (!stream.write(chunk)) await new Promise((resolve) => stream.once("drain", resolve));
  }
  stream.end();
}

/** Counts bytes to the end of the stream. */
function drain(stream: Duplex): Promise<number> {
  return new Promise((resolve, reject) => {
    let total = 0;
    stream.on("data", (chunk: Buffer) => (total += chunk.length));
    stream.once("end", () => resolve(total));
    stream.once("error", reject);
  });
}

async function timed(label: string, once: () => Promise<number>): Promise<number> {
  const rates: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    const bytes = await once();
    if (bytes !== size) throw new Error(`${label}: moved ${bytes} bytes, expected ${size}`);
    rates.push(bytes / MIB / ((performance.now() - started) / 1000));
  }
  rates.sort((a, b) => a - b);
  const median = rates[Math.floor(rates.length / 2)]!;
  console.log(`${label.padEnd(36)} ${median.toFixed(0).padStart(6)} MB/s  (runs: ${rates.map((r) => r.toFixed(0)).join(", ")})`);
  return median;
}

// sink: reads everything, answers with nothing; source: sends `size` bytes to whoever connects.
const sink = await localServer((socket) => {
  socket.resume();
  socket.once("end", () => socket.end());
});
const source = await localServer((socket) => {
  socket.resume();
  void pour(socket, size);
});

const keys = createSessionKeyPair();
const shadow = await ShadowProcess.start(keys.publicKey, 0, { KTCTL_LOG_LEVEL: "info" });
const tunnel = await createTunnel({
  connect: async () => net.connect(shadow.port, "127.0.0.1"),
  privateKey: keys.privateKey,
  logger: { debug() {}, info() {}, warn: console.warn },
});

const connect = (port: number) =>
  new Promise<net.Socket>((resolve) => {
    const socket = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true }, () => resolve(socket));
  });

console.log(`one stream, ${size / MIB} MiB per run, median of ${runs}`);
const directUp = await timed("direct TCP, upload", async () => {
  const socket = await connect(sink.port);
  const done = new Promise((resolve) => socket.once("close", resolve));
  socket.resume();
  await pour(socket, size);
  await done;
  return size;
});
const tunnelUp = await timed("tunnel openStream, upload", async () => {
  const stream = await tunnel.openStream("127.0.0.1", sink.port);
  const done = new Promise((resolve) => stream.once("close", resolve));
  stream.resume();
  await pour(stream, size);
  await done;
  return size;
});
const directDown = await timed("direct TCP, download", async () => {
  const socket = await connect(source.port);
  const received = drain(socket);
  socket.end();
  return received;
});
const tunnelDown = await timed("tunnel openStream, download", async () => {
  const stream = await tunnel.openStream("127.0.0.1", source.port);
  const received = drain(stream);
  stream.end();
  return received;
});

const remotePort = await new Promise<number>((resolve) => {
  const probe = net.createServer().listen(0, "127.0.0.1", () => {
    const { port } = probe.address() as net.AddressInfo;
    probe.close(() => resolve(port));
  });
});
await tunnel.addRemoteListener(remotePort, "127.0.0.1", source.port);
const tunnelIn = await timed("tunnel remote listener, cluster<-laptop", async () => {
  const socket = await connect(remotePort);
  const received = drain(socket);
  socket.end();
  return received;
});

console.log(
  `tunnel/direct: upload ${((tunnelUp / directUp) * 100).toFixed(0)}%, download ${((tunnelDown / directDown) * 100).toFixed(0)}%, ` +
    `remote listener ${((tunnelIn / directDown) * 100).toFixed(0)}%`,
);

await tunnel.close();
await shadow.stop();
await sink.close();
await source.close();
