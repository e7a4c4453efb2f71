// ktctl's own share of a new connection's time, without the cluster: the real tunnel client and
// the real shadow program on loopback, direct streams riding plain TCP connections to the shadow's
// direct port (in production they are streams of one SPDY port-forward), and an HTTP server in a
// process of its own. Requests straight to the server against the same requests through a local
// forward, a new connection per request and requests on one connection, interleaved.
//   bun test/bench/direct-loopback.bench.ts [--requests 400]
// What the cluster adds on top (API server, kubelet, runtime) is in forward.bench.ts.

import net from "node:net";
import { parseArgs } from "node:util";
import { forwardLocal } from "../../core/forwarding/local-forward.ts";
import { createSessionKeyPair } from "../../core/protocol/keys.ts";
import { createTunnel } from "../../core/tunnel/client.ts";
import { ShadowProcess, memoryLogger } from "../unit/tunnel-harness.ts";

const { values } = parseArgs({ options: { requests: { type: "string", default: "400" } } });
const requests = Number(values.requests);

/** One HTTP answer per read; the server closes after answering when asked to. */
const SERVER = `
const server = require("node:net").createServer((socket) => socket.on("data", (data) => {
  const close = data.includes("Connection: close");
  socket[close ? "end" : "write"]("HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok");
}));
server.listen(0, "127.0.0.1", () => console.log("listening " + server.address().port));`;

const server = Bun.spawn(["bun", "-e", SERVER], { stdout: "pipe" });
const serverPort = Number(/listening (\d+)/.exec(await readLine(server.stdout as ReadableStream<Uint8Array>))![1]);
const keys = createSessionKeyPair("bench");
const shadow = await ShadowProcess.start(keys.publicKey, 0, { KTCTL_LOG_LEVEL: "info" });
const siblings = {
  accepting: true,
  open(port: number, first?: Buffer) {
    const socket = net.connect({ port, host: "127.0.0.1", noDelay: true });
    if (first) socket.write(first);
    return socket;
  },
};
const tunnel = await createTunnel({
  connect: async () => net.connect(shadow.port, "127.0.0.1"),
  privateKey: keys.privateKey,
  logger: memoryLogger().logger,
  direct: true,
  siblingsOf: () => siblings,
});
const forward = await forwardLocal({ localPort: 0, tunnel, target: async () => ({ host: "127.0.0.1", port: serverPort }) });

async function readLine(stream: ReadableStream<Uint8Array>): Promise<string> {
  const reader = stream.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return text;
}

const connect = (port: number) =>
  new Promise<net.Socket>((resolve, reject) => {
    const socket = net.connect({ port, host: "127.0.0.1", noDelay: true });
    socket.once("connect", () => resolve(socket)).once("error", reject);
  });
const answered = (socket: net.Socket) => new Promise((resolve) => socket.once("data", resolve));

async function fresh(port: number): Promise<number> {
  const started = performance.now();
  const socket = await connect(port);
  socket.write("GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
  await answered(socket);
  socket.destroy();
  return performance.now() - started;
}

const p50 = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const samples = { direct: { fresh: [] as number[], kept: [] as number[] }, ktctl: { fresh: [] as number[], kept: [] as number[] } };
const ports = { direct: serverPort, ktctl: forward.port };
const kept = { direct: await connect(serverPort), ktctl: await connect(forward.port) };
try {
  for (let i = 0; i < requests; i++) {
    for (const side of ["direct", "ktctl"] as const) {
      samples[side].fresh.push(await fresh(ports[side]));
      const started = performance.now();
      kept[side].write("GET / HTTP/1.1\r\nHost: bench\r\n\r\n");
      await answered(kept[side]);
      samples[side].kept.push(performance.now() - started);
    }
  }
  console.log(`\n${requests} requests each, interleaved; p50 in ms`);
  console.log("| | straight to the server | through ktctl and the shadow | added |\n|---|---|---|---|");
  for (const kind of ["fresh", "kept"] as const) {
    const label = kind === "fresh" ? "new connection per request" : "request on one connection";
    const [direct, through] = [p50(samples.direct[kind]), p50(samples.ktctl[kind])];
    console.log(`| ${label} | ${direct.toFixed(3)} | ${through.toFixed(3)} | ${(through - direct).toFixed(3)} |`);
  }
} finally {
  for (const socket of Object.values(kept)) socket.destroy();
  await forward.close();
  await tunnel.close();
  await shadow.stop();
  server.kill();
}
