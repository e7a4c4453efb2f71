// Streams straight to pod ports, the path kubectl port-forward takes, made cheaper per connection:
// one port-forward connection per pod carries every stream to it (SPDY), and a stream's bytes
// follow its opening without waiting for the kubelet's reply (kubectl waits for it, twice: the
// error stream, then the data stream); the first of them can go in the opening's own message. A
// new connection then costs one trip through the API server, the kubelet and the runtime, and its
// bytes take no hop but theirs.
// Where the API server speaks only the v4 protocol (one stream per WebSocket, no half-close), there
// are no pod streams: a client that sends its request and shuts its side down would lose the
// answer, so the caller takes another path (the tunnel carries half-close over SSH there).

import type { Duplex } from "node:stream";
import type { PodRef, PodStreams } from "../plugin-api.ts";
import { openIdlePortForwardSession, openPortForwardSession, spdyOffered, type PortForwardSession } from "./portforward.ts";
import type { Transport } from "./transport.ts";

/**
 * How long a pod's connection stays open with no stream on it. A pod a forward stopped picking (a
 * rollout replaced it) would otherwise keep its connection, and the kubelet its goroutines, until
 * the forward ends.
 */
export const POD_CONNECTION_IDLE_MS = 30_000;

/**
 * A pod's connection that has not heard from the server for this long is asked (a SPDY PING), and
 * torn down after three times as long. A link that died quietly (a laptop that slept, a Wi-Fi that
 * dropped) would otherwise keep taking new streams on a TCP connection whose retransmissions back
 * off to minutes; torn down, the next stream opens a new one at once.
 */
export const POD_LIVENESS_MS = 2_000;

/**
 * The longest warm() keeps its caller waiting: an upgrade that hangs leaves the choice of path to
 * the first stream (the attempt itself goes on).
 */
export const POD_WARM_WAIT_MS = 3_000;

/** A pod's connection, or its opening, which streams asked for meanwhile wait on. */
interface PodConnection {
  session: Promise<PortForwardSession | undefined>;
  /** Why the opening failed: told to the streams that waited on it, not retried for each. */
  failure?: unknown;
  streams: number;
  idle?: ReturnType<typeof setTimeout>;
}

const closedError = () => new Error("pod streams are closed");

export interface PodStreamsOptions {
  idleCloseMs?: number;
  livenessMs?: number;
  /** Opens a port-forward connection and its first stream (tests give their own). */
  openSession?: typeof openPortForwardSession;
  /** Opens a port-forward connection with no stream, for warm() (tests give their own). */
  openIdleSession?: typeof openIdlePortForwardSession;
  warmWaitMs?: number;
}

