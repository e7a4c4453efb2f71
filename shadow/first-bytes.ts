// One piece instead of two through the port-forward's hops: what the shadow writes to open a
// connection (an assignment, OPENED) waits, corked, for the other side's first bytes and leaves
// with them. Written apart, the second piece was seen to reach the host 3-5 ms after the first.

import type net from "node:net";

/** How long an opening waits for the first bytes to join it. */
export const FIRST_BYTES_WAIT_MS = 1;

/**
 * `socket` has been corked and the opening written on it: uncork once `source`'s first bytes have
 * been written after it (listeners registered after the relay's own run after its write), once
 * `source` ends or closes without any, or after FIRST_BYTES_WAIT_MS. Once only: on a reused stream
 * a later uncork would undo the next connection's cork.
 */
export function uncorkWithFirstBytes(socket: net.Socket, source: net.Socket): void {
  let sent = false;
  const send = () => {
    if (sent) return;
    sent = true;
    clearTimeout(timer);
    source.off("data", afterFirstBytes).off("end", send).off("close", send);
    if (socket.writableCorked) socket.uncork();
  };
  const afterFirstBytes = () => process.nextTick(send);
  const timer = setTimeout(send, FIRST_BYTES_WAIT_MS);
  source.once("data", afterFirstBytes).once("end", send).once("close", send);
}
