import { describe, expect, test } from "bun:test";
import { PassThrough, type Duplex } from "node:stream";
import { firstBytes, greetedPortForward, untilListening, type PodStart } from "../../core/shadow/early-tunnel.ts";

/** A pod start whose kubelet report the test decides. */
function podStart() {
  let report!: () => void;
  let fail!: (error: Error) => void;
  const running = new Promise<any>((resolve, reject) => {
    report = () => resolve({ status: { podIP: "10.244.0.5" } });
    fail = reject;
  });
  running.catch(() => undefined);
  const start: PodStart = { running };
  return { start, report, fail };
}

describe("firstBytes: a stream that has answered, nothing consumed", () => {
  test("the first bytes stay for the next reader, and so does what follows", async () => {
    const stream = new PassThrough();
    setTimeout(() => stream.write("SSH-2.0-shadow\r\n"), 5);
    await firstBytes(stream, 1_000);
    let read = "";
    stream.on("data", (chunk) => (read += chunk));
    stream.write("more");
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(read).toBe("SSH-2.0-shadow\r\nmore");
  });

  test("a reader attached right away (same tick) still gets everything", async () => {
    const stream = new PassThrough();
    stream.write("abc");
    await firstBytes(stream, 1_000);
    let read = "";
    stream.on("data", (chunk) => (read += chunk));
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(read).toBe("abc");
  });

  test("an error, an end without bytes, or silence is a failure", async () => {
    const refused = new PassThrough();
    setTimeout(() => refused.destroy(new Error("connection refused")), 5);
    await expect(firstBytes(refused, 1_000)).rejects.toThrow("connection refused");
    const ended = new PassThrough();
    setTimeout(() => ended.end(), 5);
    await expect(firstBytes(ended, 1_000)).rejects.toThrow("closed before anything answered");
    await expect(firstBytes(new PassThrough(), 20)).rejects.toThrow("nothing answered within 20 ms");
  });

  test("greetedPortForward gives the stream up when it does not answer", async () => {
    const silent = new PassThrough();
    setTimeout(() => silent.end(), 5);
    await expect(greetedPortForward({ portForward: async () => silent }, "ns", "pod", 2222)).rejects.toThrow("closed before");
    expect(silent.destroyed).toBe(true);
  });
});

describe("untilListening: a new pod's port tried until it answers", () => {
  test("tries again until a try succeeds, before the kubelet has reported anything", async () => {
    const { start } = podStart();
    let tries = 0;
    const answered = new PassThrough();
    const stream = await untilListening(start, async () => {
      if (++tries < 4) throw new Error("connection refused");
      return answered;
    }, 1);
    expect(stream).toBe(answered);
    expect(tries).toBe(4);
  });

  test("the pod's own failure (its image) ends the tries with that failure", async () => {
    const { start, fail } = podStart();
    let tries = 0;
    const trying = untilListening(start, async () => {
      if (++tries === 2) fail(new Error("image x cannot be used: ErrImageNeverPull"));
      throw new Error("pod not found");
    }, 1);
    await expect(trying).rejects.toThrow("ErrImageNeverPull");
  });

  test("reported running, but not listening yet: tried again within the grace", async () => {
    const { start, report } = podStart();
    report();
    await start.running;
    const answered = new PassThrough();
    let tries = 0;
    const stream = await untilListening(start, async () => {
      if (++tries < 3) throw new Error("connection refused");
      return answered;
    }, 1, 60_000);
    expect(stream).toBe(answered);
    expect(tries).toBe(3);
  });

  test("once the kubelet reported the pod running and the grace is over, a failing try is a real failure", async () => {
    const { start, report } = podStart();
    report();
    await start.running;
    let tries = 0;
    await expect(untilListening(start, async (): Promise<Duplex> => {
      tries++;
      throw new Error("connection refused");
    }, 1, 20)).rejects.toThrow("connection refused");
    expect(tries).toBeGreaterThan(1);
  });
});
