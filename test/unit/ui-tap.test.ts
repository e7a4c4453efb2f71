import { afterEach, describe, expect, test } from "bun:test";
import http2 from "node:http2";
import { connect, createServer, type Server } from "node:net";
import type { TapOptions, TrafficRecord } from "../../core/plugin-api.ts";
import { createConnectionTap } from "../../core/ui/tap/connection.ts";

const OPTIONS: TapOptions = { via: "test", local: { host: "127.0.0.1", port: 1 }, markHeader: "X-Mark", sessionId: "s1" };

/** Feeds both directions, one byte at a time when `split`, and returns the records. */
function run(client: string | Buffer, server: string | Buffer, options: Partial<TapOptions> = {}, split = false): TrafficRecord[] {
  const records: TrafficRecord[] = [];
  const tap = createConnectionTap({ ...OPTIONS, ...options }, (r) => records.push(r));
  const feed = (data: string | Buffer, to: (chunk: Uint8Array) => void) => {
    const bytes = Buffer.from(data);
    if (!split) return to(bytes);
    for (let i = 0; i < bytes.length; i++) to(bytes.subarray(i, i + 1));
  };
  feed(client, (c) => tap.fromClient(c));
  feed(server, (c) => tap.fromServer(c));
  tap.end();
  return records;
}

describe("http/1.1 tap", () => {
  const twoRequests = "GET /a HTTP/1.1\r\nHost: echo\r\nX-Mark: alice-1\r\n\r\nPOST /b?q=1 HTTP/1.1\r\nHost: echo\r\nContent-Length: 5\r\n\r\nhello";
  const twoResponses = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found";

  test("keep-alive and pipelining: each response is paired with its request in order", () => {
    for (const split of [false, true]) {
      const records = run(twoRequests, twoResponses, {}, split);
      expect(records.map((r) => [r.protocol, r.method, r.path, r.status, r.requestBytes, r.responseBytes, r.mark])).toEqual([
        ["http1", "GET", "/a", 200, 0, 2, "alice-1"],
        ["http1", "POST", "/b?q=1", 404, 5, 9, undefined],
      ]);
      expect(records[0]!.authority).toBe("echo");
      expect(records[0]!.requestHeaders).toContainEqual(["X-Mark", "alice-1"]);
      expect(records[1]!.responseHeaders).toContainEqual(["Content-Length", "9"]);
      expect(records[0]!.requestBody).toBeUndefined();
    }
  });

  test("chunked bodies both ways, with extensions and trailers, split anywhere", () => {
    const request = "PUT /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n";
    const response = "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwxyz\r\n0\r\n\r\n";
    for (const split of [false, true]) {
      const records = run(request + "GET /next HTTP/1.1\r\n\r\n", response + "HTTP/1.1 204 No Content\r\n\r\n", { bodyBytes: 3 }, split);
      expect(records.map((r) => [r.method, r.path, r.status, r.requestBytes, r.responseBytes])).toEqual([
        ["PUT", "/up", 201, 5, 4],
        ["GET", "/next", 204, 0, 0],
      ]);
      // Bodies only as asked, cut at the limit.
      expect(Buffer.from(records[0]!.requestBody!, "base64").toString()).toBe("abc");
      expect(Buffer.from(records[0]!.responseBody!, "base64").toString()).toBe("wxy");
      expect(records[0]!.bodyTruncated).toBe(true);
    }
  });

  test("HEAD, 304 and 100-continue have no response body; a body until close ends with the connection", () => {
    const records = run(
      "HEAD /h HTTP/1.1\r\n\r\nPOST /c HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nxGET /close HTTP/1.1\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 304 Not Modified\r\n\r\nHTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
    );
    expect(records.map((r) => [r.method, r.status, r.responseBytes, r.error])).toEqual([
      ["HEAD", 200, 0, undefined],
      ["POST", 304, 0, undefined],
      ["GET", 200, 13, undefined],
    ]);
  });

  test("a request without an answer is still recorded, saying why", () => {
    const records = run("GET /slow HTTP/1.1\r\n\r\n", "");
    expect(records).toHaveLength(1);
    expect(records[0]!.status).toBeUndefined();
    expect(records[0]!.error).toContain("connection closed");
  });

  test("a WebSocket upgrade is one record; the frames after it are not parsed", () => {
    const records = run("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02ok");
    expect(records.map((r) => [r.path, r.status])).toEqual([["/ws", 101]]);
  });
});

