import { describe, expect, test } from "bun:test";
import {
  CreditReturn,
  DIRECT_MAX_WINDOW,
  DirectFrameReader,
  FrameType,
  decodePreamble,
  encodeDataFrames,
  encodeFrameHeader,
  OwedDone,
  afterOwedDone,
  dropLeftovers,
  encodePreamble,
  encodeRefused,
} from "../../core/protocol/direct-streams.ts";

const token = Buffer.alloc(32, 7);

function readAll(chunks: Buffer[]) {
  const seen: string[] = [];
  const payloads: Buffer[] = [];
  const reader = new DirectFrameReader({
    data: (p) => {
      payloads.push(p);
      seen.push(`data:${p.length}`);
    },
    eof: () => seen.push("eof"),
    credit: (n) => seen.push(`credit:${n}`),
    blocked: () => seen.push("blocked"),
    opened: () => seen.push("opened"),
    refused: (reason, message) => seen.push(`refused:${reason}:${message}`),
    done: (rest) => seen.push(`done:${rest.toString("latin1")}`),
  });
  for (const c of chunks) reader.push(c);
  return { seen, payloads };
}

describe("preamble", () => {
  test("round trip: token, window, port and host name", () => {
    const bytes = encodePreamble({ token, host: "echo.demo.svc", port: 8080, window: 1 << 20 });
    const decoded = decodePreamble(Buffer.concat([bytes, Buffer.from("rest")]))!;
    expect(decoded.target).toEqual({ token, host: "echo.demo.svc", port: 8080, window: 1 << 20, reusable: false });
    expect(decoded.rest.toString()).toBe("rest");
  });

  test("a reusable stream's preamble says so (KTD2); the first kind stays as it was (KTD1)", () => {
    const reusable = encodePreamble({ token, host: "echo", port: 80, window: 4096, reusable: true });
    expect(reusable.subarray(0, 4).toString("latin1")).toBe("KTD2");
    expect(decodePreamble(reusable)!.target.reusable).toBe(true);
    const once = encodePreamble({ token, host: "echo", port: 80, window: 4096 });
    expect(once.subarray(0, 4).toString("latin1")).toBe("KTD1");
    expect(reusable.subarray(4)).toEqual(once.subarray(4));
    for (let n = 0; n < reusable.length; n++) expect(decodePreamble(reusable.subarray(0, n))).toBeUndefined();
    expect(() => decodePreamble(Buffer.from("KTD3"))).toThrow(/not a direct stream/);
  });

  test("incomplete is undefined (wait for more); anything else is refused at once", () => {
    const bytes = encodePreamble({ token, host: "10.1.2.3", port: 80, window: 4096 });
    for (let n = 0; n < bytes.length; n++) expect(decodePreamble(bytes.subarray(0, n))).toBeUndefined();
    expect(() => decodePreamble(Buffer.from("GET / HTTP/1.1\r\n"))).toThrow(/not a direct stream/);
    expect(() => decodePreamble(Buffer.from("SSH"))).toThrow(/not a direct stream/);
    const hugeWindow = Buffer.from(bytes);
    hugeWindow.writeUInt32BE(DIRECT_MAX_WINDOW + 1, 36);
    expect(() => decodePreamble(hugeWindow)).toThrow(/window/);
    expect(() => encodePreamble({ token: Buffer.alloc(3), host: "x", port: 1, window: 1 })).toThrow(/token/);
    expect(() => encodePreamble({ token, host: "", port: 1, window: 1 })).toThrow(/host/);
  });
});

