// Direct streams end to end without a cluster: the real shadow program runs as a subprocess on
// loopback; the link rides a TCP connection and "sibling" port-forward streams are plain TCP
// connections to the shadow's direct port (in production both are streams of one SPDY port-forward).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import net from "node:net";
import { Duplex } from "node:stream";
import { createTunnel, type SshTunnel } from "../../core/tunnel/client.ts";
import { CARRIER_POOL_LOW_WATER, CARRIER_POOL_SIZE, CarrierPool, DirectStream } from "../../core/tunnel/direct.ts";
import { DIRECT_WINDOW, encodePreamble } from "../../core/protocol/direct-streams.ts";
import { createSessionKeyPair } from "../../core/protocol/keys.ts";
import { ShadowProcess, StateLog, connectTcp, echoServer, exchange, freePort, localServer, memoryLogger, readAll, type LocalServer } from "./tunnel-harness.ts";

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");
const MiB = 1024 * 1024;

/** Counts opens: ahead of need (no first bytes) and on demand (with the preamble). */
const opened = { ahead: 0, onDemand: 0 };
const loopbackSiblings = {
  accepting: true,
  open: (port: number, first?: Buffer) => {
    const socket = net.connect({ port, host: "127.0.0.1", noDelay: true });
    if (first) {
      opened.onDemand++;
      socket.write(first);
    } else opened.ahead++;
    return socket;
  },
};

/** Writes until the stream stops taking data for `quietMs`; returns how much it took. */
async function writeUntilStalled(stream: Duplex, limit: number, quietMs = 1500): Promise<number> {
  const chunk = Buffer.alloc(256 * 1024, 1);
  let written = 0;
  while (written < limit) {
    written += chunk.length;
    if (!stream.write(chunk)) {
      // An observation window, not a readiness wait: nothing should drain while nobody reads.
      const drained = await Promise.race([new Promise((r) => stream.once("drain", () => r(true))), Bun.sleep(quietMs).then(() => false)]);
      if (!drained) break;
    }
  }
  return written;
}

// First: the harness has been seen to stop pumping a new shadow's output after heavy traffic.
test("without siblings (or with direct off) streams are SSH channels", async () => {
  const keys = createSessionKeyPair("ktctl-test");
  const shadow = await ShadowProcess.start(keys.publicKey);
  const echo = await echoServer();
  const tunnel = await createTunnel({
    connect: async () => net.connect(shadow.port, "127.0.0.1"),
    privateKey: keys.privateKey,
    logger: memoryLogger().logger,
    direct: false,
    siblingsOf: () => loopbackSiblings,
  });
  try {
    expect(tunnel.shadow?.direct).toBe(false);
    const stream = await tunnel.openStream("127.0.0.1", echo.port);
    expect(stream).not.toBeInstanceOf(DirectStream);
    expect((await exchange(stream, "over ssh")).toString()).toBe("over ssh");
  } finally {
    await tunnel.close();
    await shadow.stop();
    await echo.close();
  }
}, 20_000);

test("a waiting stream that the shadow ends leaves the pool then, not when the next connection takes it", async () => {
  // Streams as the SPDY port-forward's are: the far side's FIN is a push(null), which a stream
  // nobody reads never turns into 'end'.
  const opened: Duplex[] = [];
  const siblings = {
    accepting: true,
    open: () => {
      const stream = new Duplex({ read() {}, write: (_chunk, _encoding, callback) => callback() });
      opened.push(stream);
      return stream;
    },
  };
  const pool = new CarrierPool(siblings, 1, 0, 0);
  try {
    const waiting = siblings.open();
    waiting.pause(); // as a stream comes back from its connection
    pool.give(waiting, true);
    // The shadow ends the stream while it waits (its last target's late reset, its idle limit).
    const gone = new Promise((resolve) => waiting.once("close", resolve));
    waiting.push(null);
    await gone;
    const { carrier } = pool.take(Buffer.from("preamble"));
    expect(carrier).not.toBe(waiting);
  } finally {
    pool.close();
    for (const stream of opened) stream.destroy();
  }
});

