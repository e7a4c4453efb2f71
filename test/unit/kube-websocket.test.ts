// Our WebSocket client against Bun's WebSocket server on loopback (a real peer, not a mock).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import type { Server } from "bun";
import { ClientWebSocket, FrameReader, UpgradeRefusedError, WS_HEADROOM, frameHeader, maskInPlace } from "../../core/kube/websocket.ts";

const SPDY = "SPDY/3.1+portforward.k8s.io";
const V4 = "v4.channel.k8s.io";
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describe("framing", () => {
  test("masking in place equals byte-by-byte masking at any alignment and length", () => {
    const key = Buffer.from([0x12, 0x34, 0x56, 0x78]);
    for (let offset = 0; offset < 4; offset++) {
      for (const length of [0, 1, 3, 4, 5, 7, 64, 1001]) {
        for (const from of [0, Math.min(2, length)]) {
          const memory = Buffer.from(randomBytes(length + offset + 4));
          const data = memory.subarray(offset, offset + length);
          const expected = Buffer.from(data);
          for (let i = from; i < length; i++) expected[i]! ^= key[(i - from) & 3]!;
          maskInPlace(data, key, from);
          expect(data).toEqual(expected);
        }
      }
    }
  });

  test("client frame headers: 7-bit, 16-bit and 64-bit lengths, mask bit and key", () => {
    const key = Buffer.from([1, 2, 3, 4]);
    expect([...frameHeader(2, 125, key)]).toEqual([0x82, 0x80 | 125, 1, 2, 3, 4]);
    expect([...frameHeader(2, 126, key)]).toEqual([0x82, 0x80 | 126, 0, 126, 1, 2, 3, 4]);
    expect([...frameHeader(2, 65536, key)]).toEqual([0x82, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4]);
    expect(frameHeader(2, 2 ** 32 + 5, key).length).toBe(WS_HEADROOM);
  });

  test("a fragmented message comes as pieces, the first marked; a ping between fragments is its own", () => {
    const seen: string[] = [];
    const reader = new FrameReader(
      (payload, first) => seen.push(`${first ? "first" : "more"}:${payload.toString()}`),
      (opcode, payload) => seen.push(`control ${opcode}:${payload.toString()}`),
    );
    const frame = (b0: number, text: string) => Buffer.concat([Buffer.from([b0, text.length]), Buffer.from(text)]);
    const bytes = Buffer.concat([frame(0x02, "ab"), frame(0x89, "p"), frame(0x00, "cd"), frame(0x80, "e"), frame(0x82, "next")]);
    for (const b of bytes) reader.push(Buffer.from([b]));
    // Byte by byte, data pieces come one byte at a time: only the first piece of a message is marked.
    expect(seen.filter((s) => s.startsWith("first"))).toEqual(["first:a", "first:n"]);
    expect(seen).toContain("control 9:p");
    expect(seen.map((s) => s.split(":")[1]).join("")).toBe("abpcdenext");
  });

  test("headers with 16- and 64-bit lengths split anywhere between reads, byte by byte too", () => {
    // Server frames of each length form: 7-bit, 16-bit (126) and 64-bit (127).
    const frame = (payload: Buffer) => {
      const n = payload.length;
      const head = n < 126 ? Buffer.from([0x82, n]) : n < 65536 ? Buffer.from([0x82, 126, n >> 8, n & 0xff]) : Buffer.concat([Buffer.from([0x82, 127]), Buffer.alloc(4), Buffer.from([n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff])]);
      return Buffer.concat([head, payload]);
    };
    const payloads = [randomBytes(5), randomBytes(300), randomBytes(70_000), randomBytes(3)].map((b) => Buffer.from(b));
    const stream = Buffer.concat(payloads.map(frame));
    const expected = Buffer.concat(payloads);
    const readOut = (chunks: Buffer[]) => {
      const got: Buffer[] = [];
      const reader = new FrameReader((payload) => got.push(Buffer.from(payload)), () => {});
      for (const chunk of chunks) reader.push(chunk);
      return Buffer.concat(got);
    };
    // Every cut within and around the three headers after the first frame, and one byte at a time.
    const starts = [7, 7 + 304, 7 + 304 + 70_010];
    for (const start of starts) {
      for (let cut = start - 1; cut <= start + 11; cut++) {
        expect(sha(readOut([stream.subarray(0, cut), stream.subarray(cut)]))).toBe(sha(expected));
        expect(sha(readOut([stream.subarray(0, cut), stream.subarray(cut, cut + 1), stream.subarray(cut + 1)]))).toBe(sha(expected));
      }
    }
    expect(sha(readOut([...stream.subarray(0, 400)].map((b) => Buffer.from([b])).concat(stream.subarray(400))))).toBe(sha(expected));
  });

  test("a masked server frame or a stray continuation is a protocol error", () => {
    const reader = () => new FrameReader(() => {}, () => {});
    expect(() => reader().push(Buffer.from([0x82, 0x81, 0, 0, 0, 0, 1]))).toThrow(/masked/);
    expect(() => reader().push(Buffer.from([0x80, 0x01, 1]))).toThrow(/continuation/);
  });
});

