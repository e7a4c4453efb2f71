// A loopback listener whose every connection is carried to a target inside the cluster through
// the session's tunnel. The target is looked up per connection, so a forward follows a service or
// a workload to its new pods without restarting.

import { createServer, type Server, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { Channel } from "ssh2";
import { ExitCode, KtctlError } from "../errors.ts";
import { StreamOpenError } from "../tunnel/stream-error.ts";
import { splice } from "../protocol/splice.ts";
import type { LocalForward, LocalForwardOptions } from "../plugin-api.ts";

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
    void carry(socket);
  });

  async function carry(socket: Socket): Promise<void> {
    // Bytes may arrive before the tunnel stream exists; pausing keeps them in the socket.
    socket.pause();
    let remote: Duplex;
    try {
      const target = await options.target();
      remote = await options.tunnel.openStream(target.host, target.port);
    } catch (error) {
      options.onError?.(error);
      socket.destroy();
      return;
    }
    // A stream to a target that answered moments ago is handed out before the shadow confirms
    // it (see Link.openDirect); if the target refuses after all, that is still this connection's failure.
    remote.once("error", (error) => {
      if (error instanceof StreamOpenError) options.onError?.(error);
    });
    // The tunnel's streams behave as SSH channels: splice carries half-close both ways, as TCP would.
    splice(socket, remote as Channel);
    socket.resume();
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
