// The mesh router against real local servers: HTTP/1.1 keep-alive, pipelining and bodies,
// WebSocket and h1->h2c upgrades, h2c streams, gRPC-style calls with trailers, raw TCP, routes
// changed while connections stay open, and a developer upstream that is gone.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import http2 from "node:http2";
import net from "node:net";
import { startAdmin, type AdminServer } from "../../shadow/router/admin.ts";
import { ROUTER_CONFIG_ENV, validateRouterConfig, type Route } from "../../core/protocol/router.ts";
import { Router } from "../../shadow/router/router.ts";
import { SHADOW_ENV } from "../../core/protocol/tunnel.ts";
import { createSessionKeyPair } from "../../core/protocol/keys.ts";
import { ShadowProcess } from "./tunnel-harness.ts";
import { startProtocolServer, type Answer, type ProtocolServer } from "../e2e/fixtures/protocol-server.ts";
import {
  RawClient,
  freePort,
  get,
  grpcFrame,
  h2Call,
  memoryLog,
  podOf,
  readUntil,
  tcpServer,
  wsConversation,
} from "./router-harness.ts";

describe("mesh router", () => {
  let original: ProtocolServer;
  let devA: ProtocolServer;
  let devB: ProtocolServer;
  let tcpEcho: Awaited<ReturnType<typeof tcpServer>>;
  let greeter: Awaited<ReturnType<typeof tcpServer>>;
  let upgrader: net.Server;
  let router: Router;
  let admin: AdminServer;
  let httpPort: number;
  let tcpPort: number;
  let greetPort: number;
  let strictHttpPort: number;
  let rawPort: number;
  const log = memoryLog();

  const adminCall = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`http://127.0.0.1:${admin.port}${path}`, {
      method,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as any };
  };
  const routeTo = (id: string, value: string, server: { port: number }, extra: Partial<Route> = {}): Route => ({
    id,
    owner: `${id}@laptop`,
    header: "VERSION",
    value,
    upstreams: { [String(httpPort)]: { host: "127.0.0.1", port: server.port } },
    ...extra,
  });
  const putRoute = async (route: Route) => {
    const reply = await adminCall("PUT", `/routes/${route.id}`, route);
    expect(reply.status).toBe(200);
  };

  beforeAll(async () => {
    [original, devA, devB, tcpEcho, greeter] = await Promise.all([
      startProtocolServer({ name: "original" }),
      startProtocolServer({ name: "dev-a" }),
      startProtocolServer({ name: "dev-b" }),
      tcpServer(),
      tcpServer("220 hello from the server\r\n"),
    ]);
    // An upstream that accepts any upgrade (here: h2c from HTTP/1.1) and then echoes raw bytes.
    upgrader = net.createServer((socket) => {
      socket.once("data", () => {
        socket.write("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\nupgraded:");
        socket.pipe(socket);
      });
    });
    await new Promise<void>((resolve) => upgrader.listen(0, "127.0.0.1", resolve));
    [httpPort, tcpPort, greetPort, strictHttpPort, rawPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
    const config = validateRouterConfig({
      listeners: [
        { port: httpPort, fallback: { host: "127.0.0.1", port: original.port }, name: "http" },
        { port: tcpPort, fallback: { host: "127.0.0.1", port: tcpEcho.port }, name: "tcp" },
        { port: greetPort, fallback: { host: "127.0.0.1", port: greeter.port }, name: "smtp-like" },
        { port: strictHttpPort, fallback: { host: "127.0.0.1", port: original.port }, name: "http", protocol: "http" },
        { port: rawPort, fallback: { host: "127.0.0.1", port: original.port }, name: "tcp", protocol: "tcp" },
      ],
      adminPort: await freePort(),
      sniffTimeoutMs: 150,
    });
    router = new Router(config, log, { host: "127.0.0.1", healthDownMs: 2_000 });
    await router.start();
    admin = await startAdmin(router, log, config.adminPort);
    await putRoute(routeTo("alice", "a", devA));
    await putRoute(routeTo("bob", "b", devB));
  });

  afterAll(async () => {
    router?.stop();
    await admin?.close();
    upgrader?.close();
    await Promise.all([original?.close(), devA?.close(), devB?.close(), tcpEcho?.close(), greeter?.close()]);
  });

  describe("HTTP/1.1", () => {
    test("marked requests go to their developer, unmarked to the original pods", async () => {
      const client = await RawClient.connect(httpPort);
      expect(podOf(await client.request(get("/")))).toBe("original");
      expect(podOf(await client.request(get("/", { VERSION: "a" })))).toBe("dev-a");
      expect(podOf(await client.request(get("/", { version: "b" })))).toBe("dev-b");
      expect(podOf(await client.request(get("/", { Version: "nobody" })))).toBe("original");
      client.close();
    });

    test("keep-alive both ways: one client connection, one pooled connection per upstream", async () => {
      const originalBefore = original.connections();
      const devBefore = devA.connections();
      const client = await RawClient.connect(httpPort);
      for (let i = 0; i < 40; i++) {
        const marked = i % 2 === 1;
        const answer = await client.request(get(`/req/${i}`, marked ? { VERSION: "a" } : {}));
        expect(answer.status).toBe(200);
        expect(podOf(answer)).toBe(marked ? "dev-a" : "original");
        expect((JSON.parse(answer.body) as Answer).path).toBe(`/req/${i}`);
      }
      client.close();
      // The router may hold a pooled connection from an earlier test, never one per request.
      expect(original.connections() - originalBefore).toBeLessThanOrEqual(1);
      expect(devA.connections() - devBefore).toBeLessThanOrEqual(1);
    });

    test("many clients at once: every answer from the right server, connections bounded", async () => {
      const originalBefore = original.connections();
      const clients = await Promise.all(Array.from({ length: 20 }, () => RawClient.connect(httpPort)));
      const answers = await Promise.all(
        clients.map(async (client, c) => {
          const pods: string[] = [];
          for (let i = 0; i < 15; i++) {
            const mark = ["", "a", "b"][(c + i) % 3]!;
            pods.push(`${mark}:${podOf(await client.request(get("/", mark ? { VERSION: mark } : {})))}`);
          }
          return pods;
        }),
      );
      for (const entry of answers.flat()) {
        const [mark, pod] = entry.split(":");
        expect(pod).toBe(mark === "a" ? "dev-a" : mark === "b" ? "dev-b" : "original");
      }
      for (const client of clients) client.close();
      expect(original.connections() - originalBefore).toBeLessThanOrEqual(20);
    });

    test("bodies: Content-Length and chunked requests reach the routed upstream intact", async () => {
      const client = await RawClient.connect(httpPort);
      const sized = await client.request("POST /echo HTTP/1.1\r\nHost: echo\r\nVERSION: a\r\nContent-Length: 11\r\n\r\nhello world");
      expect(JSON.parse(sized.body)).toMatchObject({ pod: "dev-a", message: "hello world" });
      const chunked = await client.request(
        "POST /echo HTTP/1.1\r\nHost: echo\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n chunk\r\n0\r\n\r\n",
      );
      expect(JSON.parse(chunked.body)).toMatchObject({ pod: "original", message: "hello chunk" });
      // A body that arrives in pieces, slower than the head.
      client.send("POST /slow HTTP/1.1\r\nHost: echo\r\nVERSION: b\r\nContent-Length: 6\r\n\r\nab");
      await Bun.sleep(20);
      client.send("cdef");
      expect(JSON.parse((await client.next()).body)).toMatchObject({ pod: "dev-b", message: "abcdef" });
      client.close();
    });

    test("pipelined requests for different developers are answered in order", async () => {
      const client = await RawClient.connect(httpPort);
      client.send(get("/1", { VERSION: "b" }) + get("/2") + get("/3", { VERSION: "a" }) + get("/4", { VERSION: "b" }));
      const pods = [];
      for (let i = 0; i < 4; i++) pods.push(podOf(await client.next()));
      expect(pods).toEqual(["dev-b", "original", "dev-a", "dev-b"]);
      client.close();
    });

    test("Expect: 100-continue gets the interim answer, then the final one", async () => {
      const client = await RawClient.connect(httpPort);
      client.send("PUT /x HTTP/1.1\r\nHost: echo\r\nVERSION: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
      const interim = await client.next();
      expect(interim.status).toBe(100);
      client.send("data");
      expect(JSON.parse((await client.next()).body)).toMatchObject({ pod: "dev-a", message: "data" });
      client.close();
    });

    test("Connection: close is honoured: the answer comes, then the connection ends", async () => {
      const client = await RawClient.connect(httpPort);
      const answer = await client.request(get("/", { VERSION: "a", Connection: "close" }));
      expect(podOf(answer)).toBe("dev-a");
      await client.closed;
    });

    test("ambiguous framing is refused before anything is forwarded", async () => {
      const before = original.requests().http1 ?? 0;
      const client = await RawClient.connect(httpPort);
      const answer = await client.request("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
      expect(answer.status).toBe(400);
      await client.closed;
      expect(original.requests().http1 ?? 0).toBe(before);
    });

    test("a path-prefix route takes only its segment", async () => {
      await putRoute(routeTo("carol", "c", devB, { pathPrefix: "/api" }));
      const client = await RawClient.connect(httpPort);
      expect(podOf(await client.request(get("/api/users", { VERSION: "c" })))).toBe("dev-b");
      expect(podOf(await client.request(get("/api", { VERSION: "c" })))).toBe("dev-b");
      expect(podOf(await client.request(get("/apix", { VERSION: "c" })))).toBe("original");
      expect(podOf(await client.request(get("/web", { VERSION: "c" })))).toBe("original");
      client.close();
      expect((await adminCall("DELETE", "/routes/carol")).body.removed).toBe(true);
    });
  });

  describe("routes change at run time", () => {
    test("a route added or removed applies to the next request on an open connection", async () => {
      const client = await RawClient.connect(httpPort);
      expect(podOf(await client.request(get("/", { VERSION: "dave" })))).toBe("original");
      await putRoute(routeTo("dave", "dave", devB));
      expect(podOf(await client.request(get("/", { VERSION: "dave" })))).toBe("dev-b");
      expect((await adminCall("DELETE", "/routes/dave")).body.removed).toBe(true);
      expect(podOf(await client.request(get("/", { VERSION: "dave" })))).toBe("original");
      client.close();
    });

    test("the admin endpoint refuses a taken mark, bad routes and unknown ports", async () => {
      const taken = await adminCall("PUT", "/routes/mallory", routeTo("mallory", "a", devB));
      expect(taken.status).toBe(409);
      expect(taken.body.conflict.id).toBe("alice");
      expect((await adminCall("PUT", "/routes/x", { id: "x" })).status).toBe(400);
      expect((await adminCall("PUT", "/routes/y", routeTo("z", "z", devB))).status).toBe(400);
      const wrongPort = await adminCall("PUT", "/routes/w", { ...routeTo("w", "w", devB), upstreams: { "1": { host: "127.0.0.1", port: 1 } } });
      expect(wrongPort.status).toBe(400);
      expect(wrongPort.body.error).toContain("no listener on port 1");
      const listed = await adminCall("GET", "/routes");
      expect(listed.body.routes.map((r: Route) => r.id).sort()).toEqual(["alice", "bob"]);
    });

    test("stats report memory and counters", async () => {
      const stats = await adminCall("GET", "/stats");
      expect(stats.body.rssBytes).toBeGreaterThan(1024 * 1024);
      expect(stats.body.counters.requests).toBeGreaterThan(0);
      expect(stats.body.counters.routed).toBeGreaterThan(0);
      expect(stats.body.counters.upstreamsReused).toBeGreaterThan(stats.body.counters.upstreamsOpened);
    });
  });

  describe("a developer whose upstream is gone", () => {
    test("refused connections fall back to the original pods, and later requests skip the dead route", async () => {
      const dead = await freePort(); // nothing listens here
      await putRoute(routeTo("erin", "e", { port: dead }));
      const fallbacksBefore = router.counters.fallbacks;
      const client = await RawClient.connect(httpPort);
      expect(podOf(await client.request(get("/", { VERSION: "e" })))).toBe("original");
      expect(podOf(await client.request(get("/", { VERSION: "e" })))).toBe("original");
      expect(router.counters.fallbacks - fallbacksBefore).toBe(2);
      // Other developers are not disturbed.
      expect(podOf(await client.request(get("/", { VERSION: "a" })))).toBe("dev-a");
      client.close();
      await adminCall("DELETE", "/routes/erin");
    });

    test("a shadow that accepts and drops the connection: a GET goes to the original pods, a POST is not sent twice", async () => {
      // Two such shadows: a failure marks an upstream down, and each case needs a fresh one.
      const droppers = await Promise.all(
        [0, 1].map(async () => {
          const dropper = { accepted: 0, server: net.createServer((socket) => (dropper.accepted++, socket.end())) };
          await new Promise<void>((resolve) => dropper.server.listen(0, "127.0.0.1", resolve));
          return dropper;
        }),
      );
      await putRoute(routeTo("frank", "f", droppers[0]!.server.address() as net.AddressInfo));
      await putRoute(routeTo("fred", "f2", droppers[1]!.server.address() as net.AddressInfo));
      const client = await RawClient.connect(httpPort);
      expect(podOf(await client.request(get("/", { VERSION: "f" })))).toBe("original");
      expect(droppers[0]!.accepted).toBe(1);
      const post = await client.request("POST / HTTP/1.1\r\nHost: x\r\nVERSION: f2\r\nContent-Length: 2\r\n\r\nhi");
      expect(post.status).toBe(502);
      expect(post.body).toContain("ktctl router");
      expect(droppers[1]!.accepted).toBe(1);
      client.close();
      for (const dropper of droppers) dropper.server.close();
      await adminCall("DELETE", "/routes/frank");
      await adminCall("DELETE", "/routes/fred");
    });
  });

  describe("upgrades", () => {
    test("WebSocket: the upgrade request is routed by its headers, then the sockets are spliced", async () => {
      const url = `ws://127.0.0.1:${httpPort}/ws`;
      const marked = await wsConversation(url, { VERSION: "a" });
      expect(marked.hello.pod).toBe("dev-a");
      expect(marked.echo).toBe("dev-a: ping");
      const plain = await wsConversation(url, {});
      expect(plain.hello.pod).toBe("original");
      expect(plain.echo).toBe("original: ping");
    });

    test("HTTP/1.1 Upgrade: h2c is routed on the upgrade request and spliced after 101", async () => {
      await putRoute(routeTo("gina", "g", upgrader.address() as net.AddressInfo));
      const client = await RawClient.connect(httpPort);
      const answer = await client.request(
        get("/", { VERSION: "g", Connection: "Upgrade, HTTP2-Settings", Upgrade: "h2c", "HTTP2-Settings": "AAMAAABkAAQCAAAAAAIAAAAA" }),
      );
      expect(answer.status).toBe(101);
      const rest = client.takeRest().toString();
      const echoed = readUntil(client.socket, (text) => (rest + text).includes("raw-bytes"));
      client.send("raw-bytes");
      expect(rest + (await echoed)).toBe("upgraded:raw-bytes");
      client.close();
      await adminCall("DELETE", "/routes/gina");
    });
  });

  describe("HTTP/2 cleartext and gRPC", () => {
    test("each stream of one h2c connection is routed on its own headers", async () => {
      const session = http2.connect(`http://127.0.0.1:${httpPort}`);
      const calls = await Promise.all(
        ["", "a", "b", "", "a"].map((mark, i) =>
          h2Call(session, { ":path": `/h2/${i}`, ...(mark ? { version: mark } : {}) }).then((r) => ({ mark, answer: JSON.parse(r.body.toString()) as Answer })),
        ),
      );
      for (const { mark, answer } of calls) {
        expect(answer.proto).toBe("HTTP/2.0");
        expect(answer.pod).toBe(mark === "a" ? "dev-a" : mark === "b" ? "dev-b" : "original");
      }
      const posted = await h2Call(session, { ":method": "POST", ":path": "/p", version: "b" }, "h2 body");
      expect(JSON.parse(posted.body.toString())).toMatchObject({ pod: "dev-b", message: "h2 body" });
      session.close();
    });

    test("a gRPC call: the mark is metadata, headers, message and trailers pass through", async () => {
      const session = http2.connect(`http://127.0.0.1:${httpPort}`);
      const call = (metadata: Record<string, string>) =>
        h2Call(
          session,
          { ":method": "POST", ":path": "/grpc.health.v1.Health/Check", "content-type": "application/grpc", te: "trailers", ...metadata },
          grpcFrame(Buffer.alloc(0)),
        );
      const marked = await call({ version: "a" });
      expect(marked.headers["x-pod"]).toBe("dev-a");
      expect(Number(marked.headers[":status"])).toBe(200);
      expect([...marked.body]).toEqual([0, 0, 0, 0, 2, 0x08, 0x01]);
      expect(marked.trailers?.["grpc-status"]).toBe("0");
      const plain = await call({});
      expect(plain.headers["x-pod"]).toBe("original");
      expect(plain.trailers?.["grpc-status"]).toBe("0");
      // A trailers-only error answer (unknown method) passes through as such.
      const unknown = await h2Call(
        session,
        { ":method": "POST", ":path": "/nope.Service/Call", "content-type": "application/grpc", te: "trailers", version: "b" },
        grpcFrame(Buffer.alloc(0)),
      );
      expect(unknown.headers["grpc-status"]).toBe("12");
      expect(unknown.headers["x-pod"]).toBe("dev-b");
      session.close();
    });

    test("concurrent gRPC calls over one connection, two developers and the rest", async () => {
      const session = http2.connect(`http://127.0.0.1:${httpPort}`);
      const marks = Array.from({ length: 60 }, (_, i) => ["", "a", "b"][i % 3]!);
      const results = await Promise.all(
        marks.map((mark) =>
          h2Call(
            session,
            { ":method": "POST", ":path": "/grpc.health.v1.Health/Check", "content-type": "application/grpc", te: "trailers", ...(mark ? { version: mark } : {}) },
            grpcFrame(Buffer.alloc(0)),
          ).then((r) => ({ mark, pod: r.headers["x-pod"], status: r.trailers?.["grpc-status"] })),
        ),
      );
      for (const { mark, pod, status } of results) {
        expect(pod).toBe(mark === "a" ? "dev-a" : mark === "b" ? "dev-b" : "original");
        expect(status).toBe("0");
      }
      session.close();
    });

    test("an h2c stream to a developer whose upstream refuses goes to the original pods", async () => {
      await putRoute(routeTo("hank", "h", { port: await freePort() }));
      const session = http2.connect(`http://127.0.0.1:${httpPort}`);
      const answer = await h2Call(session, { ":path": "/", version: "h" });
      expect((JSON.parse(answer.body.toString()) as Answer).pod).toBe("original");
      session.close();
      await adminCall("DELETE", "/routes/hank");
    });
  });

  describe("not HTTP", () => {
    test("other bytes on a meshed port reach the original pods untouched", async () => {
      const socket = net.connect(httpPort, "127.0.0.1");
      socket.on("error", () => undefined);
      const echoed = readUntil(socket, (t) => t.includes("\n"));
      // The fallback of the http port speaks HTTP, so it answers a non-HTTP line with a 400 of its own.
      socket.write("\x16\x03\x01 not http\n\r\n\r\n");
      expect(await echoed).toContain("400");
      socket.destroy();
      const tcp = net.connect(tcpPort, "127.0.0.1");
      const back = readUntil(tcp, (t) => t === "hello tcp\n");
      tcp.write("hello tcp\n");
      expect(await back).toBe("hello tcp\n");
      tcp.destroy();
    });

    test("an http port waits for a silent client (opened early, used later); a tcp port never looks", async () => {
      await putRoute({ ...routeTo("ivy", "i", devA), upstreams: { [String(strictHttpPort)]: { host: "127.0.0.1", port: devA.port }, [String(rawPort)]: { host: "127.0.0.1", port: devA.port } } });
      const early = await RawClient.connect(strictHttpPort);
      await Bun.sleep(400); // longer than this router's sniff window of 150 ms
      expect(podOf(await early.request(get("/", { VERSION: "i" })))).toBe("dev-a");
      early.close();
      const raw = await RawClient.connect(rawPort);
      expect(podOf(await raw.request(get("/", { VERSION: "i" })))).toBe("original");
      raw.close();
      // On an "auto" port the same early connection is taken for a server-first protocol.
      const guessed = await RawClient.connect(httpPort);
      await Bun.sleep(400);
      expect(podOf(await guessed.request(get("/", { VERSION: "a" })))).toBe("original");
      guessed.close();
      await adminCall("DELETE", "/routes/ivy");
    });

    test("a server-speaks-first protocol gets through after the sniff window", async () => {
      const socket = net.connect(greetPort, "127.0.0.1");
      expect(await readUntil(socket, (t) => t.includes("\r\n"))).toBe("220 hello from the server\r\n");
      const echoed = readUntil(socket, (t) => t.includes("QUIT"));
      socket.write("QUIT\r\n");
      expect(await echoed).toBe("QUIT\r\n");
      socket.destroy();
    });
  });
});

describe("the router role in the shadow program", () => {
  test("starts from its environment beside the tunnel, routes, and stops cleanly on SIGTERM", async () => {
    const original = await startProtocolServer({ name: "original" });
    const dev = await startProtocolServer({ name: "dev" });
    const [port, adminPort] = [await freePort(), await freePort()];
    const keys = createSessionKeyPair("ktctl-test");
    const shadow = await ShadowProcess.start(keys.publicKey, 0, {
      [SHADOW_ENV.roles]: "tunnel,router",
      [ROUTER_CONFIG_ENV]: JSON.stringify({
        listeners: [{ port, fallback: { host: "127.0.0.1", port: original.port }, name: "http" }],
        adminPort,
        service: "demo/echo",
      }),
    });
    try {
      await shadow.waitFor(/router\.ready .*service=demo\/echo/);
      const route: Route = { id: "s1", header: "version", value: "v1", upstreams: { [String(port)]: { host: "127.0.0.1", port: dev.port } } };
      const put = await fetch(`http://127.0.0.1:${adminPort}/routes/s1`, { method: "PUT", body: JSON.stringify(route) });
      expect(put.status).toBe(200);
      const client = await RawClient.connect(port);
      expect(podOf(await client.request(get("/", { VERSION: "v1" })))).toBe("dev");
      expect(podOf(await client.request(get("/")))).toBe("original");
      client.close();
      expect(await shadow.stop("SIGTERM")).toBe(0);
      expect(shadow.count(/router\.stats .*requests=2 routed=1/)).toBe(1);
    } finally {
      shadow.process.kill();
      await Promise.all([original.close(), dev.close()]);
    }
  });

  test("a router without its configuration refuses to start and says why", async () => {
    const keys = createSessionKeyPair("ktctl-test");
    const shadow = await ShadowProcess.start(keys.publicKey, 0, { [SHADOW_ENV.roles]: "tunnel,router" });
    expect(await shadow.process.exited).toBe(1);
    expect(shadow.count(/role\.failed role=router .*KTCTL_ROUTER_CONFIG is not set/)).toBe(1);
  });
});
