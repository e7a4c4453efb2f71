import { describe, expect, test } from "bun:test";
import { ChannelDecoder, encodeDataFrames, summarizeForwardError } from "../../core/kube/portforward.ts";

const bytes = (n: number, seed = 0) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff));

describe("data frames (client -> server)", () => {
  test("one small chunk becomes one frame on channel 0", () => {
    const frames = encodeDataFrames([Buffer.from("hello")]);
    expect(frames).toHaveLength(1);
    expect([...frames[0]!]).toEqual([0, ...Buffer.from("hello")]);
  });

  test("several chunks are packed together and split at the frame limit, bytes in order", () => {
    const chunks = [bytes(5, 1), bytes(9, 2), bytes(3, 3)];
    const frames = encodeDataFrames(chunks, 8);
    expect(frames.map((f) => f.length)).toEqual([9, 9, 2]);
    for (const f of frames) expect(f[0]).toBe(0);
    expect(Buffer.concat(frames.map((f) => f.subarray(1)))).toEqual(Buffer.concat(chunks));
  });

  test("nothing in, nothing out", () => {
    expect(encodeDataFrames([])).toEqual([]);
    expect(encodeDataFrames([Buffer.alloc(0)])).toEqual([]);
  });
});

describe("channel decoding (server -> client)", () => {
  test("the first two bytes of each channel (the port) are dropped once", () => {
    const d = new ChannelDecoder();
    expect(d.decode(Buffer.from([0, 0x16, 0x00]))).toEqual({ channel: 0, payload: Buffer.alloc(0) });
    expect(d.decode(Buffer.from([1, 0x16, 0x00]))).toEqual({ channel: 1, payload: Buffer.alloc(0) });
    expect(d.decode(Buffer.from([0, 1, 2, 3]))).toEqual({ channel: 0, payload: Buffer.from([1, 2, 3]) });
    expect(d.decode(Buffer.from([1, ...Buffer.from("boom")]))!.payload.toString()).toBe("boom");
  });

  test("a port prefix split over messages, or sharing a message with data", () => {
    const d = new ChannelDecoder();
    expect(d.decode(Buffer.from([0, 0x50]))!.payload.length).toBe(0);
    expect(d.decode(Buffer.from([0, 0x00, 9, 8]))!.payload).toEqual(Buffer.from([9, 8]));
    const e = new ChannelDecoder();
    expect(e.decode(Buffer.from([0, 0x50, 0x00, 7]))!.payload).toEqual(Buffer.from([7]));
  });

  test("payloads are views of the message, not copies", () => {
    const d = new ChannelDecoder();
    d.decode(Buffer.from([0, 1, 0]));
    const message = Buffer.from([0, 42, 43]);
    const { payload } = d.decode(message)!;
    message[1] = 99;
    expect(payload[0]).toBe(99);
  });

  test("an empty message is ignored", () => {
    expect(new ChannelDecoder().decode(Buffer.alloc(0))).toBeUndefined();
  });
});

describe("error channel text", () => {
  test("the kubelet's refusal is reduced to its cause", () => {
    const kubelet =
      'error forwarding port 9999 to pod 6610f960, uid : failed to execute portforward in network namespace "/var/run/netns/cni-65da": failed to connect to localhost:9999 inside namespace "6610f960", IPv4: dial tcp4 127.0.0.1:9999: connect: connection refused IPv6 dial tcp6: address localhost: no suitable address found';
    expect(summarizeForwardError(kubelet)).toBe("nothing listens on port 9999 in the pod (connection refused)");
  });

  test("other errors keep their first line", () => {
    expect(summarizeForwardError("\npod not running\nmore")).toBe("pod not running");
  });
});
