// Reverse streams end to end without a cluster: the real shadow program runs as a subprocess on
// loopback, its remote listeners are reached on loopback as the cluster would reach them, and the
// host's "sibling" port-forward streams are plain TCP connections to the shadow's reverse port.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import net from "node:net";
import { createTunnel, type SshTunnel } from "../../core/tunnel/client.ts";
import { REVERSE_POOL_SIZE } from "../../core/tunnel/reverse.ts";
import { decodeAssignment, decodeReversePreamble, encodeAssignment, encodeReversePreamble } from "../../core/protocol/reverse-streams.ts";
import { createSessionKeyPair } from "../../core/protocol/keys.ts";
import { ENDPOINT_LINGER_MS } from "../../core/protocol/tunnel.ts";
import { LATE_EOF_HOLD_MS } from "../../core/protocol/direct-streams.ts";
import { ShadowProcess, StateLog, connectTcp, echoServer, exchange, freePort, localServer, memoryLogger, readAll, type LocalServer } from "./tunnel-harness.ts";

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

/** Loopback "siblings"; counts the streams opened to the reverse port. */
function loopbackSiblings(reversePort: () => number | undefined) {
  const opened = { reverse: 0 };
  const waiters = new Set<() => void>();
  return {
    opened,
    /** Resolves once `count` streams have been opened to the reverse port. */
    reached: (count: number) =>
      new Promise<void>((resolve) => {
        const check = () => opened.reverse >= count && (waiters.delete(check), resolve());
        waiters.add(check);
        check();
      }),
    siblings: {
      accepting: true,
      open: (port: number, first?: Buffer) => {
        if (port === reversePort()) {
          opened.reverse++;
          for (const check of [...waiters]) check();
        }
        const socket = net.connect({ port, host: "127.0.0.1", noDelay: true });
        if (first) socket.write(first);
        return socket;
      },
    },
  };
}

/**
 * Makes one connection to `port` and says whether it rode a reverse stream: the shadow logs each
 * connection it hands to one, told apart by its source port (SSH channels are not logged).
 */
async function ridesReverseStream(shadow: ShadowProcess, port: number, text: string): Promise<boolean> {
  const client = await connectTcp(port);
  const from = client.localPort;
  expect((await exchange(client, text)).toString()).toBe(text);
  return shadow.waitFor(new RegExp(`reverse\\.open port=${port} from=127\\.0\\.0\\.1:${from}$`), 1000).then(
    () => true,
    () => false,
  );
}

describe("the reverse-stream wire format", () => {
  test("preamble and assignment round-trip, arriving in any slices", () => {
    const token = randomBytes(32);
    const preamble = encodeReversePreamble({ token, window: 65536 });
    expect(decodeReversePreamble(preamble.subarray(0, 10))).toBeUndefined();
    const whole = decodeReversePreamble(Buffer.concat([preamble, Buffer.from("x")]))!;
    expect(whole.preamble.token.equals(token)).toBe(true);
    expect(whole.preamble.window).toBe(65536);
    expect(whole.rest.toString()).toBe("x");

    const assignment = encodeAssignment({ listenerPort: 8080, originAddress: "10.1.2.3", originPort: 40000 });
    for (let cut = 0; cut < assignment.length; cut++) expect(decodeAssignment(assignment.subarray(0, cut))).toBeUndefined();
    const decoded = decodeAssignment(Buffer.concat([assignment, Buffer.from([4, 0, 0, 0, 0])]))!;
    expect(decoded.assignment).toEqual({ listenerPort: 8080, originAddress: "10.1.2.3", originPort: 40000 });
    expect(decoded.rest.length).toBe(5);
  });

  test("a reusable stream's preamble says so (KTR2); the first kind stays as it was (KTR1)", () => {
    const token = Buffer.alloc(32, 5);
    const reusable = encodeReversePreamble({ token, window: 4096, reusable: true });
    expect(reusable.subarray(0, 4).toString("latin1")).toBe("KTR2");
    expect(decodeReversePreamble(reusable)!.preamble).toEqual({ token, window: 4096, reusable: true, lateEof: false });
    const once = encodeReversePreamble({ token, window: 4096 });
    expect(once.subarray(0, 4).toString("latin1")).toBe("KTR1");
    expect(decodeReversePreamble(once)!.preamble.reusable).toBe(false);
  });

  test("a stream whose host takes a late EOF says KTR3, and is reusable", () => {
    const token = Buffer.alloc(32, 6);
    const late = encodeReversePreamble({ token, window: 4096, reusable: true, lateEof: true });
    expect(late.subarray(0, 4).toString("latin1")).toBe("KTR3");
    expect(decodeReversePreamble(late)!.preamble).toEqual({ token, window: 4096, reusable: true, lateEof: true });
    expect(() => encodeReversePreamble({ token, window: 4096, lateEof: true })).toThrow(/reusable/);
  });

  test("malformed input is refused, not guessed at", () => {
    expect(() => decodeReversePreamble(Buffer.from("KTD1"))).toThrow(/not a reverse stream/);
    expect(() => encodeReversePreamble({ token: Buffer.alloc(8), window: 1 })).toThrow(/token/);
    expect(() => decodeAssignment(Buffer.from([0x42]))).toThrow(/assignment/);
    expect(() => decodeAssignment(Buffer.from([0x41, 0, 0, 0, 1, 0]))).toThrow(/port 0/);
  });
});

