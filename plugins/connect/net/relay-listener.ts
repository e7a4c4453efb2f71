// A loopback listener whose connections are carried into the cluster. Where each connection goes is
// decided per connection: from its original destination (transparent capture on Linux) or fixed
// (one listener per target, where the OS cannot tell the original destination).

import { createServer, type Socket } from "node:net";
import type { OpenStream, PluginApi } from "../../../core/plugin-api.ts";
import type { Destination } from "./original-dst.ts";

/** What a relay listener takes from the plugin API: the core's carry (half-close both ways) and errors. */
export type RelayApi = Pick<PluginApi, "carry" | "errors">;

export interface RelayListenerOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** 0 (default) picks a free port. */
  port?: number;
  /** Where this connection goes; undefined refuses it. */
  destination(socket: Socket): Destination | undefined;
  openStream: OpenStream;
  onError?(error: unknown, destination?: Destination): void;
}

export interface RelayListener {
  host: string;
  port: number;
  /** Connections accepted since start, and those open now. */
  stats(): { accepted: number; open: number };
  close(): Promise<void>;
}

export function startRelayListener(options: RelayListenerOptions, api: RelayApi): Promise<RelayListener> {
  const host = options.host ?? "127.0.0.1";
  const sockets = new Set<Socket>();
  let accepted = 0;

  const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    accepted++;
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    void relay(socket);
  });

  async function relay(socket: Socket) {
    // Bytes sent before the cluster side is open wait in the socket.
    socket.pause();
    let destination: Destination | undefined;
    try {
      destination = options.destination(socket);
      if (!destination) throw new Error("connection without a cluster destination");
      const remote = await options.openStream(destination.host, destination.port);
      if (socket.destroyed) {
        remote.destroy();
        return;
      }
      // No resume here: carry's pipe starts the flow once it is attached. The API may load carry
      // on first use, and a socket resumed before that would drop the client's first bytes.
      void api.carry(socket, remote);
    } catch (error) {
      options.onError?.(error, destination);
      // A reset tells the client at once; a clean close would look like an empty answer.
      socket.resetAndDestroy?.() ?? socket.destroy();
    }
  }

  return new Promise((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) => {
      reject(error.code === "EADDRINUSE" ? new api.errors.KtctlError(`${host}:${options.port} is already in use`, api.errors.ExitCode.portInUse) : error);
    });
    server.listen({ host, port: options.port ?? 0, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : (options.port ?? 0);
      resolve({
        host,
        port,
        stats: () => ({ accepted, open: sockets.size }),
        close: () =>
          new Promise<void>((done) => {
            for (const socket of sockets) socket.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
