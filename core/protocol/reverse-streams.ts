// Reverse streams: the cluster -> host path (remote listeners of exchange, preview, mesh) on
// port-forward streams, shared word for word by host and shadow.
//
// The host cannot be dialled, so it opens the streams: it keeps a few port-forward streams to the
// shadow's reverse port waiting, each announced by a preamble with the token the shadow handed out
// over the authenticated SSH control channel ("reverse" request). When a cluster connection arrives
// at a remote listener, the shadow takes a waiting stream, writes an ASSIGNMENT naming the listener
// and the connection's origin, then an OPENED frame, and from there relays exactly as a direct
// stream does (frames, credit, EOF: direct-streams.ts), starting with whatever the cluster client
// sent. Nothing waits for the host's word: the client's first bytes leave with the assignment, and
// the host dials its local port meanwhile (its credit bounds what it must hold until then). A host
// whose local port refuses answers EOF, which the shadow turns into the client's FIN.
// With no waiting stream (or a shadow or host without the "reverse" feature), SSH's forwarded-tcpip
// channels carry the connection as before.
//
// Wire format, on one port-forward stream to the reverse port:
//   host -> shadow, first:   preamble   = "KTR1", "KTR2" or "KTR3" | token (32 bytes) | window (u32)
//   shadow -> host, first:   assignment = "A" | listener port (u16) | origin port (u16) | address length (u8) | origin address
//   then both ways: the frames of direct-streams.ts, the shadow's starting with OPENED.
// A "KTR2" stream is reusable, as a "KTD2" direct stream is: once the connection has ended cleanly
// and the host has said DONE, the stream waits again for the shadow's next assignment (no new
// preamble: the token and window stay those of the first). Until that assignment the host drops
// what the shadow still sent of the last connection (CREDIT, BLOCKED).
// A shadow with "early-reuse" (tunnel.ts) puts the stream back to waiting as soon as both EOFs are
// behind it, before the host's DONE: until that DONE, what the host sends is the last connection's
// (CREDIT, BLOCKED: dropped; afterOwedDone in direct-streams.ts). Such a host then keeps the DONE
// until the stream's next connection and sends it in front of that connection's first frame: a
// connection then costs the port-forward's hops one message fewer.
// A "KTR3" stream is a "KTR2" one whose host also takes a late EOF (to a shadow with "late-eof",
// tunnel.ts): when the cluster client ends its side after the host's side has already ended (an
// HTTP client closing once it has its answer), the shadow may keep that EOF, put the stream back
// to waiting, and send the EOF in front of the stream's next assignment, or alone after
// LATE_EOF_HOLD_MS (direct-streams.ts). The host's side has said all it will say by then: only
// its reading end waits for the EOF.

import { DIRECT_MAX_WINDOW, DIRECT_TOKEN_BYTES, DirectProtocolError } from "./direct-streams.ts";

export const REVERSE_MAGIC = Buffer.from("KTR1", "latin1");
/** The preamble of a reverse stream that goes back to waiting after each connection (the host's DONE frames). */
export const REVERSE_MAGIC_REUSABLE = Buffer.from("KTR2", "latin1");
/** A reusable reverse stream whose host takes the shadow's late EOF in front of the next assignment. */
export const REVERSE_MAGIC_LATE_EOF = Buffer.from("KTR3", "latin1");
const ASSIGNMENT_TYPE = 0x41;
const PREAMBLE_BYTES = REVERSE_MAGIC.length + DIRECT_TOKEN_BYTES + 4;
const ASSIGNMENT_FIXED_BYTES = 6;

/**
 * The shadow drops a waiting stream after this long (the host replaces what it still needs), so a
 * pool grown under a burst shrinks back by itself once the burst is over.
 */
export const REVERSE_IDLE_MS = 2 * 60_000;

export interface ReversePreamble {
  token: Buffer;
  /** Initial credit, each way, for each connection the stream will carry. */
  window: number;
  /** The stream waits again after each connection that ends cleanly ("KTR2"). */
  reusable?: boolean;
  /** Reusable, and the host takes a late EOF in front of the next assignment ("KTR3"). */
  lateEof?: boolean;
}

