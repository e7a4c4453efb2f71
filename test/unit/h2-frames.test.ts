// The router's HTTP/2 frame helpers (shadow/router/h2-frames.ts): cutting a byte stream into frames
// however the reads split it, and the frames the relay writes or reads fields from.

import { describe, expect, test } from "bun:test";
import { encodeHeaderBlock, HpackDecoder } from "../../core/protocol/hpack.ts";
import {
  FRAME_HEADER_BYTES,
  Flag,
  FrameCutter,
  FrameType,
  dataFrame,
  dataOf,
  frameHeader,
  headersFragment,
  headersFrames,
  settingsOf,
  windowUpdateFrame,
} from "../../shadow/router/h2-frames.ts";

interface Seen {
  type: number;
  flags: number;
  streamId: number;
  payload: string;
}

function cutAll(stream: Buffer, sizes: (i: number) => number): Seen[] {
  const cutter = new FrameCutter();
  const seen: Seen[] = [];
  let at = 0;
  for (let i = 0; at < stream.length; i++) {
    const n = Math.max(1, sizes(i));
    cutter.push(stream.subarray(at, at + n), (buffer, start, end, type, flags, streamId) =>
      seen.push({ type, flags, streamId, payload: buffer.subarray(start + FRAME_HEADER_BYTES, end).toString("hex") }),
    );
    at += n;
  }
  return seen;
}

describe("h2 frames", () => {
  const frames = [
    windowUpdateFrame(0, 1_000_000),
    headersFrames(1, encodeHeaderBlock([[":path", "/x"], ["x-big", "y".repeat(40_000)]]), false),
    dataFrame(1, Buffer.alloc(20_000, 7), true),
    dataFrame(3, Buffer.alloc(0), true),
    Buffer.concat([frameHeader(3, 0xfa, 0, 5), Buffer.from("ext")]), // an unknown type passes like any frame
  ];
  const stream = Buffer.concat(frames);
  const whole = cutAll(stream, () => stream.length);

  test("frames come out whole and the same, whatever the reads' sizes", () => {
    expect(whole.map((f) => f.type)).toEqual([FrameType.WINDOW_UPDATE, FrameType.HEADERS, FrameType.CONTINUATION, FrameType.CONTINUATION, FrameType.DATA, FrameType.DATA, 0xfa]);
    for (const size of [1, 2, 5, 8, 9, 10, 13, 4096, 16_393, 16_394, 65_536]) expect(cutAll(stream, () => size)).toEqual(whole);
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % 30_000;
    for (let run = 0; run < 20; run++) expect(cutAll(stream, random)).toEqual(whole);
  });

  test("a header block larger than a frame is split into HEADERS and CONTINUATIONs that decode back", () => {
    const block = encodeHeaderBlock([[":status", "200"], ["x-big", "z".repeat(40_000)]]);
    const framed = headersFrames(9, block, true);
    const seen = cutAll(framed, () => framed.length);
    expect(seen.map((f) => [f.type, f.flags, f.streamId])).toEqual([
      [FrameType.HEADERS, Flag.END_STREAM, 9],
      [FrameType.CONTINUATION, 0, 9],
      [FrameType.CONTINUATION, Flag.END_HEADERS, 9],
    ]);
    const joined = Buffer.concat(seen.map((f) => Buffer.from(f.payload, "hex")));
    expect(new HpackDecoder().decode(joined)).toEqual([[":status", "200"], ["x-big", "z".repeat(40_000)]]);
  });

  test("padding and priority fields are taken off, and bad padding is refused", () => {
    const padded = Buffer.concat([Buffer.from([3]), Buffer.from("abc"), Buffer.alloc(3)]);
    expect(dataOf(padded, Flag.PADDED).toString()).toBe("abc");
    expect(dataOf(Buffer.from("abc"), 0).toString()).toBe("abc");
    expect(() => dataOf(Buffer.from([5, 1, 2]), Flag.PADDED)).toThrow();
    const withPriority = Buffer.concat([Buffer.from([2]), Buffer.alloc(5), Buffer.from("hb"), Buffer.alloc(2)]);
    expect(headersFragment(withPriority, Flag.PADDED | Flag.PRIORITY).toString()).toBe("hb");
    expect(() => headersFragment(Buffer.from([9, 0]), Flag.PADDED)).toThrow();
  });

  test("SETTINGS are read as (id, value) pairs; a length off the 6-byte grid is refused", () => {
    const payload = Buffer.alloc(12);
    payload.writeUInt16BE(4, 0);
    payload.writeUInt32BE(1 << 20, 2);
    payload.writeUInt16BE(5, 6);
    payload.writeUInt32BE(32_768, 8);
    expect(settingsOf(payload)).toEqual([
      [4, 1 << 20],
      [5, 32_768],
    ]);
    expect(() => settingsOf(Buffer.alloc(5))).toThrow();
  });
});
