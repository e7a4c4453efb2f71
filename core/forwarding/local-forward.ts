// A loopback listener whose every connection is carried to a target inside the cluster: straight
// through the target pod's port-forward when the target names its pod and pod streams are given
// (and the API server's port-forward can carry them), through the session's tunnel otherwise.
// The target is looked up per connection, so a forward follows a service or a workload to its new
// pods without restarting.

import { createServer, type Server, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { ExitCode, KtctlError } from "../errors.ts";
import { StreamOpenError } from "../tunnel/stream-error.ts";
import { carry } from "../laptop/carry.ts";
import type { ForwardTarget, LocalForward, LocalForwardOptions } from "../plugin-api.ts";

/**
 * How long a connection to a pod waits for the client's first bytes, so that they leave in the
 * stream's opening message: bytes that follow the opening an event-loop turn later cost a new
 * connection 0.16-0.27 ms more in the forward bench. A client that waits for the server to speak
 * first loses no more than this.
 */
export const FIRST_BYTES_WAIT_MS = 1;

export function forwardLocal(options: LocalForwardOptions): Promise<LocalForward> {
  const host = options.localHost ?? "127.0.0.1";
  const sockets = new Set<Socket>();
  let connections = 0;

  // allowHalfOpen: a client may send its request, shut its side, and still await the answer.
  const server: Server = createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
    connections++;
    sockets.add(socket);
    // A client that gives up before its stream is open must not take the process down.
    socket.on("error", () => socket.destroy());
    socket.once("close", () => sockets.delete(socket));
    void forwardConnection(socket);
  });

  async function forwardConnection(socket: Socket): Promise<void> {
    // Bytes may arrive before the stream exists; pausing keeps them in the socket.
    socket.pause();
    let remote: Duplex;
    try {
      const target = await options.target();
      remote = await openFor(socket, target);
    } catch (error) {
      // A socket already gone (the client gave up, or the forward is closing) has nobody to tell.
      if (!socket.destroyed) options.onError?.(error);
      socket.destroy();
      return;
    }
    // A tunnel stream to a target that answered moments ago is handed out before the shadow
    // confirms it (see Link.openDirect), and a pod stream before the kubelet does: if the target
    // refuses after all (the kubelet's word on a pod stream is a KtctlError), that is still this
    // connection's failure. A reset is not.
    remote.once("error", (error) => {
      if (error instanceof StreamOpenError || error instanceof KtctlError) options.onError?.(error);
    });
    // The client gave up while its stream was opening: nobody will close the stream but us.
    if (socket.destroyed) {
      remote.destroy();
      return;
    }
    // Half-close is carried both ways, as TCP would.
    void carry(socket, remote);
  }

  /** Straight to the pod when the target names one and pod streams can carry it, else the tunnel. */
  async function openFor(socket: Socket, target: ForwardTarget): Promise<Duplex> {
    let first: Buffer | undefined;
    if (target.pod && options.pods?.usable) {
      first = await firstBytes(socket, FIRST_BYTES_WAIT_MS);
      const stream = await options.pods.open(target.pod, target.port, first);
      if (stream) {
        options.onStream?.("pod", target);
        return stream;
      }
    }
    const stream = await options.tunnel.openStream(target.host, target.port);
    // Read for a pod stream that could not be had (v4): they go first on this one.
    if (first) stream.write(first);
    options.onStream?.("tunnel", target);
    return stream;
  }

  return new Promise((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "EADDRINUSE")
        reject(new KtctlError(`local port ${options.localPort} is already in use`, ExitCode.portInUse));
      else if (error.code === "EACCES")
        reject(new KtctlError(`local port ${options.localPort} needs administrator rights`, ExitCode.portInUse, "map a local port above 1023"));
      else reject(error);
    });
    server.listen({ port: options.localPort, host, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : options.localPort;
      resolve({
        host,
        port,
        connections: () => connections,
        close: () =>
          new Promise<void>((done) => {
            for (const socket of sockets) socket.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}

/**
 * The socket's first chunk if one arrives within `waitMs` (the socket is left paused either way).
 * The client's FIN may come meanwhile and its 'end' go unheard: pipe() (how carry() joins a pod
 * stream) handles a source that has ended, and splice() checks readableEnded.
 */
function firstBytes(socket: Socket, waitMs: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const settle = (chunk?: Buffer) => {
      clearTimeout(timer);
      socket.off("data", settle);
      socket.pause();
      resolve(chunk);
    };
    const timer = setTimeout(settle, waitMs);
    socket.on("data", settle);
    socket.resume();
  });
}
