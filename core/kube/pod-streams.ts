// Streams straight to pod ports, the path kubectl port-forward takes, made cheaper per connection:
// one port-forward connection per pod carries every stream to it (SPDY), and a stream goes out
// with its first bytes in the same message as its opening, without waiting for the kubelet's
// reply. A new connection then costs one message each way through the API server, the kubelet and
// the runtime, and its bytes take no hop but theirs.
// Where the API server speaks only the v4 protocol (one stream per WebSocket), each stream is a
// connection of its own.

import type { Duplex } from "node:stream";
import type { PodStreams } from "../plugin-api.ts";
import { openPortForwardSession, type PortForwardSession } from "./portforward.ts";
import type { Transport } from "./transport.ts";

/** A pod's connection, or its opening, which streams asked for meanwhile wait on. */
interface PodConnection {
  session: Promise<PortForwardSession | undefined>;
}

export function createPodStreams(transport: Transport): PodStreams {
  const connections = new Map<string, PodConnection>();
  let closed = false;

  const forget = (key: string, entry: PodConnection) => {
    if (connections.get(key) === entry) connections.delete(key);
  };

  /** Opens a new connection to the pod; `port` is its first stream. */
  function connect(key: string, namespace: string, pod: string, port: number, first?: Buffer): Promise<Duplex> {
    const opened = openPortForwardSession(transport, namespace, pod, port);
    const entry: PodConnection = { session: opened.then(({ session }) => session, () => undefined) };
    connections.set(key, entry);
    void entry.session.then((session) => {
      if (!session) return forget(key, entry);
      if (closed) return session.close();
      void session.closed.then(() => forget(key, entry));
    });
    return opened.then(({ stream }) => {
      if (first?.length) stream.write(first);
      return stream;
    });
  }

  return {
    async open(namespace, pod, port, first) {
      if (closed) throw new Error("pod streams are closed");
      const key = `${namespace}/${pod}`;
      const entry = connections.get(key);
      if (entry) {
        const session = await entry.session;
        if (session?.accepting) return session.open(port, first);
        forget(key, entry);
      }
      return connect(key, namespace, pod, port, first);
    },
    close() {
      closed = true;
      const entries = [...connections.values()];
      connections.clear();
      for (const entry of entries) void entry.session.then((session) => session?.close());
    },
  };
}
