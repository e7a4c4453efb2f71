// The router's h2c relay on real sockets: node:http2 clients, the protocol servers of the e2e
// fixtures as the original pods and the developers, the router in-process. What these pin down is
// what a frame relay can get wrong and a terminating proxy cannot: HPACK tables on both sides after
// streams were taken out, flow control when the router's own answers share the client's connection
// window, stream ids after a developer could not be reached, resets, and one connection to the pods
// per client connection.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import http2 from "node:http2";
import net from "node:net";
import { HpackDecoder, encodeHeaderBlock } from "../../core/protocol/hpack.ts";
import { validateRouterConfig, type Route } from "../../core/protocol/router.ts";
import {
  FRAME_HEADER_BYTES,
  Flag,
  FrameCutter,
  FrameType,
  Setting,
  dataFrame,
  frameHeader,
  headersFragment,
  headersFrames,
  rstStreamFrame,
  windowUpdateFrame,
} from "../../shadow/router/h2-frames.ts";
import { Router } from "../../shadow/router/router.ts";
import { H2_PREFACE as CLIENT_PREFACE } from "../../shadow/router/sniff.ts";
import { startProtocolServer, type Answer, type ProtocolServer } from "../e2e/fixtures/protocol-server.ts";
import { eventually } from "../e2e/harness.ts";
import { freePort, grpcFrame, h2Call, memoryLog } from "./router-harness.ts";