describe("reverse streams through a real shadow process", () => {
  const keys = createSessionKeyPair("ktctl-test");
  const states = new StateLog();
  const log = memoryLogger();
  let shadow: ShadowProcess;
  let tunnel: SshTunnel;
  let echo: LocalServer;
  let reversePort: number | undefined;
  let currentLink: net.Socket | undefined;
  let remotePort: number;
  const loopback = loopbackSiblings(() => reversePort);

  beforeAll(async () => {
    echo = await echoServer();
    shadow = await ShadowProcess.start(keys.publicKey);
    reversePort = Number((await shadow.waitFor(/tunnel\.ready .*reverse=(\d+)/))[1]);
    tunnel = await createTunnel({
      connect: async () => (currentLink = net.connect(shadow.port, "127.0.0.1")),
      privateKey: keys.privateKey,
      logger: log.logger,
      onState: states.listener,
      siblingsOf: () => loopback.siblings,
    });
    remotePort = await freePort();
    await tunnel.addRemoteListener(remotePort, "127.0.0.1", echo.port);
  }, 20_000);

  afterAll(async () => {
    await tunnel?.close();
    expect(await shadow?.stop("SIGTERM")).toBe(0);
    await echo?.close();
  });

  test("the shadow offers reverse streams; connections to a remote listener ride them, not SSH", async () => {
    expect(tunnel.shadow?.reverse).toBe(true);
    expect(loopback.opened.reverse).toBeGreaterThanOrEqual(REVERSE_POOL_SIZE.base);
    const carried = (text: string) => ridesReverseStream(shadow, remotePort, text);
    // The pool's streams reach the shadow moments after the link is up (SSH carries what comes first) ...
    for (let i = 0; !(await carried(`warm ${i}`)); i++) expect(i).toBeLessThan(50);
    // ... and from then on every sequential connection rides one.
    for (let i = 0; i < 5; i++) expect(await carried(`hello ${i}`)).toBe(true);
  }, 20_000);

  test("streams come back after their connections: one after another, not one stream is opened", async () => {
    expect(tunnel.shadow?.reuse).toBe(true);
    const before = loopback.opened.reverse;
    const logged = shadow.count(new RegExp(`reverse\\.open port=${remotePort} `));
    let last = 0;
    for (let i = 0; i < 10; i++) {
      const client = await connectTcp(remotePort);
      last = client.localPort!;
      expect((await exchange(client, `x${i}`)).toString()).toBe(`x${i}`);
    }
    expect(loopback.opened.reverse).toBe(before);
    // Every one of them rode a reverse stream (SSH channels are not logged as reverse.open).
    await shadow.waitFor(new RegExp(`reverse\\.open port=${remotePort} from=127\\.0\\.0\\.1:${last}$`));
    expect(shadow.count(new RegExp(`reverse\\.open port=${remotePort} `))).toBe(logged + 10);
  });

  test("a client's FIN after the server's end waits for the stream's next connection, or LATE_EOF_HOLD_MS at most", async () => {
    const port = await freePort();
    const requests: { text: string; at: number }[] = [];
    const ends: number[] = [];
    const endWaiters = new Set<() => void>();
    const ended = (count: number) =>
      new Promise<void>((resolve) => {
        const check = () => ends.length >= count && (endWaiters.delete(check), resolve());
        endWaiters.add(check);
        check();
      });
    const server = await localServer((socket) => {
      socket.on("error", () => {});
      socket.once("data", (request: Buffer) => {
        requests.push({ text: request.toString(), at: performance.now() });
        socket.end(`answer to ${request}`); // the server's side ends first
      });
      socket.once("end", () => {
        ends.push(performance.now());
        for (const check of [...endWaiters]) check();
      });
    });
    await tunnel.addRemoteListener(port, "127.0.0.1", server.port);
    // Streams wait at the shadow (a connection before that rides SSH, which has no late EOF).
    for (let i = 0; !(await ridesReverseStream(shadow, remotePort, `warm ${i}`)); i++) expect(i).toBeLessThan(50);
    const ask = async (text: string) => {
      const client = await connectTcp(port);
      client.write(text);
      expect((await readAll(client)).toString()).toBe(`answer to ${text}`);
      return client;
    };
    // No connection follows: the EOF leaves alone, once the hold is over.
    const alone = await ask("alone");
    const closedAt = performance.now();
    alone.end();
    await ended(1);
    expect(ends[0]! - closedAt).toBeGreaterThanOrEqual(LATE_EOF_HOLD_MS - 1);
    // The next connection comes at once: the EOF leaves with it, in front of its request.
    const first = await ask("first");
    first.end();
    const next = await ask("next");
    next.end();
    await ended(3);
    const nextArrived = requests.find((r) => r.text === "next")!.at;
    expect(ends[1]!).toBeLessThanOrEqual(nextArrived);
    expect(ends[1]! - requests.find((r) => r.text === "first")!.at).toBeLessThan(1_000);
    await tunnel.removeRemoteListener(port);
    await server.close();
  });

  test("one connection, request after request: each answer arrives while the connection stays open", async () => {
    // The first answer of a reverse stream waits a moment for a FIN that may follow it; none comes
    // here, and neither that answer nor the later ones may wait for one.
    const port = await freePort();
    const server = await localServer((socket) =>
      socket.on("data", (request: Buffer) => socket.write(`answer to ${request}`)).once("end", () => socket.end()),
    );
    await tunnel.addRemoteListener(port, "127.0.0.1", server.port);
    const client = await connectTcp(port);
    const answers: string[] = [];
    for (let i = 0; i < 5; i++) {
      const answered = new Promise<string>((resolve) => client.once("data", (chunk: Buffer) => resolve(chunk.toString())));
      client.write(`request ${i}`);
      answers.push(await answered);
    }
    expect(answers).toEqual([0, 1, 2, 3, 4].map((i) => `answer to request ${i}`));
    client.end();
    await readAll(client);
    await tunnel.removeRemoteListener(port);
    await server.close();
  });

  test("a server that speaks first: its greeting reaches a client that sends nothing", async () => {
    const greeter = await localServer((socket) => socket.end("220 hello\r\n"));
    const port = await freePort();
    await tunnel.addRemoteListener(port, "127.0.0.1", greeter.port);
    const client = await connectTcp(port);
    expect((await readAll(client)).toString()).toBe("220 hello\r\n");
    client.end(); // half-open until then: the greeter could not close
    await shadow.waitFor(new RegExp(`reverse\\.open port=${port} `));
    await tunnel.removeRemoteListener(port);
    await greeter.close();
  });

  test("4 MiB each way intact; half-close: the answer after the client's FIN", async () => {
    const payload = randomBytes(4 * 1024 * 1024);
    const answer = await exchange(await connectTcp(remotePort), payload);
    expect(sha256(answer)).toBe(sha256(payload));
  }, 20_000);

  test("100 connections at once, all intact (the pool grows; SSH takes what it cannot)", async () => {
    const answers = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => (await exchange(await connectTcp(remotePort), `c${i}-${"z".repeat(20_000)}`)).toString()),
    );
    answers.forEach((answer, i) => expect(answer).toBe(`c${i}-${"z".repeat(20_000)}`));
  }, 20_000);

  test("a local port that refuses: the cluster client gets a clean FIN, and the refusal is said once", async () => {
    const dead = await freePort();
    const port = await freePort();
    await tunnel.addRemoteListener(port, "127.0.0.1", dead);
    const before = shadow.count(/reverse\.open /);
    for (let i = 0; i < 3; i++) {
      const client = await connectTcp(port);
      client.write("anyone?");
      expect((await readAll(client)).length).toBe(0);
    }
    expect(shadow.count(/reverse\.open /)).toBeGreaterThan(before);
    expect(log.messages.filter(({ message }) => message.includes(`127.0.0.1:${dead} refused a connection`)).length).toBe(1);
    await tunnel.removeRemoteListener(port);
  });

  test("a stranger at the reverse port (wrong token) is cut off without a word", async () => {
    const socket = await connectTcp(reversePort!);
    socket.write(encodeReversePreamble({ token: Buffer.alloc(32, 7), window: 1024 }));
    expect((await readAll(socket)).length).toBe(0);
    await shadow.waitFor(/reverse\.refused error="wrong token"/);
  });

  test("a cut link: the next link gets a new pool and connections ride it again", async () => {
    const from = states.seen.length;
    currentLink!.destroy();
    await states.waitFor("connected", from, 10_000);
    // The new pool's streams reach the shadow moments after the link is up; SSH carries what comes first.
    const before = shadow.count(/reverse\.open /);
    for (let i = 0; shadow.count(/reverse\.open /) === before; i++) {
      expect(i).toBeLessThan(200);
      expect((await exchange(await connectTcp(remotePort), `again ${i}`)).toString()).toBe(`again ${i}`);
    }
    // The first link's tally, said when it went.
    expect(log.messages.some(({ message }) => /the link carried \d+ connections from the cluster: \d+ on reverse streams, \d+ over SSH/.test(message))).toBe(true);
  }, 20_000);

  test("stopped while a live host listens through it, the shadow refuses at once and lingers before it exits", async () => {
    const signalled = performance.now();
    shadow.process.kill("SIGTERM");
    // Refused, not left unanswered: connections that still come fail fast while kube-proxy catches up.
    for (;;) {
      const error = await connectTcp(remotePort).then(
        (socket) => void socket.destroy(),
        (error: NodeJS.ErrnoException) => error,
      );
      if (error?.code === "ECONNREFUSED") break;
    }
    expect(shadow.process.exitCode).toBeNull();
    expect(await shadow.process.exited).toBe(0);
    expect(performance.now() - signalled).toBeGreaterThanOrEqual(ENDPOINT_LINGER_MS - 50);
  }, 20_000);
});

