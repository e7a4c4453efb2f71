import { describe, expect, test } from "bun:test";
import { FramePool, forEachFrame, packFrames, type FrameFormat } from "../../core/protocol/frame-packing.ts";
import { DirectFrameReader, packDataFrames, encodeDataFrames, directFramePool } from "../../core/protocol/direct-streams.ts";

const tagged = (max: number): FrameFormat => ({
  maxPayload: max,
  headerBytes: 2,
  writeHeader(frame, at, length) {
    frame[at] = 0xee;
    frame[at + 1] = length;
  },
});

describe("frame packing", () => {
  test("frames are cut at the maximum, across chunk boundaries, in order", () => {
    const cuts: string[] = [];
    forEachFrame([Buffer.from("abc"), Buffer.from("defgh"), Buffer.alloc(0), Buffer.from("ij")], 4, (pieces, length) =>
      cuts.push(`${length}:${pieces.map((p) => Buffer.from(p).toString()).join("|")}`),
    );
    expect(cuts).toEqual(["4:abc|d", "4:efgh", "2:ij"]);
  });

  test("payload pieces are views of the chunks, never copies", () => {
    const chunk = Buffer.from("0123456789");
    const seen: Uint8Array[] = [];
    forEachFrame([chunk], 4, (pieces) => seen.push(...pieces));
    expect(seen.every((piece) => piece.buffer === chunk.buffer)).toBe(true);
  });

  test("packed frames: headroom, header, payload in one buffer", () => {
    const frames = packFrames(tagged(5), [Buffer.from("hello wor"), Buffer.from("ld")], { headroom: 3 });
    expect(frames.map((f) => f.length)).toEqual([3 + 2 + 5, 3 + 2 + 5, 3 + 2 + 1]);
    expect(frames.map((f) => f[4])).toEqual([5, 5, 1]);
    expect(frames.map((f) => f.subarray(5).toString()).join("")).toBe("hello world");
    expect(packFrames(tagged(5), [])).toEqual([]);
  });

  test("big frames come from the pool, and a given-back buffer serves the next frame", () => {
    const pool = new FramePool(2 + 64 * 1024, 2);
    const [first] = packFrames(tagged(64 * 1024), [Buffer.alloc(40_000, 1)], { pool });
    pool.give(first!);
    expect(pool.idle).toBe(1);
    const [second] = packFrames(tagged(64 * 1024), [Buffer.alloc(30_000, 2)], { pool });
    expect(second!.buffer).toBe(first!.buffer);
    expect(pool.idle).toBe(0);
    // Small frames are not pooled, and what the pool did not make is not taken in.
    const [small] = packFrames(tagged(64 * 1024), [Buffer.from("x")], { pool });
    pool.give(small!);
    pool.give(Buffer.alloc(2 + 64 * 1024));
    expect(pool.idle).toBe(0);
  });

  test("the pool keeps at most its share of free buffers", () => {
    const pool = new FramePool(32 * 1024, 2);
    const taken = [pool.take(), pool.take(), pool.take()];
    for (const buffer of taken) pool.give(buffer);
    expect(pool.idle).toBe(2);
  });

  test("direct DATA frames, packed or as views, read back the same", () => {
    const payload = Buffer.from(Array.from({ length: 700_000 }, (_, i) => i % 251));
    for (const frames of [packDataFrames([payload.subarray(0, 1000), payload.subarray(1000)], directFramePool()), encodeDataFrames([payload])]) {
      const got: Buffer[] = [];
      const reader = new DirectFrameReader({
        data: (p) => got.push(Buffer.from(p)),
        eof() {},
        credit() {},
        blocked() {},
        opened() {},
        refused() {},
        done() {},
      });
      for (const frame of frames) reader.push(frame);
      expect(Buffer.concat(got).equals(payload)).toBe(true);
    }
  });
});
