// A loopback listener whose every connection is carried to a target inside the cluster through
// the session's tunnel. The target is looked up per connection, so a forward follows a service or
// a workload to its new pods without restarting.

import { createServer, type Server, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { ExitCode, KtctlError } from "../errors.ts";
import type { LocalForward, LocalForwardOptions } from "../plugin-api.ts";

export function forwardLocal(options: LocalForwardOptions): Promise<LocalForward> {
  const host = options.localHost ?? "127.0.0.1";
  const sockets = new Set<Socket>();
  let connections = 0;

  const server: Server = createServer({ noDelay: true }, (socket) => {
    connections++;
    sockets.add(socket);
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
    const closeBoth = () => {
      socket.destroy();
      remote.destroy();
    };
    remote.once("error", closeBoth);
    socket.once("error", closeBoth);
    remote.once("close", () => socket.end());
    socket.once("close", () => remote.destroy());
    socket.pipe(remote);
    remote.pipe(socket);
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
