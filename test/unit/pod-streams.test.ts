// The pooling of streams to pods (core/kube/pod-streams.ts): one connection per pod and uid, one
// opening shared by the streams asked for meanwhile, its failure told to all of them, v4 giving no
// pod streams, close() while a connection opens, and the idle close. The port-forward itself is
// tested against the real API server in test/e2e/tunnel-paths.e2e.test.ts.

import { describe, expect, test } from "bun:test";
import { PassThrough, type Duplex } from "node:stream";
import { createPodStreams } from "../../core/kube/pod-streams.ts";
import type { PortForwardSession } from "../../core/kube/portforward.ts";
import type { Transport } from "../../core/kube/transport.ts";
import type { PodRef, PodStreams } from "../../core/plugin-api.ts";

const transport = {} as Transport;

/** A connection as openPortForwardSession gives it, whose opening the test settles by hand. */
class FakeConnection implements PortForwardSession {
  accepting = true;
  readonly streams: { port: number; first?: Buffer; stream: Duplex }[] = [];
  private markClosed!: () => void;
  readonly closed = new Promise<void>((resolve) => (this.markClosed = resolve));
  closeCalls = 0;
  open(port: number, first?: Buffer): Duplex {
    const stream = new PassThrough();
    this.streams.push({ port, first, stream });
    return stream;
  }
  close(): void {
    this.closeCalls++;
    this.accepting = false;
    this.markClosed();
  }
  destroyedWith: Error | undefined;
  destroy(error?: Error): void {
    this.destroyedWith = error;
    this.accepting = false;
    for (const { stream } of this.streams) stream.destroy(error);
    this.markClosed();
  }
  /** The server answers pings unless the test made it silent. */
  silent = false;
  private heardAt = performance.now();
  pings = 0;
  get silentMs(): number {
    return performance.now() - this.heardAt;
  }
  ping(): void {
    this.pings++;
    if (!this.silent) this.heardAt = performance.now();
  }
}

/** An opener whose calls wait until the test answers them: SPDY (a connection), v4 (none) or a failure. */
function opener() {
  const calls: { pod: string; port: number; answer(kind: "spdy" | "v4" | Error): FakeConnection | undefined }[] = [];
  const open = (_t: Transport, _ns: string, pod: string, port: number) =>
    new Promise<{ stream: Duplex; session?: PortForwardSession }>((resolve, reject) => {
      calls.push({
        pod,
        port,
        answer(kind) {
          if (kind instanceof Error) return void reject(kind);
          if (kind === "v4") return void resolve({ stream: new PassThrough() });
          const connection = new FakeConnection();
          resolve({ stream: connection.open(port), session: connection });
          return connection;
        },
      });
    });
  return { calls, open };
}

/** An opener of connections with no stream (warm), answered by hand: a connection, no SPDY, or a failure. */
function idleOpener() {
  const calls: { pod: string; answer(outcome: "spdy" | "no-spdy" | Error): FakeConnection | undefined }[] = [];
  const openIdle = (_t: Transport, _ns: string, pod: string, _port: number) =>
    new Promise<PortForwardSession | "no-spdy">((resolve, reject) => {
      calls.push({
        pod,
        answer(outcome) {
          if (outcome instanceof Error) return void reject(outcome);
          if (outcome === "no-spdy") return void resolve("no-spdy");
          const connection = new FakeConnection();
          resolve(connection);
          return connection;
        },
      });
    });
  return { calls, openIdle };
}

const pod = { namespace: "ns", name: "p", uid: "u1" };
const turn = () => new Promise((resolve) => setImmediate(resolve));

/** The first stream, on a connection the test answers as SPDY. */
async function firstStream(options: { idleCloseMs?: number; livenessMs?: number }) {
  const { calls, open } = opener();
  const pods = createPodStreams(transport, { openSession: open, ...options });
  const asked = pods.open(pod, 80);
  await turn();
  const connection = calls[0]!.answer("spdy")!;
  return { calls, pods, connection, stream: (await asked)! };
}