describe("other tcp", () => {
  test("a connection that is not HTTP is one record: bytes each way and duration", () => {
    const records = run(Buffer.from([0x16, 0x03, 0x01, 0, 5, 1, 2, 3, 4, 5]), "abc");
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ protocol: "tcp", requestBytes: 10, responseBytes: 3 });
    expect(records[0]!.durationMs).toBeGreaterThanOrEqual(0);
  });

  test("a server that speaks first is plain TCP", () => {
    const records: TrafficRecord[] = [];
    const tap = createConnectionTap(OPTIONS, (r) => records.push(r));
    tap.fromServer(Buffer.from("220 smtp ready\r\n"));
    tap.fromClient(Buffer.from("GET / HTTP/1.1\r\n\r\n"));
    tap.end();
    expect(records.map((r) => r.protocol)).toEqual(["tcp"]);
  });
});

describe("http/2 and gRPC tap (real frames from node:http2 through a tapping relay)", () => {
  const servers: Server[] = [];
  let h2server: http2.Http2Server | undefined;
  afterEach(async () => {
    for (const s of servers.splice(0)) s.close();
    h2server?.close();
  });

  test("every stream: :path, :status, grpc-status from trailers, the mark, body bytes", async () => {
    h2server = http2.createServer();
    h2server.on("stream", (stream, headers) => {
      const path = headers[":path"];
      if (path === "/pkg.Greeter/SayHello") {
        stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
        stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "5", "grpc-message": "not found" }));
        stream.end(Buffer.from([0, 0, 0, 0, 2, 8, 1]));
      } else {
        stream.respond({ ":status": path === "/missing" ? 404 : 200, "x-answer": "yes" });
        stream.end("hello h2");
      }
      stream.resume();
    });
    const h2port = await new Promise<number>((resolve) => h2server!.listen(0, "127.0.0.1", () => resolve((h2server!.address() as { port: number }).port)));

    const records: TrafficRecord[] = [];
    const relay = createServer((client) => {
      const local = connect({ host: "127.0.0.1", port: h2port });
      const tap = createConnectionTap({ ...OPTIONS, markHeader: "x-mark" }, (r) => records.push(r));
      client.on("data", (c) => tap.fromClient(c));
      local.on("data", (c) => tap.fromServer(c));
      client.pipe(local).pipe(client);
      local.once("close", () => tap.end());
      client.once("close", () => local.destroy());
    });
    servers.push(relay);
    const relayPort = await new Promise<number>((resolve) => relay.listen(0, "127.0.0.1", () => resolve((relay.address() as { port: number }).port)));

    const session = http2.connect(`http://127.0.0.1:${relayPort}`);
    const request = (headers: http2.OutgoingHttpHeaders, body?: Buffer) =>
      new Promise<void>((resolve, reject) => {
        const stream = session.request(headers);
        stream.on("response", () => undefined).on("data", () => undefined).on("end", () => resolve()).on("error", reject);
        stream.end(body);
      });
    await request({ ":path": "/hello?x=1", ":method": "GET", "x-mark": "alice-7" });
    await request({ ":path": "/missing", ":method": "GET", "user-agent": "a-rather-long-agent-name-for-the-dynamic-table" });
    await request({ ":path": "/missing", ":method": "GET", "user-agent": "a-rather-long-agent-name-for-the-dynamic-table" });
    await request({ ":path": "/pkg.Greeter/SayHello", ":method": "POST", "content-type": "application/grpc", te: "trailers" }, Buffer.from([0, 0, 0, 0, 3, 10, 1, 97]));
    session.close();
    const deadline = Date.now() + 5000;
    while (records.length < 4 && Date.now() < deadline) await Bun.sleep(10);

    expect(records.map((r) => [r.protocol, r.method, r.path, r.status, r.grpcStatus, r.mark, r.responseBytes])).toEqual([
      ["h2", "GET", "/hello?x=1", 200, undefined, "alice-7", 8],
      ["h2", "GET", "/missing", 404, undefined, undefined, 8],
      ["h2", "GET", "/missing", 404, undefined, undefined, 8],
      ["grpc", "POST", "/pkg.Greeter/SayHello", 200, "5", undefined, 7],
    ]);
    expect(records[3]!.requestBytes).toBe(8);
    expect(records[0]!.responseHeaders).toContainEqual(["x-answer", "yes"]);
    // The dynamic table stayed in step: the repeated header decodes the same the second time.
    expect(records[2]!.requestHeaders).toContainEqual(["user-agent", "a-rather-long-agent-name-for-the-dynamic-table"]);
  });
});
