import { describe, expect, test } from "bun:test";
import { constants, inflateSync } from "node:zlib";
import {
  FLAG_FIN,
  FrameDecoder,
  HeaderBlockWriter,
  encodeDataFrames,
  encodeDataHeader,
  encodeGoAway,
  encodePing,
  encodeRstStream,
  encodeSynStream,
} from "../../core/kube/spdy.ts";
import { forwardErrorText, summarizeForwardError } from "../../core/kube/portforward-spdy.ts";

/** What a FrameDecoder reported, in order. */
function decodeAll(chunks: Buffer[]) {
  const events: ({ kind: "data"; stream: number; payload: Buffer; fin: boolean } | { kind: "control"; type: number; flags: number; body: Buffer })[] = [];
  const decoder = new FrameDecoder({
    data: (stream, payload, fin) => events.push({ kind: "data", stream, payload, fin }),
    control: (type, flags, body) => events.push({ kind: "control", type, flags, body: Buffer.from(body) }),
  });
  for (const chunk of chunks) decoder.push(chunk);
  return events;
}

/** A header block as SPDY/3 lays it out before compression. */
function parseHeaderBlock(raw: Buffer): [string, string][] {
  const pairs: [string, string][] = [];
  let at = 4;
  for (let i = 0; i < raw.readUInt32BE(0); i++) {
    const nameLength = raw.readUInt32BE(at);
    const name = raw.subarray(at + 4, at + 4 + nameLength).toString();
    at += 4 + nameLength;
    const valueLength = raw.readUInt32BE(at);
    pairs.push([name, raw.subarray(at + 4, at + 4 + valueLength).toString()]);
    at += 4 + valueLength;
  }
  return pairs;
}

describe("header blocks", () => {
  test("one zlib stream across frames that any inflater reads, each block ending on a sync flush", () => {
    const writer = new HeaderBlockWriter();
    const first = writer.encode([
      ["streamType", "error"],
      ["port", "2222"],
      ["requestID", "0"],
    ]);
    const second = writer.encode([["streamtype", "data"]]);
    expect([...first.subarray(0, 2)]).toEqual([0x78, 0x01]); // zlib header once, no preset dictionary
    expect(second[0]).toBe(0x00); // no second zlib header: the same stream goes on
    for (const block of [first, second]) expect([...block.subarray(-5)]).toEqual([0, 0, 0, 0xff, 0xff]);
    // The first block alone, then both: each frame's bytes are whole as the server reads them.
    const one = inflateSync(first, { finishFlush: constants.Z_SYNC_FLUSH });
    expect(parseHeaderBlock(one)).toEqual([
      ["streamtype", "error"],
      ["port", "2222"],
      ["requestid", "0"],
    ]);
    const both = inflateSync(Buffer.concat([first, second]), { finishFlush: constants.Z_SYNC_FLUSH });
    expect(parseHeaderBlock(both.subarray(one.length))).toEqual([["streamtype", "data"]]);
  });
});

describe("frames we send", () => {
  test("SYN_STREAM: control bit, version 3, type 1, stream id, priority and slot, then the header block", () => {
    const block = new HeaderBlockWriter().encode([["port", "80"]]);
    const frame = encodeSynStream(5, block);
    expect(frame.readUInt16BE(0)).toBe(0x8003);
    expect(frame.readUInt16BE(2)).toBe(1);
    expect(frame.readUInt32BE(4)).toBe(10 + block.length); // flags 0, length
    expect(frame.readUInt32BE(8)).toBe(5);
    expect(frame.readUInt32BE(12)).toBe(0); // associated-to stream
    expect([frame[16], frame[17]]).toEqual([0, 0]);
    expect(frame.subarray(18)).toEqual(block);
  });

  test("RST_STREAM, PING and GOAWAY carry their fields big-endian", () => {
    const rst = encodeRstStream(7, 5);
    expect([rst.readUInt16BE(2), rst.readUInt32BE(4), rst.readUInt32BE(8), rst.readUInt32BE(12)]).toEqual([3, 8, 7, 5]);
    const ping = encodePing(0xfffffffe);
    expect([ping.readUInt16BE(2), ping.readUInt32BE(4), ping.readUInt32BE(8)]).toEqual([6, 4, 0xfffffffe]);
    const away = encodeGoAway(9);
    expect([away.readUInt16BE(2), away.readUInt32BE(8), away.readUInt32BE(12)]).toEqual([7, 9, 0]);
  });

  test("data: a FIN-only frame is 8 bytes with flag 1 and length 0", () => {
    expect([...encodeDataHeader(3, 0, true)]).toEqual([0, 0, 0, 3, FLAG_FIN, 0, 0, 0]);
    expect(encodeDataHeader(3, 0x123456).readUInt32BE(4)).toBe(0x123456);
  });

  test("chunks are packed into frames of at most `max` bytes, in order, after the headroom", () => {
    const chunks = [Buffer.from("abcde"), Buffer.from("fghijklmn"), Buffer.from("op")];
    const frames = encodeDataFrames(9, chunks, 6, 3);
    expect(frames.map((f) => f.length)).toEqual([3 + 8 + 6, 3 + 8 + 6, 3 + 8 + 4]);
    for (const frame of frames) {
      expect(frame.readUInt32BE(3)).toBe(9);
      expect(frame.readUInt32BE(7)).toBe(frame.length - 11);
    }
    expect(Buffer.concat(frames.map((f) => f.subarray(11))).toString()).toBe("abcdefghijklmnop");
    expect(encodeDataFrames(1, [Buffer.alloc(0)], 10)).toEqual([]);
  });
});

