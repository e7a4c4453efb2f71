// The router's HTTP/1.1 framing over real sockets: heads and bodies split anywhere across reads,
// pipelined requests of every framing on one connection, chunked answers that leave the pooled
// upstream connection reusable, and the refusals (431 for an oversize head, 400 / 505 for bad
// ones) that reach nobody upstream.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import net from "node:net";
import { validateRouterConfig } from "../../core/protocol/router.ts";
import { Router } from "../../shadow/router/router.ts";
import { MAX_HEAD_BYTES } from "../../shadow/router/http1.ts";
import { startProtocolServer, type ProtocolServer } from "../e2e/fixtures/protocol-server.ts";
import { RawClient, freePort, get, localServer, memoryLog, podOf } from "./router-harness.ts";

/** Lets the event loop turn, so that what was written so far leaves as its own segment. */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** An upstream that answers every request with a chunked body sent in pieces, and counts its connections. */
async function chunkedAnswerServer(): Promise<{ port: number; connections(): number; close(): Promise<void> }> {
  let connections = 0;
  const server = await localServer((socket) => {
    connections++;
    socket.setNoDelay(true);
    let buffered = "";
    socket.on("data", async (chunk) => {
      buffered += chunk.toString("latin1");
      while (buffered.includes("\r\n\r\n")) {
        const end = buffered.indexOf("\r\n\r\n") + 4;
        const path = buffered.slice(0, end).split(" ")[1];
        buffered = buffered.slice(end);
        socket.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Answered: chunked\r\n\r\n");
        for (const piece of ["6;ext=1\r\nchunk-\r", `\n${(path!.length + 1).toString(16)}\r\n${path}!\r\n`, "0\r\nX-Trailer: t\r\n", "\r\n"]) {
          socket.write(piece);
          await nextTurn();
        }
      }
    });
  });
  return { ...server, connections: () => connections };
}

const BIG = 8 * 1024 * 1024;

/**
 * An upstream for back-pressure: GET answers BIG bytes in one write; POST reads a Content-Length
 * body and answers with the byte count and the SHA-256 of what it got.
 */