describe("frames", () => {
  test("every kind, whole or split at every byte, reads the same", () => {
    const stream = Buffer.concat([
      encodeFrameHeader(FrameType.Opened, 0),
      ...encodeDataFrames([Buffer.from("hello"), Buffer.from("world!")], 4),
      encodeFrameHeader(FrameType.Credit, 65536),
      encodeFrameHeader(FrameType.Blocked, 0),
      encodeFrameHeader(FrameType.Eof, 0),
    ]);
    const whole = readAll([stream]);
    // Frames pack across chunk boundaries: "hell" "owor" "ld!".
    expect(whole.seen).toEqual(["opened", "data:4", "data:4", "data:3", "credit:65536", "blocked", "eof"]);
    expect(Buffer.concat(whole.payloads).toString()).toBe("helloworld!");
    const split = readAll([...stream].map((b) => Buffer.from([b])));
    expect(Buffer.concat(split.payloads).toString()).toBe("helloworld!");
    expect(split.seen.filter((s) => !s.startsWith("data"))).toEqual(["opened", "credit:65536", "blocked", "eof"]);
  });

  test("data frames are header and payload views, never copies", () => {
    const payload = Buffer.from("abc");
    const [header, view] = encodeDataFrames([payload]);
    expect(header).toEqual(encodeFrameHeader(FrameType.Data, 3));
    expect(view!.buffer).toBe(payload.buffer);
  });

  test("DONE stops the reader: what follows it, a next preamble, is handed over unparsed", () => {
    const next = encodePreamble({ token, host: "echo", port: 80, window: 4096, reusable: true });
    const stream = Buffer.concat([encodeFrameHeader(FrameType.Eof, 0), encodeFrameHeader(FrameType.Done, 0), next]);
    expect(readAll([stream]).seen).toEqual(["eof", `done:${next.toString("latin1")}`]);
    // Split inside DONE's header: the rest still starts right after it.
    const split = readAll([stream.subarray(0, 7), stream.subarray(7)]);
    expect(split.seen).toEqual(["eof", `done:${next.toString("latin1")}`]);
  });

  test("stop(): nothing more is parsed, and what is left goes to the stream's next owner", () => {
    const seen: string[] = [];
    let rest: Buffer | undefined;
    const reader = new DirectFrameReader({
      data: () => seen.push("data"),
      eof: () => {
        seen.push("eof");
        rest = reader.stop();
      },
      credit: () => seen.push("credit"),
      blocked: () => seen.push("blocked"),
      opened: () => seen.push("opened"),
      refused: () => seen.push("refused"),
      done: () => seen.push("done"),
    });
    const credit = encodeFrameHeader(FrameType.Credit, 7);
    reader.push(Buffer.concat([encodeFrameHeader(FrameType.Eof, 0), credit.subarray(0, 2)]));
    expect(seen).toEqual(["eof"]);
    expect(rest).toEqual(credit.subarray(0, 2));
    reader.push(credit);
    expect(seen).toEqual(["eof"]);
    // Between slices: the incomplete header it holds is handed on.
    const between = new DirectFrameReader({ ...({} as any), credit() {} });
    between.push(credit.subarray(0, 3));
    expect(between.stop()).toEqual(credit.subarray(0, 3));
  });

  test("a reused stream's leftovers (CREDIT, BLOCKED) are dropped up to the next connection's first frame", () => {
    const opened = encodeFrameHeader(FrameType.Opened, 0);
    const leftovers = Buffer.concat([encodeFrameHeader(FrameType.Credit, 9), encodeFrameHeader(FrameType.Blocked, 0)]);
    expect(dropLeftovers(Buffer.concat([leftovers, opened]))).toEqual(opened);
    expect(dropLeftovers(leftovers.subarray(0, 7))).toBeUndefined();
    expect(dropLeftovers(Buffer.from("A"))).toEqual(Buffer.from("A"));
    expect(dropLeftovers(Buffer.alloc(0))).toEqual(Buffer.alloc(0));
  });

  test("a DONE still owed (early reuse): the last connection's CREDIT and BLOCKED before it are dropped, anything else is refused", () => {
    const done = encodeFrameHeader(FrameType.Done, 0);
    const leftovers = Buffer.concat([encodeFrameHeader(FrameType.Credit, 9), encodeFrameHeader(FrameType.Blocked, 0)]);
    const next = Buffer.concat([encodeFrameHeader(FrameType.Data, 2), Buffer.from("hi")]);
    expect(afterOwedDone(Buffer.concat([leftovers, done, next]))).toEqual(next);
    expect(afterOwedDone(Buffer.concat([done, next]))).toEqual(next);
    expect(afterOwedDone(done)).toEqual(Buffer.alloc(0));
    // Not there yet: nothing, a leftover, half a DONE.
    expect(afterOwedDone(Buffer.alloc(0))).toBeUndefined();
    expect(afterOwedDone(leftovers)).toBeUndefined();
    expect(afterOwedDone(Buffer.concat([leftovers, done.subarray(0, 3)]))).toBeUndefined();
    // A frame of the next connection before the DONE: the host broke the protocol.
    expect(() => afterOwedDone(next)).toThrow(/before the last one's DONE/);
    expect(() => afterOwedDone(Buffer.concat([leftovers, encodeFrameHeader(FrameType.Eof, 0)]))).toThrow(/before the last one's DONE/);
  });

  test("OwedDone holds what comes in slices until the DONE, passes what follows it, then everything as it comes", () => {
    const leftovers = Buffer.concat([encodeFrameHeader(FrameType.Credit, 9), encodeFrameHeader(FrameType.Done, 0)]);
    const next = Buffer.concat([encodeFrameHeader(FrameType.Data, 2), Buffer.from("hi")]);
    const owed = new OwedDone(true);
    expect(owed.pass(leftovers.subarray(0, 7))).toBeUndefined();
    expect(owed.owed).toBe(true);
    expect(owed.held).toEqual(leftovers.subarray(0, 7));
    expect(owed.pass(Buffer.concat([leftovers.subarray(7), next]))).toEqual(next);
    expect(owed.owed).toBe(false);
    expect(owed.pass(next)).toBe(next);
    expect(new OwedDone(false).pass(next)).toBe(next);
    expect(() => new OwedDone(true).pass(next)).toThrow(/before the last one's DONE/);
  });

  test("a refusal carries the reason and the shadow's sentence", () => {
    expect(readAll([encodeRefused("refused", "connection refused")]).seen).toEqual(["refused:refused:connection refused"]);
  });

  test("unknown types and empty or oversized DATA frames are protocol errors", () => {
    expect(() => readAll([encodeFrameHeader(99 as FrameType, 0)])).toThrow(/unknown frame type 99/);
    expect(() => readAll([encodeFrameHeader(FrameType.Data, 0)])).toThrow(/DATA frame of 0 bytes/);
    expect(() => readAll([encodeFrameHeader(FrameType.Data, 16 * 1024 * 1024)])).toThrow(/DATA frame/);
  });
});

describe("credit", () => {
  test("returned in quarter-window batches, as the consumer uses what arrived", () => {
    const credit = new CreditReturn(1000, 4000);
    expect(credit.arrived(600)).toBe(true);
    expect(credit.due(100)).toBe(0); // a batch is 250
    expect(credit.due(300)).toBe(300);
    expect(credit.due(300)).toBe(0);
    expect(credit.arrived(700)).toBe(true); // 1000 outstanding: exactly the window
    expect(credit.arrived(1)).toBe(false); // the sender overran what it was given
  });

  test("when the sender is nearly dry, even a small amount goes back", () => {
    const credit = new CreditReturn(1000, 4000);
    credit.arrived(900);
    expect(credit.due(100)).toBe(100); // 100 < batch, but only 100 of credit was left with the sender
  });

  test("BLOCKED doubles the window only while the consumer keeps up, up to the maximum", () => {
    const credit = new CreditReturn(1000, 3000);
    credit.arrived(1000);
    expect(credit.blocked(400)).toBe(400); // consumer behind: what it used goes back, no growth
    expect(credit.currentWindow).toBe(1000);
    expect(credit.blocked(1000)).toBe(600 + 1000); // everything used: the window doubles
    expect(credit.currentWindow).toBe(2000);
    expect(credit.arrived(2000)).toBe(true); // the grown window may be used whole
    expect(credit.blocked(3000)).toBe(2000 + 1000); // capped at the maximum
    expect(credit.currentWindow).toBe(3000);
    expect(credit.blocked(3000)).toBe(0);
  });
});