/** A shadow and a tunnel of a test's own, with `options` (reuse, reverse off), closed after `body`. */
async function withOwnTunnel(
  options: { reuse?: boolean; reverse?: boolean },
  body: (own: { tunnel: SshTunnel; shadow: ShadowProcess; loopback: ReturnType<typeof loopbackSiblings> }) => Promise<void>,
): Promise<void> {
  const keys = createSessionKeyPair("ktctl-test");
  const shadow = await ShadowProcess.start(keys.publicKey);
  const reversePort = Number((await shadow.waitFor(/tunnel\.ready .*reverse=(\d+)/))[1]);
  const loopback = loopbackSiblings(() => reversePort);
  const tunnel = await createTunnel({
    connect: async () => net.connect(shadow.port, "127.0.0.1"),
    privateKey: keys.privateKey,
    logger: memoryLogger().logger,
    ...options,
    siblingsOf: () => loopback.siblings,
  });
  try {
    await body({ tunnel, shadow, loopback });
  } finally {
    await tunnel.close();
    await shadow.stop();
  }
}

test("without reuse, each reverse stream taken is replaced", async () => {
  const echo = await echoServer();
  try {
    await withOwnTunnel({ reuse: false }, async ({ tunnel, shadow, loopback }) => {
      expect(tunnel.shadow?.reuse).toBe(false);
      const port = await freePort();
      await tunnel.addRemoteListener(port, "127.0.0.1", echo.port);
      await loopback.reached(REVERSE_POOL_SIZE.base);
      const before = loopback.opened.reverse;
      // Opened is not yet waiting at the shadow: on a busy machine the first connections may still
      // ride SSH, and take no stream. Three that rode one (the shadow logs each) are counted.
      let taken = 0;
      for (let i = 0; taken < 3; i++) {
        expect(i).toBeLessThan(50);
        if (await ridesReverseStream(shadow, port, "x")) taken++;
      }
      // Replacements follow the end of the connections that took them (the host's end closes last).
      await loopback.reached(before + taken);
    });
  } finally {
    await echo.close();
  }
}, 20_000);

test("with reverse streams off, remote listeners deliver over SSH", async () => {
  const laptop: LocalServer = await localServer((socket) => socket.end("from the laptop"));
  try {
    await withOwnTunnel({ reverse: false }, async ({ tunnel, shadow, loopback }) => {
      expect(tunnel.shadow?.reverse).toBe(false);
      expect(tunnel.shadow?.direct).toBe(true);
      const port = await freePort();
      await tunnel.addRemoteListener(port, "127.0.0.1", laptop.port);
      expect((await readAll(await connectTcp(port))).toString()).toBe("from the laptop");
      expect(loopback.opened.reverse).toBe(0);
      expect(shadow.count(/reverse\.open /)).toBe(0);
    });
  } finally {
    await laptop.close();
  }
}, 20_000);
