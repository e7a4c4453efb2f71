// Joins a local TCP connection to the stream that carries it into the cluster. The tunnel's streams
// are SSH channels, for which core/protocol/splice.ts carries half-close both ways; any other duplex
// (a plain socket) is piped, which ends each side after the other's last byte.

import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { Channel } from "ssh2";
import { splice } from "../protocol/splice.ts";

const isChannel = (stream: Duplex): stream is Duplex & Channel =>
  typeof (stream as Partial<Channel>).eof === "function" && typeof (stream as Partial<Channel>).close === "function";

/** Settles when both sides are closed. */
export function carry(socket: Socket, remote: Duplex): Promise<void> {
  if (isChannel(remote)) return splice(socket, remote).closed;
  socket.setNoDelay(true);
  const fail = () => {
    socket.destroy();
    remote.destroy();
  };
  socket.on("error", fail);
  remote.on("error", fail);
  socket.pipe(remote);
  remote.pipe(socket);
  return Promise.all([
    new Promise<void>((resolve) => socket.once("close", () => resolve())),
    new Promise<void>((resolve) => remote.once("close", () => resolve())),
  ]).then(() => undefined);
}