/** Which listener a cluster connection arrived at, and where from. */
export interface ReverseAssignment {
  listenerPort: number;
  originAddress: string;
  originPort: number;
}

export function encodeReversePreamble(preamble: ReversePreamble): Buffer {
  if (preamble.token.length !== DIRECT_TOKEN_BYTES) throw new DirectProtocolError("token of the wrong size");
  if (preamble.window < 1 || preamble.window > DIRECT_MAX_WINDOW) throw new DirectProtocolError(`window of ${preamble.window} bytes`);
  const out = Buffer.allocUnsafe(PREAMBLE_BYTES);
  if (preamble.lateEof && !preamble.reusable) throw new DirectProtocolError("a late EOF needs a reusable stream");
  const magic = preamble.lateEof ? REVERSE_MAGIC_LATE_EOF : preamble.reusable ? REVERSE_MAGIC_REUSABLE : REVERSE_MAGIC;
  let at = magic.copy(out, 0);
  at += preamble.token.copy(out, at);
  out.writeUInt32BE(preamble.window, at);
  return out;
}

/** Reads the preamble off the front of `data`: undefined while incomplete, throws if malformed. */
export function decodeReversePreamble(data: Buffer): { preamble: ReversePreamble; rest: Buffer } | undefined {
  const magic = data.subarray(0, REVERSE_MAGIC.length);
  const startsAs = (known: Buffer) => known.subarray(0, magic.length).equals(magic);
  const lateEof = startsAs(REVERSE_MAGIC_LATE_EOF);
  const reusable = lateEof || startsAs(REVERSE_MAGIC_REUSABLE);
  if (!reusable && !startsAs(REVERSE_MAGIC)) throw new DirectProtocolError("not a reverse stream");
  if (data.length < PREAMBLE_BYTES) return undefined;
  const token = Buffer.from(data.subarray(REVERSE_MAGIC.length, REVERSE_MAGIC.length + DIRECT_TOKEN_BYTES));
  const window = data.readUInt32BE(REVERSE_MAGIC.length + DIRECT_TOKEN_BYTES);
  if (window < 1 || window > DIRECT_MAX_WINDOW) throw new DirectProtocolError(`window of ${window} bytes`);
  return { preamble: { token, window, reusable, lateEof }, rest: data.subarray(PREAMBLE_BYTES) };
}

export function encodeAssignment(assignment: ReverseAssignment): Buffer {
  const address = Buffer.from(assignment.originAddress, "latin1");
  if (address.length > 255) throw new DirectProtocolError(`origin address of ${address.length} bytes`);
  const out = Buffer.allocUnsafe(ASSIGNMENT_FIXED_BYTES + address.length);
  out[0] = ASSIGNMENT_TYPE;
  out.writeUInt16BE(assignment.listenerPort, 1);
  out.writeUInt16BE(assignment.originPort, 3);
  out[5] = address.length;
  address.copy(out, ASSIGNMENT_FIXED_BYTES);
  return out;
}

/** Reads the assignment off the front of `data`: undefined while incomplete, throws if malformed. */
export function decodeAssignment(data: Buffer): { assignment: ReverseAssignment; rest: Buffer } | undefined {
  if (data.length === 0) return undefined;
  if (data[0] !== ASSIGNMENT_TYPE) throw new DirectProtocolError("a reverse stream must start with an assignment");
  if (data.length < ASSIGNMENT_FIXED_BYTES) return undefined;
  const end = ASSIGNMENT_FIXED_BYTES + data[5]!;
  if (data.length < end) return undefined;
  const listenerPort = data.readUInt16BE(1);
  if (listenerPort === 0) throw new DirectProtocolError("assignment to listener port 0");
  return {
    assignment: { listenerPort, originPort: data.readUInt16BE(3), originAddress: data.subarray(ASSIGNMENT_FIXED_BYTES, end).toString("latin1") },
    rest: data.subarray(end),
  };
}