/** Pod streams whose openings, with a stream (`calls`) or without (`idle.calls`, warm), the test answers. */
function warmablePods(options: { idleCloseMs?: number; warmWaitMs?: number } = {}) {
  const { calls, open } = opener();
  const idle = idleOpener();
  return { calls, idle, pods: createPodStreams(transport, { openSession: open, openIdleSession: idle.openIdle, ...options }) };
}

/** Opens a stream that must ask for a connection of its own (the `count`th), and gets it. */
async function opensNewConnection(pods: PodStreams, calls: ReturnType<typeof opener>["calls"], ref: PodRef, count: number) {
  const asked = pods.open(ref, 80);
  await turn();
  expect(calls.length).toBe(count);
  calls[count - 1]!.answer("spdy");
  expect(await asked).toBeDefined();
}

describe("pod streams", () => {
  test("streams asked for while the pod's connection opens share that one connection", async () => {
    const { calls, open } = opener();
    const pods = createPodStreams(transport, { openSession: open });
    const asked = [pods.open(pod, 80, Buffer.from("a")), pods.open(pod, 80, Buffer.from("b")), pods.open(pod, 81)];
    await turn();
    expect(calls.length).toBe(1);
    const connection = calls[0]!.answer("spdy")!;
    const streams = await Promise.all(asked);
    expect(streams.every((s) => s !== undefined)).toBe(true);
    // The opener's own stream plus one per waiter, each with its first bytes in the opening.
    expect(connection.streams.map((s) => [s.port, s.first?.toString()])).toEqual([[80, undefined], [80, "b"], [81, undefined]]);
    expect(pods.usable).toBe(true);
    pods.close();
  });

  test("a failed opening is every waiter's failure, and the next stream tries again", async () => {
    const { calls, open } = opener();
    const pods = createPodStreams(transport, { openSession: open });
    const asked = [pods.open(pod, 80), pods.open(pod, 80)].map((p) => p.then(() => "opened", (e: Error) => e.message));
    await turn();
    calls[0]!.answer(new Error("pods \"p\" is forbidden"));
    expect(await Promise.all(asked)).toEqual(['pods "p" is forbidden', 'pods "p" is forbidden']);
    expect(calls.length).toBe(1);
    await opensNewConnection(pods, calls, pod, 2);
    pods.close();
  });

  test("an API server that speaks only v4 gives no pod streams, and is asked once", async () => {
    const { calls, open } = opener();
    const pods = createPodStreams(transport, { openSession: open });
    const asked = [pods.open(pod, 80), pods.open({ ...pod, name: "q" }, 80)];
    await turn();
    calls[0]!.answer("v4");
    expect(await asked[0]).toBeUndefined();
    expect(pods.usable).toBe(false);
    // The other pod's opening was already on its way; its answer is v4 too, and nothing more is asked.
    calls[1]!.answer("v4");
    expect(await asked[1]).toBeUndefined();
    expect(await pods.open(pod, 80)).toBeUndefined();
    expect(calls.length).toBe(2);
  });

  test("close() while a connection opens: the stream fails, the connection is closed", async () => {
    const { calls, open } = opener();
    const pods = createPodStreams(transport, { openSession: open });
    const asked = pods.open(pod, 80).then(() => "opened", (e: Error) => e.message);
    await turn();
    pods.close();
    const connection = calls[0]!.answer("spdy")!;
    expect(await asked).toBe("pod streams are closed");
    await connection.closed;
    expect(connection.streams[0]!.stream.destroyed).toBe(true);
    expect(pods.usable).toBe(false);
  });

  test("a pod recreated under the same name (another uid) gets a connection of its own", async () => {
    const { calls, open } = opener();
    const pods = createPodStreams(transport, { openSession: open });
    const first = pods.open(pod, 80);
    await turn();
    calls[0]!.answer("spdy");
    await first;
    await opensNewConnection(pods, calls, { ...pod, uid: "u2" }, 2);
    pods.close();
  });

  test("a connection that stops answering is asked, then torn down, and the next stream opens a new one", async () => {
    const { calls, pods, connection, stream } = await firstStream({ livenessMs: 10 });
    const failed = new Promise<Error>((resolve) => stream.once("error", resolve));
    // Answering: asked now and then, kept.
    while (connection.pings < 2) await turn();
    expect(connection.destroyedWith).toBeUndefined();
    connection.silent = true;
    expect((await failed).message).toBe("the port-forward to ns/p went silent");
    await opensNewConnection(pods, calls, pod, 2);
    pods.close();
  });

  test("a connection whose streams have all closed is closed once idle, and the next stream opens a new one", async () => {
    const { calls, pods, connection, stream } = await firstStream({ idleCloseMs: 20 });
    const another = (await pods.open(pod, 81))!;
    expect(calls.length).toBe(1);
    stream.destroy();
    await turn();
    expect(connection.closeCalls).toBe(0); // one stream still open
    another.destroy();
    await connection.closed;
    expect(connection.closeCalls).toBe(1);
    await opensNewConnection(pods, calls, pod, 2);
    pods.close();
  });

  test("warm(): the first stream rides the connection opened ahead, with its first bytes, and opens none of its own", async () => {
    const { calls, idle, pods } = warmablePods();
    pods.warm(pod, 80);
    pods.warm(pod, 80); // asked twice: still one connection
    const asked = pods.open(pod, 80, Buffer.from("GET /"));
    await turn();
    expect(idle.calls.length).toBe(1);
    const connection = idle.calls[0]!.answer("spdy")!;
    expect(await asked).toBeDefined();
    expect(connection.streams.map((s) => [s.port, s.first?.toString()])).toEqual([[80, "GET /"]]);
    expect(calls.length).toBe(0);
    pods.close();
    await connection.closed;
    expect(connection.closeCalls).toBe(1);
  });

  test("warm(): a failed warm-up fails no stream (the stream opens its own); an unused one closes once idle", async () => {
    const { calls, idle, pods } = warmablePods({ idleCloseMs: 20 });
    pods.warm(pod, 80);
    const asked = pods.open(pod, 80);
    await turn();
    idle.calls[0]!.answer(new Error("upgrade refused"));
    await turn();
    await turn();
    expect(calls.length).toBe(1);
    calls[0]!.answer("spdy");
    expect(await asked).toBeDefined();
    const other = { ...pod, name: "q", uid: "u2" };
    pods.warm(other, 80);
    await turn();
    const unused = idle.calls[1]!.answer("spdy")!;
    await unused.closed;
    expect(unused.closeCalls).toBe(1);
    await opensNewConnection(pods, calls, other, 2);
    pods.close();
  });

  test("warm(): an upgrade that hangs keeps its caller waiting only so long; a stream asked for then still rides it", async () => {
    const { calls, idle, pods } = warmablePods({ warmWaitMs: 30 });
    const started = performance.now();
    await pods.warm(pod, 80);
    expect(performance.now() - started).toBeGreaterThanOrEqual(25);
    expect(idle.calls.length).toBe(1);
    expect(pods.usable).toBe(true);
    const asked = pods.open(pod, 80, Buffer.from("GET"));
    await turn();
    const connection = idle.calls[0]!.answer("spdy")!;
    expect(await asked).toBeDefined();
    expect(calls.length).toBe(0);
    expect(connection.streams.map((s) => [s.port, s.first?.toString()])).toEqual([[80, "GET"]]);
    pods.close();
  });

  test("warm(): an API server without SPDY makes the pod streams unusable before any stream is asked for", async () => {
    const { calls, idle, pods } = warmablePods();
    expect(pods.usable).toBe(true);
    const warmed = pods.warm(pod, 80);
    await turn();
    idle.calls[0]!.answer("no-spdy");
    await warmed;
    expect(pods.usable).toBe(false);
    expect(await pods.open(pod, 80)).toBeUndefined();
    expect(calls.length).toBe(0);
  });

  test("warm(): a stream asked for while the warm-up learns there is no SPDY opens nothing (no stray connection to the pod)", async () => {
    const { calls, idle, pods } = warmablePods();
    const warmed = pods.warm(pod, 80);
    const asked = pods.open(pod, 80, Buffer.from("GET /"));
    await turn();
    idle.calls[0]!.answer("no-spdy");
    expect(await asked).toBeUndefined();
    await warmed;
    expect(calls.length).toBe(0);
  });
});
