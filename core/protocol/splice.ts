// Joins a TCP socket and an SSH channel, the same way on the host and in the shadow.
// pipe() gives back-pressure both ways and passes buffers through untouched. What pipe() does
// not give is TCP's half-close: ssh2 closes a server-side channel as soon as its writable side
// ends, which would drop the answer to a client that sends its request and then shuts down its
// sending side. So FIN and EOF are carried by hand, each after the data queued before it.

import type { Socket } from "node:net";
import type { Channel } from "ssh2";

const EMPTY = Buffer.alloc(0);

export interface Splice {
  /** Tears both sides down at once (the link died: a reset beats a clean-looking truncated stream). */
  abort(): void;
  /** Settles when both sides are closed. */
  readonly closed: Promise<void>;
}

export function splice(socket: Socket, channel: Channel): Splice {
  socket.allowHalfOpen = true;
  socket.setNoDelay(true);

  let eofSent = false;
  let closeAfterEof = false;
  let aborted = false;

  socket.pipe(channel, { end: false });
  channel.pipe(socket, { end: false });

  // The socket's FIN becomes the channel's EOF once every byte written before it has gone out:
  // an empty write's callback runs only after the writes queued ahead of it. A FIN that came
  // before the splice (a client that finished while its stream was opening) counts the same.
  const onSocketEnd = () => {
    channel.write(EMPTY, () => {
      channel.eof();
      eofSent = true;
      if (closeAfterEof) channel.close();
    });
  };
  if (socket.readableEnded) onSocketEnd();
  else socket.once("end", onSocketEnd);
  // The channel's EOF becomes the socket's FIN ('end' comes after the last 'data').
  channel.once("end", () => {
    if (!aborted) socket.end();
  });

  const abort = () => {
    if (aborted) return;
    aborted = true;
    socket.unpipe(channel);
    channel.unpipe(socket);
    socket.destroy();
    channel.close();
    channel.resume(); // drain whatever is left so the channel can reach 'end' and 'close'
  };
  socket.on("error", abort);
  channel.on("error", abort);

  const socketClosed = new Promise<void>((resolve) =>
    socket.once("close", () => {
      resolve();
      // Both directions are over for the socket. Close the channel, but not ahead of our EOF.
      if (aborted || eofSent || !socket.readableEnded) channel.close();
      else closeAfterEof = true;
    }),
  );
  const channelClosed = new Promise<void>((resolve) =>
    channel.once("close", () => {
      resolve();
      // Nothing can flow through the channel any more: let the socket flush what it holds, then go.
      if (socket.destroyed) return;
      socket.end();
      if (socket.writableFinished) socket.destroy();
      else socket.once("finish", () => socket.destroy());
    }),
  );

  return { abort, closed: Promise.all([socketClosed, channelClosed]).then(() => undefined) };
}
