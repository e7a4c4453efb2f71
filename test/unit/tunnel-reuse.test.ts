// Reused streams under load, without a cluster: the real shadow program on loopback, thousands of
// short connections 8 at a time both ways (laptop -> cluster on direct streams, cluster -> laptop on
// reverse streams), the client closing first in half of them and the server in the other half.
// Every answer must be whole, and the streams must be reused, not opened per connection. What the
// host writes on its streams is recorded write by write: a connection's DONE never travels alone,
// and an answer followed at once by the server's FIN leaves with its EOF. A client that closes
// after the server has (half the connections) sends its EOF late: it waits for the stream's next
// use and leaves with it, from the host on direct streams and from the shadow on reverse streams.

import { afterAll, beforeAll, expect, test } from "bun:test";
import net from "node:net";
import type { Duplex } from "node:stream";
import { createTunnel, type SshTunnel } from "../../core/tunnel/client.ts";
import { createSessionKeyPair } from "../../core/protocol/keys.ts";
import { FrameType, encodeFrameHeader } from "../../core/protocol/direct-streams.ts";
import { ShadowProcess, connectTcp, freePort, localServer, memoryLogger, readAll, type LocalServer } from "./tunnel-harness.ts";

const CONNECTIONS = 1000;
const PARALLEL = 8;

const keys = createSessionKeyPair("ktctl-test");
const opened = { streams: 0 };
/** Every write the host made on its streams to the shadow, as one buffer each (what one syscall carries). */
const carrierWrites: Buffer[] = [];
/** Everything the shadow sent on each of the host's streams, in order. */
const carrierReads: Buffer[][] = [];

/** Records each write the socket hands the kernel (a corked batch is one _writev). */
function recordWrites(socket: net.Socket): void {
  const spy = socket as unknown as {
    _write(chunk: Buffer, encoding: string, callback: (error?: Error | null) => void): void;
    _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void;
  };
  const write = spy._write.bind(socket);
  const writev = spy._writev.bind(socket);
  let inWritev = false; // a batch may reach the kernel through _write: counted once, as the batch
  spy._write = (chunk, encoding, callback) => {
    if (!inWritev) carrierWrites.push(Buffer.from(chunk));
    write(chunk, encoding, callback);
  };
  spy._writev = (chunks, callback) => {
    carrierWrites.push(Buffer.concat(chunks.map((c) => c.chunk)));
    inWritev = true;
    try {
      writev(chunks, callback);
    } finally {
      inWritev = false;
    }
  };
}

/** Records what the socket reads, without becoming a reader of its own (that would set it flowing). */
function recordReads(socket: net.Socket): void {
  const reads: Buffer[] = [];
  carrierReads.push(reads);
  const emit = socket.emit.bind(socket);
  socket.emit = ((event: string, ...args: unknown[]) => {
    if (event === "data") reads.push(Buffer.from(args[0] as Buffer));
    return emit(event, ...args);
  }) as typeof socket.emit;
}

const EOF = encodeFrameHeader(FrameType.Eof, 0);
const DONE = encodeFrameHeader(FrameType.Done, 0);

/**
 * How many writes were a DONE frame and nothing else, and how many DONE frames led a write (alone,
 * or behind a late EOF); of those, how many came behind a late EOF.
 */
function doneWrites(writes: Buffer[]): { alone: number; leading: number; behindLateEof: number } {
  const startsWith = (w: Buffer, head: Buffer) => w.length > head.length && w.subarray(0, head.length).equals(head);
  const lateEofDone = Buffer.concat([EOF, DONE]);
  const alone = writes.filter((w) => w.equals(DONE)).length;
  const behindLateEof = writes.filter((w) => startsWith(w, lateEofDone)).length;
  const leading = writes.filter((w) => startsWith(w, DONE)).length + behindLateEof;
  return { alone, leading, behindLateEof };
}

/**
 * How many reads began with an EOF right in front of a stream's next assignment: a late EOF, which
 * the shadow writes with the assignment in one write (an EOF sent on its own is read on its own,
 * unless the host happens to read late).
 */
function lateEofsBeforeAssignments(): number {
  const lateEof = Buffer.concat([EOF, Buffer.from("A", "latin1")]);
  return carrierReads.flat().filter((read) => read.subarray(0, lateEof.length).equals(lateEof)).length;
}

/** Of the writes that carried an answer, how many carried its EOF too (the answer was held for it). */
function answersWithEof(writes: Buffer[]): { answers: number; withEof: number } {
  const eof = encodeFrameHeader(FrameType.Eof, 0);
  const answers = writes.filter((w) => w.includes("answer to request"));
  const withEof = answers.filter((w) => w.indexOf(eof, w.lastIndexOf("answer to request")) >= 0).length;
  return { answers: answers.length, withEof };
}
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
        recordWrites(socket);
        recordReads(socket);
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
  carrierWrites.length = 0;
  expect(await load(() => connectTcp(remotePort))).toEqual([]);
  // A stream per connection in flight at most, not one per connection.
  expect(opened.streams - before).toBeLessThan(CONNECTIONS / 10);
  // The shadow takes a stream back before its DONE: each DONE left in front of the next
  // connection's first frame, never as a message of its own.
  const { alone, leading } = doneWrites(carrierWrites);
  expect(alone).toBe(0);
  expect(leading).toBeGreaterThan(CONNECTIONS / 2);
  // A client's EOF after the server's end waited for the stream's next assignment (the rest left
  // alone once the stream had waited LATE_EOF_HOLD_MS, or when another stream was taken).
  expect(lateEofsBeforeAssignments()).toBeGreaterThan(CONNECTIONS / 4);
  // The server answers and closes at once: its answer waited for the FIN, and both left as one write.
  const { answers, withEof } = answersWithEof(carrierWrites);
  expect(answers).toBeGreaterThan(CONNECTIONS * 0.95); // the first few may ride SSH while the pool fills
  expect(withEof).toBeGreaterThan(answers * 0.95);
}, 60_000);

test(`${CONNECTIONS} connections laptop -> cluster, ${PARALLEL} at a time, on reused direct streams: all whole`, async () => {
  const before = opened.streams;
  carrierWrites.length = 0;
  expect(await load(() => tunnel.openStream("127.0.0.1", server.port))).toEqual([]);
  expect(opened.streams - before).toBeLessThan(CONNECTIONS / 10);
  // Each DONE waited for the stream's next use and left in front of its preamble, and so did a
  // client's EOF that came after the server's.
  const { alone, leading, behindLateEof } = doneWrites(carrierWrites);
  expect(alone).toBe(0);
  expect(leading).toBeGreaterThan(CONNECTIONS / 2);
  expect(behindLateEof).toBeGreaterThan(CONNECTIONS / 4);
}, 60_000);