describe("h2c relay", () => {
  let original: ProtocolServer;
  let devA: ProtocolServer;
  let devB: ProtocolServer;
  let router: Router;
  let port: number;
  let orphanPort: number;
  let slowPort: number;
  /** In front of the original pods, holding back their first bytes (the server's preface) for a while. */
  let slowStart: net.Server;
  const log = memoryLog();
  const sessions: http2.ClientHttp2Session[] = [];

  /** A developer's route, on both listeners. */
  const route = (id: string, value: string, upstreamPort: number): Route => {
    const upstream = { host: "127.0.0.1", port: upstreamPort };
    return { id, header: "version", value, upstreams: { [String(port)]: upstream, [String(orphanPort)]: upstream, [String(slowPort)]: upstream } };
  };
  const connect = (to = port) => {
    const session = http2.connect(`http://127.0.0.1:${to}`);
    session.on("error", () => undefined);
    sessions.push(session);
    return session;
  };
  const answerOf = (body: Buffer) => JSON.parse(body.toString()) as Answer;

  beforeAll(async () => {
    [original, devA, devB] = await Promise.all([
      startProtocolServer({ name: "original" }),
      startProtocolServer({ name: "dev-a" }),
      startProtocolServer({ name: "dev-b" }),
    ]);
    [port, orphanPort, slowPort] = [await freePort(), await freePort(), await freePort()];
    slowStart = net.createServer((client) => {
      const pods = net.connect(original.port, "127.0.0.1");
      client.pipe(pods);
      pods.once("readable", () => setTimeout(() => pods.pipe(client), 300));
      for (const socket of [client, pods]) socket.on("error", () => (client.destroy(), pods.destroy()));
    });
    await new Promise<void>((resolve) => slowStart.listen(0, "127.0.0.1", () => resolve()));
    const config = validateRouterConfig({
      listeners: [
        { port, fallback: { host: "127.0.0.1", port: original.port }, name: "http" },
        // Original pods that cannot be reached (nothing listens there).
        { port: orphanPort, fallback: { host: "127.0.0.1", port: await freePort() }, name: "http" },
        { port: slowPort, fallback: { host: "127.0.0.1", port: (slowStart.address() as net.AddressInfo).port }, name: "http" },
      ],
      adminPort: await freePort(),
      sniffTimeoutMs: 150,
    });
    router = new Router(config, log, { host: "127.0.0.1", healthDownMs: 60_000 });
    await router.start();
    for (const each of [route("alice", "a", devA.port), route("bob", "b", devB.port)]) expect(router.routes.put(each).conflict).toBeUndefined();
  });

  afterAll(async () => {
    for (const session of sessions) session.destroy();
    router?.stop();
    slowStart?.close();
    await Promise.all([original?.close(), devA?.close(), devB?.close()]);
  });

  test("marked and unmarked streams interleaved on one connection keep both HPACK tables right", async () => {
    // node:http2 indexes these fields, so later blocks refer to table entries that blocks taken out
    // for a developer put there: the pods only decode them right if the relay encodes them again.
    const session = connect();
    const marks = ["", "a", "", "", "b", "a", "", "b", "", "a"];
    for (let round = 0; round < 3; round++) {
      const answers = await Promise.all(
        marks.map((mark, i) =>
          h2Call(session, {
            ":path": `/r${round}/s${i}`,
            "x-trace": `trace-${i % 3}`,
            "x-round": `round-${round}`,
            ...(mark ? { version: mark } : {}),
          }).then((r) => ({ mark, i, status: r.headers[":status"], answer: answerOf(r.body) })),
        ),
      );
      for (const { mark, i, status, answer } of answers) {
        expect(Number(status)).toBe(200);
        expect(answer.pod).toBe(mark === "a" ? "dev-a" : mark === "b" ? "dev-b" : "original");
        expect(answer.path).toBe(`/r${round}/s${i}`);
        expect(answer.headers?.["x-trace"]).toEqual([`trace-${i % 3}`]);
        expect(answer.headers?.["x-round"]).toEqual([`round-${round}`]);
      }
    }
  });

  test("bodies larger than every window, both ways, while the router's answers share the client's connection window", async () => {
    const session = connect();
    const body = (tag: string) => Buffer.from(`${tag}:`.padEnd(1_500_000, tag.slice(-1)));
    const calls = ["", "a", "", "b", "a", ""].map((mark, i) =>
      h2Call(session, { ":method": "POST", ":path": `/big/${i}`, ...(mark ? { version: mark } : {}) }, body(`body-${i}`)).then((r) => ({
        mark,
        i,
        answer: answerOf(r.body),
      })),
    );
    for (const { mark, i, answer } of await Promise.all(calls)) {
      expect(answer.pod).toBe(mark === "a" ? "dev-a" : mark === "b" ? "dev-b" : "original");
      expect(answer.message?.length).toBe(1_500_000);
      expect(answer.message).toBe(body(`body-${i}`).toString());
    }
    // The connection is still good for more, both ways.
    expect(answerOf((await h2Call(session, { ":path": "/after" })).body).pod).toBe("original");
    expect(answerOf((await h2Call(session, { ":path": "/after", version: "a" })).body).pod).toBe("dev-a");
  });

  test("header blocks larger than a frame (HEADERS and CONTINUATION) route and pass both ways", async () => {
    const session = connect();
    const big = "v".repeat(40_000);
    // An unmarked one first, passed on as the client framed it; then, after a take-out, encoded again.
    for (const mark of ["", "a", ""]) {
      const answer = answerOf((await h2Call(session, { ":path": `/big-header/${mark}`, "x-big": big, ...(mark ? { version: mark } : {}) })).body);
      expect(answer.pod).toBe(mark ? "dev-a" : "original");
      expect(answer.headers?.["x-big"]).toEqual([big]);
    }
  });

  test("gRPC calls: trailers from the pods pass untouched, a developer's are written by the router", async () => {
    const session = connect();
    const call = (metadata: Record<string, string>) =>
      h2Call(
        session,
        { ":method": "POST", ":path": "/grpc.health.v1.Health/Check", "content-type": "application/grpc", te: "trailers", ...metadata },
        grpcFrame(Buffer.alloc(0)),
      );
    const [plain, marked, unknown] = await Promise.all([
      call({}),
      call({ version: "b" }),
      h2Call(session, { ":method": "POST", ":path": "/nope.Service/Call", "content-type": "application/grpc", version: "a" }, grpcFrame(Buffer.alloc(0))),
    ]);
    expect(plain.headers["x-pod"]).toBe("original");
    expect(plain.trailers?.["grpc-status"]).toBe("0");
    expect(marked.headers["x-pod"]).toBe("dev-b");
    expect(marked.trailers?.["grpc-status"]).toBe("0");
    // A trailers-only answer (headers with END_STREAM) from a developer.
    expect(unknown.headers["x-pod"]).toBe("dev-a");
    expect(unknown.headers["grpc-status"]).toBe("12");
  });

  test("a developer that cannot be reached: its stream and every later one reach the right server", async () => {
    const deadPort = await freePort();
    expect(router.routes.put(route("carol", "c", deadPort)).conflict).toBeUndefined();
    try {
      const session = connect();
      // A stream before it goes to the pods under the client's own id.
      expect(answerOf((await h2Call(session, { ":path": "/before" })).body).pod).toBe("original");
      // The dead developer's stream goes to the pods under a new id, with its body...
      const fallen = await h2Call(session, { ":method": "POST", ":path": "/fallen", version: "c" }, "carol's body");
      expect(answerOf(fallen.body)).toMatchObject({ pod: "original", path: "/fallen", message: "carol's body" });
      // ...and so does every later stream of the connection, while marked ones still leave it.
      const later = await Promise.all(
        ["", "a", "", "c", "b", ""].map((mark, i) =>
          h2Call(session, { ":method": "POST", ":path": `/later/${i}`, ...(mark ? { version: mark } : {}) }, `later ${i}`).then((r) => ({ mark, i, answer: answerOf(r.body) })),
        ),
      );
      for (const { mark, i, answer } of later) {
        expect(answer.pod).toBe(mark === "a" ? "dev-a" : mark === "b" ? "dev-b" : "original");
        expect(answer.message).toBe(`later ${i}`);
      }
      expect(log.lines.some((line) => line.includes("route.fallback") && line.includes(String(deadPort)))).toBe(true);
    } finally {
      router.routes.delete("carol");
    }
  });

  test("a client that resets a marked stream mid-request leaves the connection working", async () => {
    const session = connect();
    const stream = session.request({ ":method": "POST", ":path": "/reset", version: "a" });
    stream.on("error", () => undefined);
    stream.write(Buffer.alloc(200_000, 1));
    await new Promise((resolve) => setTimeout(resolve, 20));
    stream.close(http2.constants.NGHTTP2_CANCEL);
    await new Promise<void>((resolve) => stream.once("close", () => resolve()));
    const [plain, marked] = await Promise.all([h2Call(session, { ":path": "/next" }), h2Call(session, { ":path": "/next", version: "a" })]);
    expect(answerOf(plain.body).pod).toBe("original");
    expect(answerOf(marked.body).pod).toBe("dev-a");
  });

  test("each client connection has a connection of its own to the pods, as it would going straight there", async () => {
    const before = original.connections();
    const three = [connect(), connect(), connect()];
    await Promise.all(three.map((session) => Promise.all([h2Call(session, { ":path": "/one" }), h2Call(session, { ":path": "/two" })])));
    expect(original.connections() - before).toBe(3);
    for (const session of three) session.close();
  });

  test("nothing of the router's reaches the client before the pods' SETTINGS, however late they are", async () => {
    // The developer's session is made first, so that the next connection's marked upload is taken
    // at once and credited (WINDOW_UPDATE) while the pods have not said a word yet.
    expect(answerOf((await h2Call(connect(slowPort), { ":path": "/warm", version: "a" })).body).pod).toBe("dev-a");
    // A client of raw frames, to see which frame comes first.
    const socket = net.connect(slowPort, "127.0.0.1");
    socket.on("error", () => undefined);
    const block = encodeHeaderBlock([
      [":method", "POST"],
      [":scheme", "http"],
      [":path", "/early"],
      [":authority", "router"],
      ["version", "a"],
    ]);
    socket.write(
      Buffer.concat([
        CLIENT_PREFACE,
        frameHeader(0, FrameType.SETTINGS, 0, 0),
        headersFrames(1, block, false),
        dataFrame(1, Buffer.alloc(60_000, 0x78), true),
      ]),
    );
    const types: number[] = [];
    const cutter = new FrameCutter();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer; frames seen: ${types.join(",")}`)), 5_000);
      socket.on("data", (chunk: Buffer) =>
        cutter.push(chunk, (_buffer, _at, _end, type, flags, streamId) => {
          types.push(type);
          if (streamId === 1 && flags & Flag.END_STREAM) {
            clearTimeout(timer);
            resolve();
          }
        }),
      );
    });
    socket.destroy();
    expect(types[0]).toBe(FrameType.SETTINGS);
    expect(types).toContain(FrameType.WINDOW_UPDATE);
  });

  test("original pods that cannot be reached: marked streams still reach their developer, the rest are told UNAVAILABLE", async () => {
    const session = connect(orphanPort);
    const [marked, plain] = await Promise.all([
      h2Call(session, { ":path": "/orphan", version: "a" }),
      h2Call(session, { ":method": "POST", ":path": "/grpc.health.v1.Health/Check", "content-type": "application/grpc" }, grpcFrame(Buffer.alloc(0))),
    ]);
    expect(answerOf(marked.body).pod).toBe("dev-a");
    expect(Number(plain.headers[":status"])).toBe(502);
    expect(plain.headers["grpc-status"]).toBe("14");
  });
});

// Frames as a client or a pods' server may send them, written by hand: what node:http2 never sends.
describe("h2c relay, raw frames", () => {
  let router: Router;
  let port: number;
  let pods: net.Server;
  /** Every DATA payload the raw pods received. */
  const podsSaw: string[] = [];
  const sockets: net.Socket[] = [];
  const request = (id: number, path: string, mark?: string, endStream = true) =>
    headersFrames(id, encodeHeaderBlock([[":method", "GET"], [":scheme", "http"], [":path", path], [":authority", "x"], ...(mark ? [["version", mark] as [string, string]] : [])]), endStream);

  /** A client of raw frames: every frame it reads, as (type, flags, stream, payload). */
  const rawClient = (to: number) => {
    const socket = net.connect(to, "127.0.0.1");
    socket.on("error", () => undefined);
    sockets.push(socket);
    const frames: { type: number; flags: number; id: number; payload: Buffer }[] = [];
    const cutter = new FrameCutter();
    const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    socket.on("data", (chunk: Buffer) =>
      cutter.push(chunk, (buffer, at, end, type, flags, id) => frames.push({ type, flags, id, payload: Buffer.from(buffer.subarray(at + FRAME_HEADER_BYTES, end)) })),
    );
    const until = (done: () => boolean, what: string) =>
      eventually(async () => {
        if (!done()) throw new Error(`waited 5 s for ${what}; frames: ${frames.map((f) => `${f.type}@${f.id}`).join(" ")}`);
      }, 5_000, 10);
    return { socket, frames, closed, until };
  };

  beforeAll(async () => {
    // Pods of raw frames: every request is answered with :status 200, then "up<id>#k" 8 times,
    // 40 ms apart, whatever the client does meanwhile (DATA already in flight when a reset comes).
    pods = net.createServer((socket) => {
      socket.on("error", () => undefined);
      let preface = CLIENT_PREFACE.length;
      const cutter = new FrameCutter();
      const decoder = new HpackDecoder();
      socket.write(frameHeader(0, FrameType.SETTINGS, 0, 0));
      socket.on("data", (chunk: Buffer) => {
        const skip = Math.min(preface, chunk.length);
        preface -= skip;
        cutter.push(chunk.subarray(skip), (buffer, at, end, type, flags, id) => {
          if (type === FrameType.DATA) podsSaw.push(buffer.subarray(at + FRAME_HEADER_BYTES, end).toString());
          if (type === FrameType.SETTINGS && !(flags & Flag.ACK)) return void socket.write(frameHeader(0, FrameType.SETTINGS, Flag.ACK, 0));
          if (type !== FrameType.HEADERS) return;
          const path = decoder.decode(headersFragment(buffer.subarray(at + FRAME_HEADER_BYTES, end), flags)).find(([name]) => name === ":path")?.[1];
          if (path === "/upload") {
            // An upload answered as it goes: headers, 10 kB, then credit for more of the upload.
            return void socket.write(
              Buffer.concat([headersFrames(id, encodeHeaderBlock([[":status", "200"]]), false), dataFrame(id, Buffer.alloc(10_000, 98), false), windowUpdateFrame(id, 1 << 20)]),
            );
          }
          if (path === "/goaway-all") {
            // The first GOAWAY of a graceful shutdown: every stream in flight will still be answered.
            return void socket.write(Buffer.concat([headersFrames(id, encodeHeaderBlock([[":status", "200"]]), true), goawayFrame(0x7fffffff, 0)]));
          }
          if (path === "/goaway") {
            // A pods' process about to go: this answer and GOAWAY, the connection still open.
            return void socket.write(Buffer.concat([headersFrames(id, encodeHeaderBlock([[":status", "200"]]), true), goawayFrame(id, 0)]));
          }
          if (path === "/bye") {
            // A pods' process going away: this answer, GOAWAY, and the connection closes.
            socket.write(Buffer.concat([headersFrames(id, encodeHeaderBlock([[":status", "200"]]), true), goawayFrame(id, 0)]));
            return void setTimeout(() => socket.end(), 50);
          }
          socket.write(headersFrames(id, encodeHeaderBlock([[":status", "200"]]), false));
          let k = 0;
          const timer = setInterval(() => {
            if (socket.destroyed) return clearInterval(timer);
            socket.write(dataFrame(id, Buffer.from(`up${id}#${k}`), ++k === 8));
            if (k === 8) clearInterval(timer);
          }, 40);
        });
      });
    });
    await new Promise<void>((resolve) => pods.listen(0, "127.0.0.1", () => resolve()));
    port = await freePort();
    const config = validateRouterConfig({
      listeners: [{ port, fallback: { host: "127.0.0.1", port: (pods.address() as net.AddressInfo).port }, name: "http" }],
      adminPort: await freePort(),
      sniffTimeoutMs: 150,
    });
    router = new Router(config, memoryLog(), { host: "127.0.0.1" });
    await router.start();
    router.routes.put({ id: "gone", header: "version", value: "gone", upstreams: { [String(port)]: { host: "127.0.0.1", port: await freePort() } } });
  });

  afterAll(() => {
    for (const socket of sockets) socket.destroy();
    router?.stop();
    pods?.close();
  });

  test("a reset of a renumbered stream: the pods' late frames for it never land on another stream", async () => {
    const client = rawClient(port);
    // Stream 1 is marked for a developer that is gone: it reaches the pods as 5, after stream 3.
    client.socket.write(Buffer.concat([CLIENT_PREFACE, frameHeader(0, FrameType.SETTINGS, 0, 0), windowUpdateFrame(0, 1 << 20), request(1, "/one", "gone"), request(3, "/three")]));
    await client.until(() => client.frames.some((f) => f.type === FrameType.DATA && f.id === 1), "stream 1's first answer");
    client.socket.write(request(5, "/five")); // the pods' 7
    await client.until(() => client.frames.some((f) => f.type === FrameType.DATA && f.id === 5), "stream 5's first answer");
    client.socket.write(rstStreamFrame(1, 8));
    await client.until(() => client.frames.some((f) => f.id === 5 && f.flags & Flag.END_STREAM), "stream 5's end");
    const onFive = client.frames.filter((f) => f.type === FrameType.DATA && f.id === 5).map((f) => f.payload.toString());
    expect(onFive).toEqual(["up7#0", "up7#1", "up7#2", "up7#3", "up7#4", "up7#5", "up7#6", "up7#7"]);
    expect(client.frames.filter((f) => f.type === FrameType.DATA && f.id === 1).every((f) => f.payload.toString().startsWith("up5#"))).toBe(true);
  });

  test("SETTINGS a client may not send end its connection alone; the router serves the next one", async () => {
    for (const [setting, value] of [
      [Setting.MAX_FRAME_SIZE, 0],
      [Setting.MAX_FRAME_SIZE, 1 << 24],
      [Setting.INITIAL_WINDOW_SIZE, 2 ** 31],
    ] as const) {
      const payload = Buffer.alloc(6);
      payload.writeUInt16BE(setting, 0);
      payload.writeUInt32BE(value, 2);
      const bad = rawClient(port);
      bad.socket.write(Buffer.concat([CLIENT_PREFACE, frameHeader(6, FrameType.SETTINGS, 0, 0), payload, request(1, "/bad", "gone")]));
      await bad.closed;
    }
    const good = rawClient(port);
    good.socket.write(Buffer.concat([CLIENT_PREFACE, frameHeader(0, FrameType.SETTINGS, 0, 0), request(1, "/good")]));
    await good.until(() => good.frames.some((f) => f.id === 1 && f.flags & Flag.END_STREAM), "an answer");
  });

  test("the pods going away (GOAWAY, close): what was on its way reaches the client, then its connection ends, as a direct one would", async () => {
    const client = rawClient(port);
    client.socket.write(Buffer.concat([CLIENT_PREFACE, frameHeader(0, FrameType.SETTINGS, 0, 0), request(1, "/bye")]));
    await client.closed;
    expect(client.frames.some((f) => f.type === FrameType.HEADERS && f.id === 1 && f.flags & Flag.END_STREAM)).toBe(true);
    expect(client.frames.find((f) => f.type === FrameType.GOAWAY)!.payload.readUInt32BE(0)).toBe(1);
    const next = rawClient(port);
    next.socket.write(Buffer.concat([CLIENT_PREFACE, frameHeader(0, FrameType.SETTINGS, 0, 0), request(1, "/next")]));
    await next.until(() => next.frames.some((f) => f.id === 1 && f.flags & Flag.END_STREAM), "the next connection's answer");
  });

  test("past the pods' GOAWAY a marked stream is refused, not run by its developer: the client may send it again", async () => {
    let developerCalls = 0;
    const developer = http2.createServer();
    developer.on("stream", (stream) => {
      developerCalls++;
      stream.respond({ ":status": 200 });
      stream.end();
    });
    await new Promise<void>((resolve) => developer.listen(0, "127.0.0.1", () => resolve()));
    router.routes.put({ id: "late", header: "version", value: "late", upstreams: { [String(port)]: { host: "127.0.0.1", port: (developer.address() as net.AddressInfo).port } } });
    try {
      const client = rawClient(port);
      client.socket.write(Buffer.concat([CLIENT_PREFACE, frameHeader(0, FrameType.SETTINGS, 0, 0), request(1, "/goaway")]));
      await client.until(() => client.frames.some((f) => f.type === FrameType.GOAWAY), "the pods' GOAWAY");
      client.socket.write(request(3, "/late", "late"));
      await client.until(() => client.frames.some((f) => f.type === FrameType.RST_STREAM && f.id === 3), "stream 3's refusal");
      expect(client.frames.find((f) => f.type === FrameType.RST_STREAM && f.id === 3)!.payload.readUInt32BE(0)).toBe(http2.constants.NGHTTP2_REFUSED_STREAM);
      expect(developerCalls).toBe(0);
      // What the client sends on the refused stream afterwards never reaches the pods.
      client.socket.write(dataFrame(3, Buffer.from("late bytes of a refused stream"), true));
      await client.until(() => client.frames.some((f) => f.type === FrameType.WINDOW_UPDATE && f.id === 0), "the dropped bytes' credit");
      expect(podsSaw.some((text) => text.includes("refused stream"))).toBe(false);

      // A graceful shutdown's first GOAWAY (2^31-1) reaches the client as it is, and takes nothing away.
      const graceful = rawClient(port);
      graceful.socket.write(Buffer.concat([CLIENT_PREFACE, frameHeader(0, FrameType.SETTINGS, 0, 0), request(1, "/goaway-all")]));
      await graceful.until(() => graceful.frames.some((f) => f.type === FrameType.GOAWAY), "the pods' GOAWAY");
      expect(graceful.frames.find((f) => f.type === FrameType.GOAWAY)!.payload.readUInt32BE(0)).toBe(0x7fffffff);
      graceful.socket.write(request(3, "/late", "late"));
      await graceful.until(() => graceful.frames.some((f) => f.id === 3 && f.flags & Flag.END_STREAM), "stream 3's answer");
      expect(developerCalls).toBe(1);
    } finally {
      router.routes.delete("late");
      developer.close();
    }
  });

  test("a refused stream's late frames never reach the pods, even once streams are renumbered", async () => {
    const developer = http2.createServer();
    developer.on("stream", (stream) => (stream.respond({ ":status": 200 }), stream.end()));
    await new Promise<void>((resolve) => developer.listen(0, "127.0.0.1", () => resolve()));
    router.routes.put({ id: "late2", header: "version", value: "late2", upstreams: { [String(port)]: { host: "127.0.0.1", port: (developer.address() as net.AddressInfo).port } } });
    try {
      const client = rawClient(port);
      // Stream 1's developer is gone: it reaches the pods after stream 3, renumbered.
      client.socket.write(Buffer.concat([CLIENT_PREFACE, frameHeader(0, FrameType.SETTINGS, 0, 0), request(1, "/fall", "gone"), request(3, "/plain")]));
      await client.until(() => client.frames.some((f) => f.id === 1 && f.flags & Flag.END_STREAM), "stream 1's answer from the pods");
      client.socket.write(request(5, "/goaway"));
      await client.until(() => client.frames.some((f) => f.type === FrameType.GOAWAY), "the pods' GOAWAY");
      const last = client.frames.find((f) => f.type === FrameType.GOAWAY)!.payload.readUInt32BE(0);
      const refusedId = last + 2 + ((last + 2) % 2 === 0 ? 1 : 0);
      client.socket.write(request(refusedId, "/late", "late2", false));
      await client.until(() => client.frames.some((f) => f.type === FrameType.RST_STREAM && f.id === refusedId), "the refusal");
      client.socket.write(dataFrame(refusedId, Buffer.from("late bytes of a refused stream, renumbered"), true));
      await client.until(
        () => client.frames.filter((f) => f.type === FrameType.WINDOW_UPDATE && f.id === 0).some((f) => f.payload.readUInt32BE(0) === "late bytes of a refused stream, renumbered".length),
        "the dropped bytes' credit",
      );
      expect(podsSaw.some((text) => text.includes("renumbered"))).toBe(false);
    } finally {
      router.routes.delete("late2");
      developer.close();
    }
  });

  test("while the router's own answer has used the client's window, the pods' DATA waits but their credit for an upload does not", async () => {
    const developer = http2.createServer();
    developer.on("stream", (stream) => (stream.respond({ ":status": 200 }), stream.end(Buffer.alloc(60_000, 97))));
    await new Promise<void>((resolve) => developer.listen(0, "127.0.0.1", () => resolve()));
    router.routes.put({ id: "big", header: "version", value: "big", upstreams: { [String(port)]: { host: "127.0.0.1", port: (developer.address() as net.AddressInfo).port } } });
    try {
      const client = rawClient(port);
      // No credit is ever given: the developer's 60,000 bytes leave 5,535 of the first 65,535.
      client.socket.write(Buffer.concat([CLIENT_PREFACE, frameHeader(0, FrameType.SETTINGS, 0, 0), request(1, "/big", "big")]));
      await client.until(() => client.frames.some((f) => f.id === 1 && f.flags & Flag.END_STREAM), "the developer's answer");
      client.socket.write(request(3, "/upload", undefined, false));
      await client.until(() => client.frames.some((f) => f.type === FrameType.WINDOW_UPDATE && f.id === 3), "the pods' credit for the upload");
      expect(client.frames.some((f) => f.type === FrameType.DATA && f.id === 3)).toBe(false); // 10,000 bytes do not fit in 5,535
      client.socket.write(windowUpdateFrame(0, 100_000));
      await client.until(() => client.frames.some((f) => f.type === FrameType.DATA && f.id === 3), "the held DATA, once credit came");
    } finally {
      router.routes.delete("big");
      developer.close();
    }
  });

  test("a developer's headers-only answer before the whole request came: the client is told to stop sending, without error", async () => {
    const developer = http2.createServer();
    developer.on("stream", (stream) => stream.respond({ ":status": 401 }, { endStream: true }));
    await new Promise<void>((resolve) => developer.listen(0, "127.0.0.1", () => resolve()));
    router.routes.put({ id: "early", header: "version", value: "early", upstreams: { [String(port)]: { host: "127.0.0.1", port: (developer.address() as net.AddressInfo).port } } });
    try {
      const client = rawClient(port);
      client.socket.write(Buffer.concat([CLIENT_PREFACE, frameHeader(0, FrameType.SETTINGS, 0, 0), request(1, "/early", "early", false), dataFrame(1, Buffer.alloc(1000), false)]));
      await client.until(() => client.frames.some((f) => f.type === FrameType.RST_STREAM && f.id === 1), "stream 1's reset");
      const answer = client.frames.find((f) => f.type === FrameType.HEADERS && f.id === 1)!;
      expect(answer.flags & Flag.END_STREAM).toBe(Flag.END_STREAM);
      expect(new HpackDecoder().decode(answer.payload)).toContainEqual([":status", "401"]);
      expect(client.frames.find((f) => f.type === FrameType.RST_STREAM && f.id === 1)!.payload.readUInt32BE(0)).toBe(http2.constants.NGHTTP2_NO_ERROR);
      // The rest of the upload is dropped, and its bytes' connection credit still comes back.
      client.socket.write(dataFrame(1, Buffer.alloc(2000), true));
      await client.until(() => client.frames.filter((f) => f.type === FrameType.WINDOW_UPDATE && f.id === 0).reduce((sum, f) => sum + f.payload.readUInt32BE(0), 0) >= 3000, "the connection's credit");
    } finally {
      router.routes.delete("early");
      developer.close();
    }
  });

  test("a client that lowered its HPACK table gets the size update in the router's first block after the pods' ACK", async () => {
    const devServer = http2.createServer();
    devServer.on("stream", (stream) => {
      stream.respond({ ":status": 200, "x-from": "dev" });
      stream.end("dev");
    });
    await new Promise<void>((resolve) => devServer.listen(0, "127.0.0.1", () => resolve()));
    router.routes.put({ id: "dev", header: "version", value: "dev", upstreams: { [String(port)]: { host: "127.0.0.1", port: (devServer.address() as net.AddressInfo).port } } });
    try {
      const client = rawClient(port);
      const tableSize = Buffer.alloc(6);
      tableSize.writeUInt16BE(Setting.HEADER_TABLE_SIZE, 0);
      tableSize.writeUInt32BE(0, 2);
      client.socket.write(Buffer.concat([CLIENT_PREFACE, frameHeader(6, FrameType.SETTINGS, 0, 0), tableSize]));
      await client.until(() => client.frames.some((f) => f.type === FrameType.SETTINGS && f.flags & Flag.ACK), "the pods' ACK");
      client.socket.write(request(1, "/dev", "dev"));
      await client.until(() => client.frames.some((f) => f.type === FrameType.HEADERS && f.id === 1), "the developer's answer");
      const block = client.frames.find((f) => f.type === FrameType.HEADERS && f.id === 1)!.payload;
      expect(block[0]! & 0xe0).toBe(0x20); // a dynamic table size update...
      expect(block[0]! & 0x1f).toBe(0); // ...to 0
      const fields = new HpackDecoder().decode(block);
      expect(fields).toContainEqual(["x-from", "dev"]);

      // Lowered to 0, then back to 4096 before any block: both sizes are owed, smallest first.
      const twice = rawClient(port);
      const settings = (size: number) => {
        const payload = Buffer.alloc(6);
        payload.writeUInt16BE(Setting.HEADER_TABLE_SIZE, 0);
        payload.writeUInt32BE(size, 2);
        return Buffer.concat([frameHeader(6, FrameType.SETTINGS, 0, 0), payload]);
      };
      twice.socket.write(Buffer.concat([CLIENT_PREFACE, settings(0), settings(4096)]));
      await twice.until(() => twice.frames.filter((f) => f.type === FrameType.SETTINGS && f.flags & Flag.ACK).length === 2, "both ACKs");
      twice.socket.write(request(1, "/dev", "dev"));
      await twice.until(() => twice.frames.some((f) => f.type === FrameType.HEADERS && f.id === 1), "the developer's answer");
      const both = twice.frames.find((f) => f.type === FrameType.HEADERS && f.id === 1)!.payload;
      expect([...both.subarray(0, 4)]).toEqual([0x20, 0x3f, 0xe1, 0x1f]); // size 0, then 4096
      expect(new HpackDecoder().decode(both)).toContainEqual(["x-from", "dev"]);
    } finally {
      router.routes.delete("dev");
      devServer.close();
    }
  });
});

/** A GOAWAY as the pods write it: the last stream they take, and an error code. */
function goawayFrame(lastStreamId: number, code: number): Buffer {
  const payload = Buffer.alloc(8);
  payload.writeUInt32BE(lastStreamId, 0);
  payload.writeUInt32BE(code, 4);
  return Buffer.concat([frameHeader(8, FrameType.GOAWAY, 0, 0), payload]);
}
