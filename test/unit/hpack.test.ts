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
