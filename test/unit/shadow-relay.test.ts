// The shadow's relay (shadow/direct-server.ts) on real loopback sockets, the host's side played by
// hand: what happens to a reused stream when its connection is over and the target misbehaves.

import { expect, test } from "bun:test";
import { FrameType, directFramePool, encodeDataFrames, encodeFrameHeader } from "../../core/protocol/direct-streams.ts";
import { relay } from "../../shadow/direct-server.ts";
import { socketPair } from "./tunnel-harness.ts";

test("a target that resets after both EOFs, with our writes to it still queued, leaves the reused stream alone", async () => {
  const stream = await socketPair(); // near: the shadow's end of the port-forward stream; far: the host's
  const target = await socketPair(); // near: the shadow's connection to the target; far: the target
  try {
    const handedBack = Promise.withResolvers<Buffer>();
    const resets: string[] = [];
    relay({
      socket: stream.near,
      target: target.near,
      window: 16 * 1024 * 1024,
      early: Buffer.alloc(0),
      framePool: directFramePool(),
      reset: (why) => resets.push(why),
      reuse: (rest) => handedBack.resolve(rest),
    });
    // The target answers and ends at once, and never reads: what the host sends stays queued here.
    target.far.pause();
    target.far.end("answer");
    // The host: 12 MiB, more than the sockets between us and the target hold, then its EOF.
    const upload = Buffer.alloc(12 * 1024 * 1024, 7);
    stream.far.write(Buffer.concat([...encodeDataFrames([upload]), encodeFrameHeader(FrameType.Eof, 0)]));
    // Both EOFs behind it, the relay hands the stream back at once, before any DONE (the host here
    // sends none), with nothing left unparsed.
    const rest = await handedBack.promise;
    expect(rest).toEqual(Buffer.alloc(0));
    // The target resets now, with our writes to it still queued: that concerns the target only.
    const targetClosed = new Promise((resolve) => target.near.once("close", resolve));
    target.far.resetAndDestroy();
    await targetClosed;
    expect(stream.near.destroyed).toBe(false);
    expect(resets).toEqual([]);
  } finally {
    stream.close();
    target.close();
  }
});