export function createPodStreams(transport: Transport, options: PodStreamsOptions = {}): PodStreams {
  const idleCloseMs = options.idleCloseMs ?? POD_CONNECTION_IDLE_MS;
  const livenessMs = options.livenessMs ?? POD_LIVENESS_MS;
  const openSession = options.openSession ?? openPortForwardSession;
  const openIdleSession = options.openIdleSession ?? openIdlePortForwardSession;
  const warmWaitMs = options.warmWaitMs ?? POD_WARM_WAIT_MS;
  const connections = new Map<string, PodConnection>();
  let closed = false;
  /** The API server answered with v4, or refused SPDY, or SPDY is ruled out here: it will again. */
  let v4Only = !spdyOffered();

  // The uid is in the key: a pod recreated under the same name is another sandbox, which the old
  // pod's connection cannot reach.
  const keyOf = (pod: PodRef) => `${pod.namespace}/${pod.name}/${pod.uid ?? ""}`;

  const forget = (key: string, entry: PodConnection) => {
    if (connections.get(key) === entry) connections.delete(key);
    if (entry.idle) clearTimeout(entry.idle);
  };

  /** Counts the stream on its connection; the connection closes once idle long enough. */
  function track(key: string, entry: PodConnection, session: PortForwardSession, stream: Duplex): Duplex {
    entry.streams++;
    if (entry.idle) clearTimeout(entry.idle);
    entry.idle = undefined;
    stream.once("close", () => {
      if (--entry.streams > 0 || closed) return;
      closeWhenIdle(key, entry, session);
    });
    return stream;
  }

  function closeWhenIdle(key: string, entry: PodConnection, session: PortForwardSession): void {
    entry.idle = setTimeout(() => {
      forget(key, entry);
      session.close();
    }, idleCloseMs);
    entry.idle.unref?.();
  }

  function watchLiveness(pod: PodRef, session: PortForwardSession): void {
    const check = setInterval(() => {
      if (session.silentMs > 3 * livenessMs) session.destroy(new Error(`the port-forward to ${pod.namespace}/${pod.name} went silent`));
      else if (session.silentMs > livenessMs) session.ping();
    }, livenessMs);
    check.unref?.();
    void session.closed.then(() => clearInterval(check));
  }

  /** Opens a new connection to the pod; `port` is its first stream. */
  async function connect(key: string, pod: PodRef, port: number, first?: Buffer): Promise<Duplex | undefined> {
    const opened = openSession(transport, pod.namespace, pod.name, port);
    const entry: PodConnection = { streams: 0, session: Promise.resolve(undefined) };
    entry.session = opened.then(
      ({ session }) => session,
      (error) => {
        entry.failure = error;
        return undefined;
      },
    );
    connections.set(key, entry);
    let result: Awaited<typeof opened>;
    try {
      result = await opened;
    } catch (error) {
      forget(key, entry);
      throw error;
    }
    const { stream, session } = result;
    if (!session) {
      v4Only = true;
      forget(key, entry);
      stream.destroy();
      return undefined;
    }
    watchLiveness(pod, session);
    void session.closed.then(() => forget(key, entry));
    if (closed) {
      session.close();
      stream.destroy();
      throw closedError();
    }
    if (first?.length) stream.write(first);
    return track(key, entry, session, stream);
  }

  async function warmUp(pod: PodRef, port: number): Promise<void> {
    const key = keyOf(pod);
    const known = connections.get(key);
    if (closed || v4Only || known) return void (await known?.session);
    // A failed warm-up is nobody's failure: the first stream then opens a connection itself. A
    // refusal of SPDY is known before anyone waiting on the entry looks again.
    const opening = openIdleSession(transport, pod.namespace, pod.name, port).then(
      (session) => {
        if (session !== "no-spdy") return session;
        v4Only = true;
        return undefined;
      },
      () => undefined,
    );
    const entry: PodConnection = { streams: 0, session: opening };
    connections.set(key, entry);
    const session = await entry.session;
    if (!session) return forget(key, entry);
    if (closed) return session.close();
    watchLiveness(pod, session);
    void session.closed.then(() => forget(key, entry));
    if (entry.streams === 0) closeWhenIdle(key, entry, session);
  }

  return {
    get usable() {
      return !closed && !v4Only;
    },
    async warm(pod, port) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const waited = new Promise<void>((resolve) => (timer = setTimeout(resolve, warmWaitMs)));
      await Promise.race([warmUp(pod, port).catch(() => undefined), waited]).finally(() => clearTimeout(timer));
    },
    async open(pod, port, first) {
      const key = keyOf(pod);
      for (;;) {
        if (closed) throw closedError();
        if (v4Only) return undefined;
        const entry = connections.get(key);
        if (!entry) return connect(key, pod, port, first);
        const session = await entry.session;
        if (entry.failure !== undefined) throw entry.failure;
        if (closed) throw closedError();
        if (session?.accepting) return track(key, entry, session, session.open(port, first));
        // Gone or going: the next turn opens a new one, unless someone already has.
        forget(key, entry);
      }
    },
    close() {
      closed = true;
      const entries = [...connections.values()];
      connections.clear();
      for (const entry of entries) {
        if (entry.idle) clearTimeout(entry.idle);
        void entry.session.then((session) => session?.close());
      }
    },
  };
}
