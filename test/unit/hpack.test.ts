// HPACK (core/protocol/hpack.ts), shared by the laptop's traffic tap and the shadow's h2c relay.

import { describe, expect, test } from "bun:test";
import { HpackDecoder, encodeHeaderBlock, type HeaderList } from "../../core/protocol/hpack.ts";

describe("hpack", () => {
  const hex = (text: string) => Buffer.from(text.replace(/\s+/g, ""), "hex");

  test("RFC 7541 C.4: requests with Huffman coding and a shared dynamic table", () => {
    const decoder = new HpackDecoder();
    expect(decoder.decode(hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"))).toEqual([
      [":method", "GET"],
      [":scheme", "http"],
      [":path", "/"],
      [":authority", "www.example.com"],
    ]);
    expect(decoder.decode(hex("8286 84be 5886 a8eb 1064 9cbf"))).toEqual([
      [":method", "GET"],
      [":scheme", "http"],
      [":path", "/"],
      [":authority", "www.example.com"],
      ["cache-control", "no-cache"],
    ]);
    expect(decoder.decode(hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"))).toEqual([
      [":method", "GET"],
      [":scheme", "https"],
      [":path", "/index.html"],
      [":authority", "www.example.com"],
      ["custom-key", "custom-value"],
    ]);
  });
});

describe("hpack encoder", () => {
  test("static pairs are one index, static names are indexed, the rest are literals; all decode back", () => {
    expect([...encodeHeaderBlock([[":method", "GET"]])]).toEqual([0x82]);
    expect([...encodeHeaderBlock([[":status", "200"]])]).toEqual([0x88]);
    const fields: HeaderList = [
      [":method", "POST"],
      [":scheme", "http"],
      [":path", "/grpc.health.v1.Health/Check"],
      [":authority", "echo.demo:8080"],
      ["content-type", "application/grpc"],
      // a static name past index 15 (its index takes a second byte) and a value past 127 bytes
      ["www-authenticate", "x".repeat(300)],
      ["te", "trailers"],
      ["version", "alice"],
      ["x-empty", ""],
      ["set-cookie", "a=1"],
      ["set-cookie", "b=2"],
    ];
    const block = encodeHeaderBlock(fields);
    const decoder = new HpackDecoder();
    expect(decoder.decode(block)).toEqual(fields);
    // Nothing went into the receiver's dynamic table: a block of another encoder still decodes after it.
    expect(decoder.decode(Buffer.from("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff".replace(/\s+/g, ""), "hex"))).toEqual([
      [":method", "GET"],
      [":scheme", "http"],
      [":path", "/"],
      [":authority", "www.example.com"],
    ]);
  });

  test("a name longer than 127 bytes and Latin-1 values survive the round trip", () => {
    const fields: HeaderList = [["x-" + "n".repeat(200), "caf\u00e9"]];
    expect(new HpackDecoder().decode(encodeHeaderBlock(fields))).toEqual(fields);
  });
});

describe("hpack decoder limits", () => {
  test("a table size update over the allowed size is refused", () => {
    const decoder = new HpackDecoder({ maxTableSize: 4096, maxListSize: 1 << 20 });
    expect(() => decoder.decode(Buffer.from([0x3f, 0x80, 0x20]))).toThrow(/dynamic table/); // 4096 + 31 = 4127
    expect(new HpackDecoder().decode(Buffer.from([0x20, 0x82]))).toEqual([[":method", "GET"]]);
  });

  test("a block that names one big entry many times is refused as it grows, not after", () => {
    const big = "b".repeat(4000);
    // Insert one 4 kB entry (literal with incremental indexing, new name), then refer to it 1000 times.
    const insert = encodeLiteralWithIndexing("x-big", big);
    const block = Buffer.concat([insert, Buffer.alloc(1000, 0xbe)]); // 0xbe: index 62, the newest dynamic entry
    expect(() => new HpackDecoder({ maxTableSize: 65536, maxListSize: 1 << 20 }).decode(block)).toThrow(/header list over/);
    expect(new HpackDecoder({ maxTableSize: 65536, maxListSize: 1 << 23 }).decode(block)).toHaveLength(1001);
  });

  test("never-indexed fields are read as such and written back as such", () => {
    const fields: HeaderList = [["authorization", "Bearer secret", true], ["x-plain", "1"]];
    const block = encodeHeaderBlock(fields);
    expect(block[0]! & 0xf0).toBe(0x10);
    expect(new HpackDecoder().decode(block)).toEqual(fields);
  });
});

/** A literal with incremental indexing and a new name, strings raw (RFC 7541 §6.2.1). */
function encodeLiteralWithIndexing(name: string, value: string): Buffer {
  const length = (n: number) => (n < 127 ? [n] : [127, ...sevenBitTail(n - 127)]);
  const sevenBitTail = (n: number): number[] => (n < 128 ? [n] : [(n & 0x7f) | 0x80, ...sevenBitTail(n >> 7)]);
  return Buffer.concat([Buffer.from([0x40, ...length(name.length)]), Buffer.from(name), Buffer.from(length(value.length)), Buffer.from(value)]);
}
