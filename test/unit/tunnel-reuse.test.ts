// Reused streams under load, without a cluster: the real shadow program on loopback, thousands of
// short connections 8 at a time both ways (laptop -> cluster on direct streams, cluster -> laptop on
// reverse streams), the client closing first in half of them and the server in the other half.
// Every answer must be whole, and the streams must be reused, not opened per connection.

import { afterAll, beforeAll, expect, test } from "bun:test";
import net from "node:net";
import type { Duplex } from "node:stream";
import { createTunnel, type SshTunnel } from "../../core/tunnel/client.ts";
import { createSessionKeyPair } from "../../core/protocol/keys.ts";
import { ShadowProcess, connectTcp, freePort, localServer, memoryLogger, readAll, type LocalServer } from "./tunnel-harness.ts";

const CONNECTIONS = 1000;
const PARALLEL = 8;

const keys = createSessionKeyPair("ktctl-test");
const opened = { streams: 0 };
let shadow: ShadowProcess;
let tunnel: SshTunnel;
let server: LocalServer;
let remotePort: number;

beforeAll(async () => {
  shadow = await ShadowProcess.start(keys.publicKey, 0, { KTCTL_LOG_LEVEL: "info" });
  // Answers once it has the request, then closes: the server's FIN may come before or after the client's.
  server = await localServer((socket) => {
    socket.on("error", () => {});
    socket.once("data", (request: Buffer) => socket.end(`answer to ${request.toString()}`));
  });
  tunnel = await createTunnel({
    connect: async () => net.connect(shadow.port, "127.0.0.1"),
    privateKey: keys.privateKey,
    logger: memoryLogger().logger,
    siblingsOf: () => ({
      accepting: true,
      open: (port: number, first?: Buffer) => {
        opened.streams++;
        const socket = net.connect({ port, host: "127.0.0.1", noDelay: true });
        if (first) socket.write(first);
        return socket;
      },
    }),
  });
  remotePort = await freePort();
  await tunnel.addRemoteListener(remotePort, "127.0.0.1", server.port);
}, 20_000);

afterAll(async () => {
  await tunnel?.removeRemoteListener(remotePort); // no listener left: the shadow then exits at once
  await tunnel?.close();
  await shadow?.stop();
  await server?.close();
});

async function load(connect: () => Promise<Duplex>): Promise<string[]> {
  const failures: string[] = [];
  let next = 0;
  const one = async (i: number) => {
    const socket = await connect();
    socket.write(`request ${i}`);
    if (i % 2 === 1) socket.end(); // the client's FIN first; otherwise after the server's
    const answer = (await readAll(socket)).toString();
    socket.end();
    if (answer !== `answer to request ${i}`) failures.push(`${i}: ${JSON.stringify(answer)}`);
  };
  await Promise.all(
    Array.from({ length: PARALLEL }, async () => {
      while (next < CONNECTIONS) {
        const i = next++;
        await one(i).catch((error: Error) => failures.push(`${i}: ${error.message}`));
      }
    }),
  );
  return failures;
}

test(`${CONNECTIONS} connections cluster -> laptop, ${PARALLEL} at a time, on reused reverse streams: all whole`, async () => {
  expect(tunnel.shadow?.reuse).toBe(true);
  const before = opened.streams;
  expect(await load(() => connectTcp(remotePort))).toEqual([]);
  // A stream per connection in flight at most, not one per connection.
  expect(opened.streams - before).toBeLessThan(CONNECTIONS / 10);
}, 60_000);

test(`${CONNECTIONS} connections laptop -> cluster, ${PARALLEL} at a time, on reused direct streams: all whole`, async () => {
  const before = opened.streams;
  expect(await load(() => tunnel.openStream("127.0.0.1", server.port))).toEqual([]);
  expect(opened.streams - before).toBeLessThan(CONNECTIONS / 10);
}, 60_000);