describe("against a real WebSocket server", () => {
  let server: Server<{ path: string }>;
  let url: string;
  const received: Buffer[] = [];

  beforeAll(() => {
    server = Bun.serve<{ path: string }>({
      port: 0,
      hostname: "127.0.0.1",
      fetch(req, srv) {
        const path = new URL(req.url).pathname;
        if (path === "/forbidden") return Response.json({ kind: "Status", message: "no", code: 403 }, { status: 403 });
        const offered = (req.headers.get("sec-websocket-protocol") ?? "").split(",").map((p) => p.trim());
        const choice = path === "/wrong" ? "something-else" : offered[0];
        const headers = choice ? { "Sec-WebSocket-Protocol": choice } : undefined;
        return srv.upgrade(req, { headers, data: { path } }) ? undefined : new Response("no upgrade", { status: 400 });
      },
      websocket: {
        open(ws) {
          const { path } = ws.data;
          if (path === "/ping") ws.ping("are you there");
          if (path === "/close") ws.close(1000, "bye");
        },
        message(ws, message) {
          const data = Buffer.from(message as Uint8Array);
          received.push(data);
          ws.send(data); // echo
        },
        pong(ws, data) {
          ws.send(Buffer.concat([Buffer.from("pong:"), Buffer.from(data)]));
        },
      },
    });
    url = `ws://127.0.0.1:${server.port}`;
  });

  afterAll(() => server.stop(true));

  const connect = (path: string, protocols = [SPDY, V4]) =>
    ClientWebSocket.connect({ url: url + path, headers: { Authorization: "Bearer t" }, protocols, tls: { rejectUnauthorized: true }, timeoutMs: 5000 });

  /** Collects what the server sends until `bytes` have come. */
  function collect(ws: ClientWebSocket, bytes: number, stream = false): Promise<{ data: Buffer; pieces: number }> {
    return new Promise((resolve, reject) => {
      const parts: Buffer[] = [];
      let got = 0;
      ws.attach(
        {
          data: (piece) => {
            parts.push(Buffer.from(piece));
            got += piece.length;
            if (got >= bytes) resolve({ data: Buffer.concat(parts), pieces: parts.length });
          },
          closed: (error) => (got >= bytes ? undefined : reject(error ?? new Error("closed early"))),
        },
        { stream },
      );
    });
  }

  test("the subprotocol with '/' and '+' is offered and taken (stock clients refuse to send it)", async () => {
    const ws = await connect("/echo");
    expect(ws.protocol).toBe(SPDY);
    ws.close();
  });

  test("a 4 MiB message goes out masked and comes back intact", async () => {
    const ws = await connect("/echo");
    const payload = randomBytes(4 * 1024 * 1024);
    const original = sha(payload);
    const back = collect(ws, payload.length);
    // sendWithHeadroom masks in place: give it a buffer with room for the header in front.
    const buffer = Buffer.alloc(WS_HEADROOM + payload.length);
    payload.copy(buffer, WS_HEADROOM);
    ws.sendWithHeadroom(buffer);
    expect(sha((await back).data)).toBe(original);
    expect(sha(received.at(-1)!)).toBe(original);
    ws.close();
  });

  test("send copies: the caller's buffer is left as it was", async () => {
    const ws = await connect("/echo");
    const payload = Buffer.from("leave me alone");
    const back = collect(ws, payload.length);
    ws.send(payload);
    expect((await back).data.toString()).toBe("leave me alone");
    expect(payload.toString()).toBe("leave me alone");
    ws.close();
  });

  test("in stream mode what one read brings comes up as one piece", async () => {
    const ws = await connect("/echo");
    // 200 small messages written at once come back in few reads; each read is one piece upward.
    const back = collect(ws, 200 * 10, true);
    for (let i = 0; i < 200; i++) ws.send(Buffer.from(`message${String(i).padStart(3, "0")}`));
    const { data, pieces } = await back;
    expect(data.toString()).toBe(Array.from({ length: 200 }, (_, i) => `message${String(i).padStart(3, "0")}`).join(""));
    expect(pieces).toBeLessThan(200);
    ws.close();
  });

  test("pings from the server are answered with pongs carrying the same data", async () => {
    const ws = await connect("/ping");
    const { data } = await collect(ws, "pong:are you there".length);
    expect(data.toString()).toBe("pong:are you there");
    ws.close();
  });

  test("a close from the server ends the connection cleanly", async () => {
    const ws = await connect("/close");
    const closed = await new Promise<Error | undefined>((resolve) => ws.attach({ data: () => {}, closed: resolve }));
    expect(closed).toBeUndefined();
    expect(ws.open).toBe(false);
  });

  test("a refusal keeps its status and body; a protocol nobody offered is refused", async () => {
    const refused = await connect("/forbidden").catch((e) => e);
    expect(refused).toBeInstanceOf(UpgradeRefusedError);
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body)).toMatchObject({ kind: "Status", code: 403 });
    await expect(connect("/wrong")).rejects.toThrow(/chose subprotocol "something-else"/);
  });
});