describe("direct streams through a real shadow process", () => {
  const keys = createSessionKeyPair("ktctl-test");
  const states = new StateLog();
  let shadow: ShadowProcess;
  let tunnel: SshTunnel;
  let echo: LocalServer;
  let directPort: number;
  let currentLink: net.Socket | undefined;

  beforeAll(async () => {
    echo = await echoServer();
    // At info level: the debug line per stream would be thousands of lines for the harness to pump.
    shadow = await ShadowProcess.start(keys.publicKey, 0, { KTCTL_LOG_LEVEL: "info" });
    directPort = Number((await shadow.waitFor(/tunnel\.ready .*direct=(\d+)/))[1]);
    tunnel = await createTunnel({
      connect: async () => (currentLink = net.connect(shadow.port, "127.0.0.1")),
      privateKey: keys.privateKey,
      logger: memoryLogger().logger,
      onState: states.listener,
      direct: true,
      siblingsOf: () => loopbackSiblings,
    });
  }, 20_000);

  afterAll(async () => {
    await tunnel?.close();
    expect(await shadow?.stop("SIGTERM")).toBe(0);
    await echo?.close();
  });

  test("the shadow offers direct streams and the tunnel uses them", async () => {
    expect(tunnel.shadow?.direct).toBe(true);
    const stream = await tunnel.openStream("127.0.0.1", echo.port);
    expect(stream).toBeInstanceOf(DirectStream);
    expect((await exchange(stream, "hi")).toString()).toBe("hi");
  });

  test("a stranger at the direct port (wrong token) is cut off without a word", async () => {
    const socket = await connectTcp(directPort);
    socket.write(encodePreamble({ token: Buffer.alloc(32, 9), host: "127.0.0.1", port: echo.port, window: 1024 }));
    expect((await readAll(socket)).length).toBe(0);
    // Early in the file on purpose: under the heavy traffic of later tests the harness has been
    // seen to stop pumping the shadow's output.
    await shadow.waitFor(/direct\.refused error="wrong token"/);
    const junk = await connectTcp(directPort);
    junk.write("GET / HTTP/1.1\r\n\r\n");
    expect((await readAll(junk)).length).toBe(0);
  }, 15_000);

  test("connections one after another ride the same waiting streams: not one stream is opened for them", async () => {
    expect(tunnel.shadow?.reuse).toBe(true);
    expect(opened.ahead).toBeGreaterThanOrEqual(CARRIER_POOL_SIZE); // filled when the link came up
    expect((await exchange(await tunnel.openStream("127.0.0.1", echo.port), "warm")).toString()).toBe("warm");
    await new Promise((resolve) => setImmediate(resolve)); // a refill would start once the answer has gone on
    const before = { ...opened };
    for (let i = 0; i < 4 * CARRIER_POOL_SIZE; i++) {
      const stream = await tunnel.openStream("127.0.0.1", echo.port);
      expect((await exchange(stream, `n${i}`)).toString()).toBe(`n${i}`);
      // The stream goes back at the shadow's DONE, which follows its EOF: by the end, it is back.
    }
    await new Promise((resolve) => setImmediate(resolve));
    expect(opened).toEqual(before);
  });

  test("a connection that ends in a reset loses its stream; those after it are served all the same", async () => {
    const resets = await localServer((socket) => socket.once("data", () => socket.resetAndDestroy()));
    const stream = await tunnel.openStream("127.0.0.1", resets.port);
    stream.write("hello");
    const error = await new Promise<Error>((resolve) => stream.once("error", resolve));
    expect(error.message).toMatch(/closed|reset/);
    for (let i = 0; i < 3; i++) expect((await exchange(await tunnel.openStream("127.0.0.1", echo.port), `after ${i}`)).toString()).toBe(`after ${i}`);
    await resets.close();
  });

  test("a target that resets after both EOFs costs its stream nothing: the next connections ride it", async () => {
    // Answers and FINs at once, then resets once our FIN is in: both EOFs are behind the shadow
    // by then, and the connection is over, whatever the reset says.
    const resetAfterEof: Promise<void>[] = [];
    const answersThenResets = await localServer((socket) => {
      socket.end("answer");
      socket.resume();
      resetAfterEof.push(new Promise((resolve) => socket.once("end", () => resolve(socket.resetAndDestroy() && undefined))));
    });
    const stream = await tunnel.openStream("127.0.0.1", answersThenResets.port);
    const answer = readAll(stream);
    stream.end(Buffer.alloc(6 * MiB, 1));
    expect((await answer).toString()).toBe("answer");
    await resetAfterEof[0];
    for (let i = 0; i < 4; i++) expect((await exchange(await tunnel.openStream("127.0.0.1", echo.port), `after ${i}`)).toString()).toBe(`after ${i}`);
    await answersThenResets.close();
  });

  test("credit still in flight when a connection ends is not taken for the next one's", async () => {
    // Each way in turn, more than a window's worth after the other side's EOF, so CREDIT frames
    // cross the ends; then connections one after another on the same waiting streams.
    const total = 3 * DIRECT_WINDOW;
    const speaksThenReads = await localServer((socket) => {
      socket.end("first");
      readAll(socket).then((b) => socket.destroy(b.length === total ? undefined : new Error(`got ${b.length}`)));
    });
    const readsThenPours = await localServer(async (socket) => {
      await readAll(socket);
      socket.end(Buffer.alloc(total, 3));
    });
    const sockets: net.Socket[] = [];
    const neverReads = await localServer((socket) => {
      socket.pause();
      sockets.push(socket);
    });
    for (let round = 0; round < 3; round++) {
      const one = await tunnel.openStream("127.0.0.1", speaksThenReads.port);
      expect((await readAll(one)).toString()).toBe("first");
      await new Promise<void>((resolve) => one.end(Buffer.alloc(total, 1), () => resolve()));
      // Credit the shadow returned for the last of those bytes may reach us after our EOF: taken
      // for the next connection's, it would let us send past the window the shadow granted it.
      const stalled = await tunnel.openStream("127.0.0.1", neverReads.port);
      let failed: Error | undefined;
      stalled.once("error", (error) => (failed = error));
      const written = await writeUntilStalled(stalled, 4 * DIRECT_WINDOW, 300);
      expect(failed).toBeUndefined();
      expect(written).toBeLessThan(4 * DIRECT_WINDOW);
      stalled.destroy();
      const two = await tunnel.openStream("127.0.0.1", readsThenPours.port);
      expect((await exchange(two, "go")).length).toBe(total);
      for (let i = 0; i < 5; i++) {
        const payload = randomBytes(100_000);
        expect((await exchange(await tunnel.openStream("127.0.0.1", echo.port), payload)).equals(payload)).toBe(true);
      }
    }
    await speaksThenReads.close();
    await readsThenPours.close();
    for (const socket of sockets) socket.destroy();
    await neverReads.close();
  }, 30_000);

  test("without reuse, streams to the shadow are replaced in batches at the low-water mark", async () => {
    const once = await createTunnel({
      connect: async () => net.connect(shadow.port, "127.0.0.1"),
      privateKey: keys.privateKey,
      logger: memoryLogger().logger,
      direct: true,
      reuse: false,
      siblingsOf: () => loopbackSiblings,
    });
    try {
      expect(once.shadow?.reuse).toBe(false);
      const before = { ...opened };
      const batches: number[] = [];
      for (let i = 0; i < 4 * CARRIER_POOL_SIZE; i++) {
        const ahead = opened.ahead;
        const stream = await once.openStream("127.0.0.1", echo.port);
        expect((await exchange(stream, `n${i}`)).toString()).toBe(`n${i}`);
        await new Promise((resolve) => setImmediate(resolve)); // a refill starts once the answer has gone on
        if (opened.ahead > ahead) batches.push(opened.ahead - ahead);
      }
      expect(opened.onDemand).toBe(before.onDemand); // every one of them rode a waiting stream
      // Not one by one: from the low-water mark back to the full pool, each time (the first batch
      // is the pool's first fill, when the link came up).
      expect(batches.length).toBeGreaterThan(1);
      expect(batches.slice(1)).toEqual(batches.slice(1).map(() => CARRIER_POOL_SIZE - CARRIER_POOL_LOW_WATER));
    } finally {
      await once.close();
    }
  });

  test("8 MiB to a server and back intact", async () => {
    const payload = randomBytes(8 * MiB);
    const answer = await exchange(await tunnel.openStream("127.0.0.1", echo.port), payload);
    expect(answer.length).toBe(payload.length);
    expect(sha256(answer)).toBe(sha256(payload));
  });

  test("half-close both ways: the answer after our EOF, and our bytes after the server's EOF", async () => {
    const answersLate = await localServer(async (socket) => socket.end(`got ${(await readAll(socket)).length} bytes`));
    expect((await exchange(await tunnel.openStream("127.0.0.1", answersLate.port), randomBytes(100_000))).toString()).toBe("got 100000 bytes");

    // The server says its piece and shuts its side first, then still reads everything we send.
    const heardAfterItsEof = new Promise<number>((resolve) => {
      void localServer((socket) => {
        socket.end("server done talking");
        readAll(socket).then((b) => resolve(b.length));
      }).then((server) => (speaksFirst = server));
    });
    let speaksFirst: LocalServer | undefined;
    while (!speaksFirst) await Bun.sleep(1);
    const stream = await tunnel.openStream("127.0.0.1", speaksFirst.port);
    const fromServer = await readAll(stream); // its EOF arrives while our side is still open
    expect(fromServer.toString()).toBe("server done talking");
    stream.end(randomBytes(300_000));
    expect(await heardAfterItsEof).toBe(300_000);
    await answersLate.close();
    await speaksFirst.close();
  });

  test("a failed open says why, as seen from the shadow, in the same words as over SSH", async () => {
    const closedPort = await freePort();
    const refused = await tunnel.openStream("127.0.0.1", closedPort).catch((error) => error);
    expect(refused.message).toBe(`cannot reach 127.0.0.1:${closedPort} from the cluster: connection refused`);
    expect(refused.reason).toBe("refused");
    const unknown = await tunnel.openStream("no-such-service.invalid", 80).catch((error) => error);
    expect(unknown.message).toBe('cannot reach no-such-service.invalid:80 from the cluster: no such host "no-such-service.invalid"');
    expect(unknown.reason).toBe("not-found");
  });

  test("a target that just answered gets its next stream at once; if it refuses after all, the stream says so", async () => {
    const server = await localServer((socket) => socket.end("up"));
    expect((await exchange(await tunnel.openStream("127.0.0.1", server.port), "")).toString()).toBe("up");
    await server.close();
    // Warm: handed out before the shadow has tried; the refusal arrives as the stream's error.
    const stream = await tunnel.openStream("127.0.0.1", server.port);
    const error = await new Promise<any>((resolve) => stream.once("error", resolve));
    expect(error.message).toBe(`cannot reach 127.0.0.1:${server.port} from the cluster: connection refused`);
    // Cold again after a refusal: the open itself fails.
    await expect(tunnel.openStream("127.0.0.1", server.port)).rejects.toThrow(/connection refused/);
  });

  test("200 concurrent streams, 64 KiB each way, all intact", async () => {
    const results = await Promise.all(
      Array.from({ length: 200 }, async () => {
        const payload = randomBytes(64 * 1024);
        return (await exchange(await tunnel.openStream("127.0.0.1", echo.port), payload)).equals(payload);
      }),
    );
    expect(results.filter(Boolean)).toHaveLength(200);
  }, 30_000);

  test("flow control: a server that does not read stops our writes; one that reads gets every byte", async () => {
    let unblock!: () => void;
    const reading = new Promise<void>((resolve) => (unblock = resolve));
    let received = 0;
    const done = new Promise<void>((resolve) => {
      void localServer(async (socket) => {
        socket.pause();
        await reading;
        socket.on("data", (chunk: Buffer) => (received += chunk.length));
        socket.on("end", () => {
          socket.end();
          resolve();
        });
        socket.resume();
      }).then((server) => (slow = server));
    });
    let slow: LocalServer | undefined;
    while (!slow) await Bun.sleep(1);
    const stream = await tunnel.openStream("127.0.0.1", slow.port);
    const written = await writeUntilStalled(stream, 512 * MiB);
    console.log(`writes stalled after ${(written / MiB).toFixed(0)} MiB unread`);
    // The window (grown at most to its maximum) plus socket buffers on loopback, not everything.
    expect(written).toBeLessThan(64 * MiB);
    unblock();
    stream.end();
    await done;
    expect(received).toBe(written);
    await slow.close();
  }, 30_000);

  test("flow control: a stream we do not read holds at most its window here", async () => {
    const total = 64 * MiB;
    const source = await localServer((socket) => {
      const chunk = Buffer.alloc(MiB, 2);
      let sent = 0;
      const pour = () => {
        while (sent < total) {
          sent += chunk.length;
          if (!socket.write(chunk)) return void socket.once("drain", pour);
        }
        socket.end();
      };
      pour();
    });
    const stream = await tunnel.openStream("127.0.0.1", source.port);
    // Nothing reads: wait until the buffered amount stops growing.
    let last = -1;
    while (stream.readableLength !== last) {
      last = stream.readableLength;
      await Bun.sleep(300);
    }
    console.log(`an unread stream holds ${(stream.readableLength / MiB).toFixed(1)} MiB here`);
    expect(stream.readableLength).toBeLessThanOrEqual(DIRECT_WINDOW);
    expect((await readAll(stream)).length).toBe(total); // what was held, then the rest as we read
    stream.end(); // the source waits, half-open, for our side to finish too
    await source.close();
  }, 30_000);

  test("a cut link resets its direct streams, saying why", async () => {
    const stream = await tunnel.openStream("127.0.0.1", echo.port);
    const error = new Promise<Error>((resolve) => stream.once("error", resolve));
    const from = states.seen.length;
    currentLink!.destroy();
    expect((await error).message).toMatch(/tunnel link lost/);
    await states.waitFor("connected", from, 10_000);
    expect((await exchange(await tunnel.openStream("127.0.0.1", echo.port), "again")).toString()).toBe("again");
  }, 20_000);
});