async function bulkServer(): Promise<{ port: number; close(): Promise<void> }> {
  const payload = Buffer.alloc(BIG, "abcdefghijklmnopqrstuvwxyz");
  return localServer((socket) => {
    let buffered = Buffer.alloc(0);
    let expecting = -1;
    let received = 0;
    let sum = createHash("sha256");
    socket.on("data", (chunk: Buffer) => {
      if (expecting < 0) {
        buffered = Buffer.concat([buffered, chunk]);
        const end = buffered.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buffered.toString("latin1", 0, end);
        chunk = buffered.subarray(end + 4);
        buffered = Buffer.alloc(0);
        if (head.startsWith("GET")) {
          socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${BIG}\r\n\r\n`);
          socket.write(payload);
          return;
        }
        expecting = Number(/content-length: (\d+)/i.exec(head)![1]);
      }
      sum.update(chunk);
      received += chunk.length;
      if (received === expecting) {
        const body = `${received} ${sum.digest("hex")}`;
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
        expecting = -1;
        received = 0;
        sum = createHash("sha256");
      }
    });
  });
}

/** Reads a connection until the peer closes it; resolves with everything it sent. */
function readToClose(socket: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = "";
    socket.on("data", (chunk: Buffer) => (text += chunk.toString("latin1")));
    socket.on("error", () => undefined);
    socket.once("close", () => resolve(text));
  });
}

describe("router HTTP/1.1 framing on the wire", () => {
  let original: ProtocolServer;
  let dev: ProtocolServer;
  let chunky: Awaited<ReturnType<typeof chunkedAnswerServer>>;
  let bulk: Awaited<ReturnType<typeof bulkServer>>;
  let bulkPort: number;
  let router: Router;
  let httpPort: number;
  let chunkyPort: number;

  beforeAll(async () => {
    [original, dev, chunky, bulk] = await Promise.all([
      startProtocolServer({ name: "original" }),
      startProtocolServer({ name: "dev" }),
      chunkedAnswerServer(),
      bulkServer(),
    ]);
    [httpPort, chunkyPort, bulkPort] = [await freePort(), await freePort(), await freePort()];
    const config = validateRouterConfig({
      listeners: [
        { port: httpPort, fallback: { host: "127.0.0.1", port: original.port }, protocol: "http" },
        { port: chunkyPort, fallback: { host: "127.0.0.1", port: chunky.port }, protocol: "http" },
        { port: bulkPort, fallback: { host: "127.0.0.1", port: bulk.port }, protocol: "http" },
      ],
      adminPort: await freePort(),
    });
    router = new Router(config, memoryLog(), { host: "127.0.0.1" });
    await router.start();
    router.routes.put({ id: "dev", header: "version", value: "d", upstreams: { [String(httpPort)]: { host: "127.0.0.1", port: dev.port } } });
  });

  afterAll(async () => {
    router?.stop();
    await Promise.all([original?.close(), dev?.close(), chunky?.close(), bulk?.close()]);
  });

  test("back-pressure both ways: an 8 MiB answer to a client that stops reading, an 8 MiB upload", async () => {
    const socket = net.connect(bulkPort, "127.0.0.1");
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    socket.pause();
    socket.write(get("/big"));
    // The client reads nothing for a while: the router has to hold the upstream back meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const answer = await new Promise<{ head: string; bodyBytes: number; first: string }>((resolve) => {
      // The head and the body's first bytes come in the first reads; after that only the count matters.
      let start = Buffer.alloc(0);
      let total = 0;
      const onData = (chunk: Buffer) => {
        if (start.length < 4096) start = Buffer.concat([start, chunk]);
        total += chunk.length;
        const end = start.indexOf("\r\n\r\n");
        if (end >= 0 && total - end - 4 === BIG) {
          socket.off("data", onData);
          resolve({ head: start.toString("latin1", 0, end), bodyBytes: total - end - 4, first: start.toString("latin1", end + 4, end + 30) });
        }
      };
      socket.on("data", onData);
      socket.resume();
    });
    expect(answer.head).toStartWith("HTTP/1.1 200 ");
    expect(answer.bodyBytes).toBe(BIG);
    expect(answer.first).toBe("abcdefghijklmnopqrstuvwxyz");

    const client = await RawClient.connect(bulkPort);
    const upload = Buffer.alloc(BIG, "0123456789");
    const sum = createHash("sha256").update(upload).digest("hex");
    client.send(`POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: ${BIG}\r\n\r\n`);
    client.send(upload);
    expect((await client.next()).body).toBe(`${BIG} ${sum}`);
    client.close();
    socket.destroy();
  }, 30_000);

  test("a head split at every byte is routed on its whole head (the mark may arrive last)", async () => {
    const head = get("/split", { VERSION: "d" });
    const client = await RawClient.connect(httpPort);
    for (const at of [1, 4, head.indexOf("VERS") + 2, head.indexOf(": d") + 2, head.length - 3, head.length - 1]) {
      client.send(head.slice(0, at));
      await nextTurn();
      client.send(head.slice(at));
      const answer = await client.next();
      expect(podOf(answer)).toBe("dev");
    }
    // One byte per write, the whole head.
    for (const c of head) {
      client.send(c);
      await nextTurn();
    }
    expect(podOf(await client.next())).toBe("dev");
    client.close();
  });

  test("pipelined requests of every framing on one connection, each answered in order by its own upstream", async () => {
    const client = await RawClient.connect(httpPort);
    client.send(
      "POST /1 HTTP/1.1\r\nHost: x\r\nVERSION: d\r\nContent-Length: 5\r\n\r\nfirst" +
        get("/2") +
        "POST /3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nthi\r\n2;x=y\r\nrd\r\n0\r\nTrailer-A: 1\r\n\r\n" +
        "POST /4 HTTP/1.1\r\nHost: x\r\nVERSION: d\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfourth\r\n0\r\n\r\n" +
        "POST /5 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(JSON.parse((await client.next()).body));
    expect(answers.map((a) => [a.pod, a.path, a.message ?? ""])).toEqual([
      ["dev", "/1", "first"],
      ["original", "/2", ""],
      ["original", "/3", "third"],
      ["dev", "/4", "fourth"],
      ["original", "/5", ""],
    ]);
    client.close();
  });

  test("a chunked request body split inside its size lines, data and trailers reaches the upstream whole", async () => {
    const client = await RawClient.connect(httpPort);
    const body = "5\r\nhello\r\n7;name=value\r\n, world\r\n0\r\nTrailer-B: x\r\n\r\n";
    client.send("POST /chunks HTTP/1.1\r\nHost: x\r\nVERSION: d\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (let at = 0; at < body.length; at += 3) {
      client.send(body.slice(at, at + 3));
      await nextTurn();
    }
    expect(JSON.parse((await client.next()).body)).toMatchObject({ pod: "dev", message: "hello, world" });
    // The connection goes on: the body's end was found exactly.
    expect(podOf(await client.request(get("/after")))).toBe("original");
    client.close();
  });

  test("chunked answers sent in pieces end where they end: the next request reuses the upstream connection", async () => {
    const before = chunky.connections();
    const client = await RawClient.connect(chunkyPort);
    for (const path of ["/a", "/bb", "/ccc"]) {
      client.send(get(path));
      const text = await new Promise<string>((resolve) => {
        let seen = "";
        const onData = (chunk: Buffer) => {
          seen += chunk.toString("latin1");
          if (seen.endsWith("0\r\nX-Trailer: t\r\n\r\n")) {
            client.socket.off("data", onData);
            resolve(seen);
          }
        };
        client.socket.on("data", onData);
      });
      expect(text).toContain(`chunk-\r\n${(path.length + 1).toString(16)}\r\n${path}!\r\n`);
    }
    client.close();
    expect(chunky.connections() - before).toBe(1);
  });

  test("a head larger than the limit is refused with 431 and never forwarded", async () => {
    const before = original.requests().http1 ?? 0;
    const socket = net.connect(httpPort, "127.0.0.1");
    const answer = readToClose(socket);
    socket.write(`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(MAX_HEAD_BYTES)}`);
    const text = await answer;
    expect(text.startsWith("HTTP/1.1 431 ")).toBe(true);
    expect(original.requests().http1 ?? 0).toBe(before);
  });

  test("bad heads are refused with 400 (505 for another version), the connection closed, nothing forwarded", async () => {
    const before = (original.requests().http1 ?? 0) + (dev.requests().http1 ?? 0);
    const bad: [string, number][] = [
      ["GET / HTTP/1.1\r\nHost: x\r\nVERSION: d\nX: y\r\n\r\n", 400], // bare LF inside a line
      ["GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400],
      ["GET / HTTP/1.1\r\nNo-Colon\r\n\r\n", 400],
      ["GET / HTTP/1.1\r\n folded: x\r\n\r\n", 400],
      ["G(T / HTTP/1.1\r\n\r\n", 400],
      ["GET /a b HTTP/1.1\r\n\r\n", 400],
      ["GET / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n", 400],
      ["POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400],
      ["GET / HTTP/3.0\r\n\r\n", 505],
    ];
    for (const [head, status] of bad) {
      const socket = net.connect(httpPort, "127.0.0.1");
      const answer = readToClose(socket);
      socket.write(head);
      const text = await answer;
      expect(text.split("\r\n")[0]).toStartWith(`HTTP/1.1 ${status} `);
    }
    // A bad request after a good one on the same connection: the good one is answered, then the refusal.
    const client = await RawClient.connect(httpPort);
    client.send(get("/good") + "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n");
    expect(podOf(await client.next())).toBe("original");
    expect((await client.next()).status).toBe(400);
    await client.closed;
    expect((original.requests().http1 ?? 0) + (dev.requests().http1 ?? 0)).toBe(before + 1);
  });
});