describe("frames we read", () => {
  const reply = Buffer.concat([Buffer.from([0x80, 0x03, 0x00, 0x02, 0x00, 0x00, 0x00, 0x08]), Buffer.from([0, 0, 0, 3, 1, 2, 3, 4])]);
  const data = Buffer.concat([encodeDataHeader(3, 6), Buffer.from("hello!")]);
  const fin = encodeDataHeader(1, 0, true);
  const stream = Buffer.concat([reply, data, fin]);

  test("control frames whole, data as it comes, FIN on the last piece", () => {
    const whole = decodeAll([stream]);
    expect(whole).toHaveLength(3);
    expect(whole[0]).toMatchObject({ kind: "control", type: 2, flags: 0 });
    expect((whole[0] as { body: Buffer }).body.readUInt32BE(0)).toBe(3);
    expect(whole[1]).toMatchObject({ kind: "data", stream: 3, fin: false });
    expect((whole[1] as { payload: Buffer }).payload.toString()).toBe("hello!");
    expect(whole[2]).toMatchObject({ kind: "data", stream: 1, fin: true, payload: Buffer.alloc(0) });
  });

  test("split at every byte: the same frames, data in pieces that add up", () => {
    const bytes = [...stream].map((b) => Buffer.from([b]));
    const events = decodeAll(bytes);
    const controls = events.filter((e) => e.kind === "control");
    expect(controls).toHaveLength(1);
    const pieces = events.filter((e): e is Extract<(typeof events)[number], { kind: "data" }> => e.kind === "data" && e.stream === 3);
    expect(Buffer.concat(pieces.map((p) => p.payload)).toString()).toBe("hello!");
    expect(pieces.every((p) => !p.fin)).toBe(true);
    expect(events.at(-1)).toMatchObject({ kind: "data", stream: 1, fin: true });
  });

  test("data payloads are views of what arrived, not copies", () => {
    const chunk = Buffer.from(data);
    const [event] = decodeAll([chunk]);
    chunk[8] = "J".charCodeAt(0);
    expect((event as { payload: Buffer }).payload.toString()).toBe("Jello!");
  });

  test("a control frame of another SPDY version is refused", () => {
    expect(() => decodeAll([Buffer.from([0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1])])).toThrow(/version 2/);
  });
});

describe("what the node says when a forward fails", () => {
  test("older runtimes write text, newer ones JSON; either way the cause is what is kept", () => {
    const text =
      'error forwarding port 9999 to pod abc, uid : failed to execute portforward in network namespace "/var/run/netns/cni-1": failed to connect to localhost:9999 inside namespace "abc", IPv4: dial tcp4 127.0.0.1:9999: connect: connection refused IPv6 dial tcp6: address localhost: no suitable address found ';
    expect(summarizeForwardError(text)).toBe("nothing listens on port 9999 in the pod (connection refused)");
    const json = JSON.stringify({ closeConnection: true, message: text.trim() }) + "\n";
    expect(forwardErrorText(json)).toBe(text.trim());
    expect(summarizeForwardError(json)).toBe("nothing listens on port 9999 in the pod (connection refused)");
    expect(forwardErrorText("{not json")).toBe("{not json");
  });
});
