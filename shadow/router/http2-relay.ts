// h2c (and gRPC on it) relayed frame by frame. Each client connection gets one connection of its
// own to the original pods (balanced per connection, as a client going straight there would be),
// and the client's frames and the pods' frames pass between the two as they came, a whole read in
// one write, without decoding more than the router must:
//   - every request header block is HPACK-decoded (the decoder's table must follow the client's
//     encoder) and its stream routed on those headers;
//   - a marked stream is taken out: it goes to its developer over a node:http2 session
//     (h2-sessions.ts), and its answer is written back as frames of the router's own, in header
//     blocks that never touch the client's HPACK table;
//   - once a stream has been taken out, the blocks that still go to the pods are encoded again
//     (encodeHeaderBlock), since they may refer to table entries the pods never saw.
// Flow control stays end to end between client and pods. The router answers for what it takes: it
// gives the client credit back for the request bytes of the streams it took out, and keeps from
// the client's connection-level credit, before passing it on, as much as it sent of its own answers;
// the pods' DATA that would overrun the client's window meanwhile waits in the router.
// Stream ids pass unchanged, except after a developer that could not be reached: the stream then
// goes to the pods under a new id, as do the client's later streams, so that ids keep rising there.

import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from "node:http2";
import { HpackDecoder, encodeHeaderBlock, type HeaderList } from "../../core/protocol/hpack.ts";
import type { Upstream } from "../../core/protocol/router.ts";
import { connectBytes, upstreamKey, type ByteSocket } from "./byte-socket.ts";
import {
  DEFAULT_MAX_FRAME,
  DEFAULT_WINDOW,
  FRAME_HEADER_BYTES,
  Flag,
  FrameCutter,
  FrameType,
  HOP_BY_HOP,
  Setting,
  dataFrame,
  dataOf,
  headersFragment,
  headersFrames,
  rstStreamFrame,
  settingsOf,
  windowUpdateFrame,
  type FrameVisitor,
} from "./h2-frames.ts";
import type { UpstreamSessions } from "./h2-sessions.ts";
import type { ListenerContext } from "./http1-proxy.ts";
import type { Http2Proxy } from "./http2-proxy.ts";
import { H2_PREFACE } from "./sniff.ts";

const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR, NGHTTP2_NO_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants;

/** A header block larger than this ends the connection (nghttp2's own default limit is 64 KiB). */
const MAX_HEADER_BLOCK = 1024 * 1024;
/** Answer bytes of a developer's stream waiting for the client's window before that stream is paused. */
const DEVELOPER_BACKLOG = 256 * 1024;
/** Ids of finished taken-out streams remembered, so that late frames for them are not sent to the pods. */
const TAKEN_IDS_KEPT = 4096;
/** Renumbered streams remembered after their end, so that late frames still find their stream. */
const RENUMBERED_KEPT = 1024;
/** The pods' frames waiting for the client's window, in bytes, before the pods' connection is paused. */
const HELD_FOR_CLIENT_MAX = 1024 * 1024;
/** Request bytes held for taken-out streams whose developers are being reached, before the client is paused. */
const HELD_WHILE_CONNECTING_MAX = 1024 * 1024;
/** How long a client whose pods' connection ended may take to read what is left for it. */
const FINISH_GRACE_MS = 5_000;
const MAX_WINDOW = 0x7fffffff;
const MAX_FRAME_SIZE_LIMIT = 0xffffff;

class RelayError extends Error {}

export class Http2Relay {
  private readonly relayed = new Set<RelayedConnection>();

  constructor(
    private readonly ctx: ListenerContext,
    private readonly sessions: UpstreamSessions,
    /** Serves a connection whose original pods cannot be reached: each stream is answered on its own. */
    private readonly unrelayed: Http2Proxy,
  ) {}

  /** Takes a client connection whose first bytes (the h2 preface, at least) were already read. */
  accept(client: ByteSocket, initial: Buffer): void {
    const { ctx } = this;
    const early: Buffer[] = [initial];
    client.pause();
    client.sink = { data: (chunk) => void early.push(chunk), end: () => undefined, close: () => undefined, drain: () => undefined };
    connectBytes(ctx.fallback, ctx.connectTimeoutMs).then(
      (upstream) => {
        if (client.closed) return void upstream.destroy();
        ctx.counters.http2Sessions++;
        const connection = new RelayedConnection(ctx, this.sessions, client, upstream, () => this.relayed.delete(connection));
        this.relayed.add(connection);
        connection.start(Buffer.concat(early));
      },
      (error: Error) => {
        if (client.closed) return;
        ctx.log.info("http2.pods-unreachable", { port: ctx.port, error: error.message });
        this.unrelayed.accept(client, Buffer.concat(early));
      },
    );
  }

  close(): void {
    for (const connection of this.relayed) connection.destroy();
    this.relayed.clear();
  }
}

/** Byte ranges and frames bound for one socket, joined into one write. */
class Outbox {
  private pieces: Buffer[] = [];
  private run: Buffer | undefined;
  private runStart = 0;
  private runEnd = 0;

  /** Bytes of a buffer read from the other side; ranges that follow each other in it stay one piece. */
  pass(buffer: Buffer, start: number, end: number): void {
    if (buffer === this.run && start === this.runEnd) {
      this.runEnd = end;
      return;
    }
    this.cut();
    this.run = buffer;
    this.runStart = start;
    this.runEnd = end;
  }

  add(bytes: Buffer): void {
    this.cut();
    this.pieces.push(bytes);
  }

  take(): Buffer | undefined {
    this.cut();
    const { pieces } = this;
    if (pieces.length === 0) return undefined;
    this.pieces = [];
    return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
  }

  private cut(): void {
    if (!this.run) return;
    this.pieces.push(this.run.subarray(this.runStart, this.runEnd));
    this.run = undefined;
  }
}

/** A header block of the router's own, for the client. */
interface OwnHeaders {
  streamId: number;
  fields: HeaderList;
  endStream: boolean;
}

interface FrameRef {
  buffer: Buffer;
  at: number;
  end: number;
}

interface HeaderBlock {
  streamId: number;
  /** The HEADERS frame's flags (END_STREAM is there). */
  flags: number;
  frames: FrameRef[];
  fragments: Buffer[];
  size: number;
}

/** A client stream that goes to the pods under another id. */
interface Renumbered {
  clientId: number;
  upstreamId: number;
  clientEnded: boolean;
  upstreamEnded: boolean;
}

/** A stream taken out for a developer. */
interface TakenStream {
  id: number;
  target: Upstream;
  fields: HeaderList;
  /** The request ended with its headers. */
  requestEnded: boolean;
  phase: "connecting" | "open" | "closed";
  /** The client's frames that came while the developer's session was being made (copies). */
  held: (FrameRef | { trailers: HeaderList; endStream: boolean })[];
  heldBytes: number;
  /** Stream credit the client gave meanwhile: the pods get it too if the stream goes to them. */
  creditWhileConnecting: number;
  developer?: ClientHttp2Stream;
  /** How much the client lets us send on this stream. */
  window: number;
  /** Answer bytes waiting for a window. */
  out: Buffer[];
  outBytes: number;
  responded: boolean;
  /** The developer's answer ended; its end goes out after `out`. */
  answerEnded: boolean;
  trailers?: IncomingHttpHeaders;
  endSent: boolean;
  /** Request bytes whose stream-level credit waits for the developer's stream to drain. */
  uncredited: number;
}

class RelayedConnection {
  private readonly decoder = new HpackDecoder();
  private readonly fromClient = new FrameCutter();
  private readonly fromUpstream = new FrameCutter();
  private readonly toUpstream = new Outbox();
  private readonly toClient = new Outbox();
  private prefaceLeft = H2_PREFACE.length;
  private block: HeaderBlock | undefined;
  private highestClientId = 0;
  private nextUpstreamId = 1;
  /** Set once a stream was taken out: from then on blocks to the pods are encoded again. */
  private reencode = false;
  private readonly taken = new Map<number, TakenStream>();
  private readonly takenIds = new Set<number>();
  private highestTakenId = 0;
  private readonly byClientId = new Map<number, Renumbered>();
  private readonly byUpstreamId = new Map<number, Renumbered>();
  /** The client's connection-level receive window, as the router counts it. */
  private clientWindow = DEFAULT_WINDOW;
  /** Bytes of the router's own answers that the client has not given credit back for yet. */
  private routerDebt = 0;
  private clientInitialWindow = DEFAULT_WINDOW;
  private clientMaxFrame = DEFAULT_MAX_FRAME;
  /** The pods' frames that wait behind a DATA frame beyond the client's window. */
  private heldForClient: Buffer[] = [];
  private heldForClientBytes = 0;
  /** The last frame written to the client left a header block open: nothing else may come between. */
  private upstreamMidBlock = false;
  /** The router's own frames for the client; its header blocks are encoded when they are written. */
  private mine: (Buffer | OwnHeaders)[] = [];
  /** The pods' SETTINGS, the server's preface, went to the client: nothing of the router's may precede it. */
  private prefaceForwarded = false;
  /** HEADER_TABLE_SIZE of each of the client's SETTINGS frames the pods have not acknowledged yet. */
  private readonly clientTableSizes: (number | undefined)[] = [];
  /**
   * The client changed its HEADER_TABLE_SIZE and the pods acknowledged it: the next header block the
   * client reads must begin with table size updates (the smallest size since its last block, then
   * the final one). The pods' next block has them; if the router's comes first, it must (RFC 7541 §4.2).
   */
  private tableSizeUpdateDue: { smallest: number; final: number } | undefined;
  private readonly retired: Renumbered[] = [];
  /**
   * The last-stream id of the GOAWAY the client last got: a later one may not be higher, and a
   * marked stream above it is not taken out (the client counts it as not processed).
   */
  private lastGoawayToClient = MAX_WINDOW;
  /** The highest id the pods got under the client's own id (before any renumbering). */
  private highestIdentityId = 0;
  /** Taken streams with answer bytes or an end to send. */
  private readonly sending = new Set<TakenStream>();
  private ended = false;

  constructor(
    private readonly ctx: ListenerContext,
    private readonly sessions: UpstreamSessions,
    private readonly client: ByteSocket,
    private readonly upstream: ByteSocket,
    private readonly onClosed: () => void,
  ) {}

  start(initial: Buffer): void {
    const { client, upstream } = this;
    client.sink = {
      data: (chunk) => this.guard(() => this.clientBytes(chunk)),
      // An h2 client says goodbye with GOAWAY and then closes; its FIN is passed on as such.
      end: () => upstream.shutdown(),
      close: () => this.destroy(),
      drain: () => {
        if (!this.pausedForHeld) upstream.resume();
        this.guard(() => this.pumpClient());
      },
    };
    upstream.sink = {
      data: (chunk) => this.guard(() => this.upstreamBytes(chunk)),
      end: () => this.finish(),
      close: () => this.finish(),
      drain: () => {
        if (!this.pausedForConnecting) client.resume();
      },
    };
    this.guard(() => this.clientBytes(initial));
    if (client.closed || upstream.closed) return this.destroy();
    if (client.readEnded) upstream.shutdown();
    client.resume();
  }

  /** Closes both sides at once, and every developer stream of the connection. */
  destroy(): void {
    this.client.destroy();
    this.upstream.destroy();
    if (this.ended) return;
    this.ended = true;
    this.dropTakenStreams();
    this.onClosed();
  }

  /**
   * The pods closed the connection: the client gets what is on its way, then its connection ends
   * too, as it would going straight to them. Streams taken out on it end with it: the client sees
   * them fail with the connection, as it does the pods' unfinished ones.
   */
  private finish(): void {
    if (this.ended) return;
    this.ended = true;
    this.upstream.destroy();
    this.guard(() => this.pumpClient());
    this.dropTakenStreams();
    // The client's FIN and what is queued for it go out; a client that reads nothing more is not
    // waited for longer than the grace, and stays in the relay's set (router stop) until closed.
    const { client } = this;
    const grace = setTimeout(() => {
      client.destroy(); // its sink goes with it: no close event follows
      this.onClosed();
    }, FINISH_GRACE_MS);
    grace.unref?.();
    client.sink = {
      data: () => undefined,
      end: () => undefined,
      drain: () => undefined,
      close: () => {
        clearTimeout(grace);
        this.onClosed();
      },
    };
    client.resume();
    client.end();
    if (client.closed) {
      clearTimeout(grace);
      this.onClosed();
    }
  }

  private guard(work: () => void): void {
    try {
      work();
    } catch (error) {
      this.ctx.log.debug("http2.relay-broken", { port: this.ctx.port, error: (error as Error).message });
      this.destroy();
    }
  }

  // ---- client -> pods ------------------------------------------------------------------------

  private clientBytes(chunk: Buffer): void {
    if (this.ended) return;
    let bytes = chunk;
    if (this.prefaceLeft > 0) {
      const n = Math.min(this.prefaceLeft, bytes.length);
      this.toUpstream.pass(bytes, 0, n);
      this.prefaceLeft -= n;
      bytes = bytes.subarray(n);
    }
    if (bytes.length > 0) this.fromClient.push(bytes, this.clientFrame);
    this.flushToUpstream();
    this.pumpClient();
  }

  private readonly clientFrame: FrameVisitor = (buffer, at, end, type, flags, id) => {
    const block = this.block;
    if (block) {
      if (type !== FrameType.CONTINUATION || id !== block.streamId) throw new RelayError("a header block was interrupted");
      return this.addToBlock(block, buffer, at, end, flags);
    }
    if (type === FrameType.HEADERS) {
      const started: HeaderBlock = { streamId: id, flags, frames: [], fragments: [], size: 0 };
      this.block = started;
      return this.addToBlock(started, buffer, at, end, flags);
    }
    if (type === FrameType.CONTINUATION) throw new RelayError("CONTINUATION without HEADERS");
    if (id === 0) return this.connectionFrame(buffer, at, end, type, flags);
    const taken = this.taken.get(id);
    if (taken) return this.takenStreamFrame(taken, { buffer, at, end });
    if (this.takenIds.has(id)) {
      // A late frame of a taken stream that is over: the pods never knew the stream.
      this.creditBack(type, end - at - FRAME_HEADER_BYTES);
      return;
    }
    this.passToUpstream(buffer, at, end, type, flags, id);
  };

  /** DATA the router takes or drops instead of passing on counts against the connection's window: its credit goes back at once. */
  private creditBack(type: number, length: number): void {
    if (type === FrameType.DATA && length > 0) this.mine.push(windowUpdateFrame(0, length));
  }

  private connectionFrame(buffer: Buffer, at: number, end: number, type: number, flags: number): void {
    if (type === FrameType.WINDOW_UPDATE && end - at === FRAME_HEADER_BYTES + 4) {
      const increment = buffer.readUInt32BE(at + FRAME_HEADER_BYTES) & 0x7fffffff;
      this.clientWindow += increment;
      const ours = Math.min(increment, this.routerDebt);
      if (ours === 0) return this.toUpstream.pass(buffer, at, end);
      this.routerDebt -= ours;
      if (increment > ours) this.toUpstream.add(windowUpdateFrame(0, increment - ours));
      return;
    }
    if (type === FrameType.SETTINGS && !(flags & Flag.ACK)) {
      let tableSize: number | undefined;
      for (const [setting, value] of settingsOf(buffer.subarray(at + FRAME_HEADER_BYTES, end))) {
        if (setting === Setting.HEADER_TABLE_SIZE) tableSize = value;
        else if (setting === Setting.INITIAL_WINDOW_SIZE) {
          if (value > MAX_WINDOW) throw new RelayError(`SETTINGS_INITIAL_WINDOW_SIZE ${value} is over 2^31-1`);
          const delta = value - this.clientInitialWindow;
          this.clientInitialWindow = value;
          for (const taken of this.taken.values()) {
            taken.window += delta;
            if (delta > 0) this.sending.add(taken);
          }
        } else if (setting === Setting.MAX_FRAME_SIZE) {
          if (value < DEFAULT_MAX_FRAME || value > MAX_FRAME_SIZE_LIMIT) throw new RelayError(`SETTINGS_MAX_FRAME_SIZE ${value} is outside 16384-16777215`);
          this.clientMaxFrame = value;
        }
      }
      this.clientTableSizes.push(tableSize);
    }
    this.toUpstream.pass(buffer, at, end);
  }

  private passToUpstream(buffer: Buffer, at: number, end: number, type: number, flags: number, clientId: number): void {
    // Priorities name other streams by id, which may no longer be the pods' ids: advisory, left out.
    if (type === FrameType.PRIORITY && this.reencode) return;
    const renumbered = this.byClientId.size > 0 ? this.byClientId.get(clientId) : undefined;
    if (renumbered) {
      buffer.writeUInt32BE(renumbered.upstreamId, at + 5);
      if (type === FrameType.RST_STREAM) this.retireRenumbered(renumbered);
      else if (type === FrameType.DATA && flags & Flag.END_STREAM) {
        renumbered.clientEnded = true;
        if (renumbered.upstreamEnded) this.retireRenumbered(renumbered);
      }
    } else if (clientId % 2 === 1 && this.byClientId.size === 0 && clientId > this.nextUpstreamId - 2 && clientId <= this.highestClientId) {
      // An id the pods never saw (a taken-out stream no longer remembered): for them it would be idle,
      // and a frame on an idle stream ends the whole connection.
      this.creditBack(type, end - at - FRAME_HEADER_BYTES);
      return;
    }
    this.toUpstream.pass(buffer, at, end);
  }

  private addToBlock(block: HeaderBlock, buffer: Buffer, at: number, end: number, flags: number): void {
    const payload = buffer.subarray(at + FRAME_HEADER_BYTES, end);
    const fragment = block.frames.length === 0 ? headersFragment(payload, block.flags) : payload;
    block.frames.push({ buffer, at, end });
    block.fragments.push(fragment);
    block.size += fragment.length;
    if (block.size > MAX_HEADER_BLOCK) throw new RelayError(`a header block over ${MAX_HEADER_BLOCK} bytes`);
    if (flags & Flag.END_HEADERS) {
      this.block = undefined;
      this.headerBlock(block);
    }
  }

  private headerBlock(block: HeaderBlock): void {
    const { fragments, streamId: id } = block;
    const fields = this.decoder.decode(fragments.length === 1 ? fragments[0]! : Buffer.concat(fragments));
    const endStream = (block.flags & Flag.END_STREAM) !== 0;
    if (id > this.highestClientId) {
      if (id % 2 === 0) throw new RelayError(`a client stream with the even id ${id}`);
      this.highestClientId = id;
      return this.newStream(block, fields, endStream);
    }
    // Trailers, or headers on a stream already over (the pods answer that as they see fit).
    const taken = this.taken.get(id);
    if (taken) return this.takenStreamTrailers(taken, fields, endStream);
    if (this.takenIds.has(id)) return;
    const renumbered = this.byClientId.get(id);
    if (renumbered && endStream) {
      renumbered.clientEnded = true;
      if (renumbered.upstreamEnded) this.retireRenumbered(renumbered);
    }
    this.blockToUpstream(block, fields, renumbered?.upstreamId ?? id, endStream);
  }

  private newStream(block: HeaderBlock, fields: HeaderList, endStream: boolean): void {
    const { ctx } = this;
    ctx.counters.requests++;
    const header = headerLookup(fields);
    const match = ctx.routes.match(ctx.port, header, header(":path") ?? "/");
    if (match) {
      if (ctx.health.isDown(match.upstream)) ctx.counters.fallbacks++;
      else if (block.streamId > this.lastGoawayToClient) {
        // Past the pods' GOAWAY the client counts this stream as not taken and may send it again
        // elsewhere: refused here too, so that the developer never runs it twice. Its late frames
        // are dropped like a taken stream's: the pods never knew it.
        this.takenIds.add(block.streamId);
        return void this.mine.push(rstStreamFrame(block.streamId, NGHTTP2_REFUSED_STREAM));
      } else {
        ctx.counters.routed++;
        return this.takeOut(block.streamId, match.upstream, fields, endStream);
      }
    }
    this.openOnUpstream(block, fields, block.streamId, endStream);
  }

  /** A new stream to the pods: under the client's id while ids still rise there, else the next free one. */
  private openOnUpstream(block: HeaderBlock | undefined, fields: HeaderList, clientId: number, endStream: boolean): void {
    let upstreamId = clientId;
    if (clientId < this.nextUpstreamId) {
      upstreamId = this.nextUpstreamId;
      const renumbered: Renumbered = { clientId, upstreamId, clientEnded: endStream, upstreamEnded: false };
      this.byClientId.set(clientId, renumbered);
      this.byUpstreamId.set(upstreamId, renumbered);
    }
    this.nextUpstreamId = upstreamId + 2;
    if (upstreamId === clientId) this.highestIdentityId = upstreamId;
    this.blockToUpstream(block, fields, upstreamId, endStream);
  }

  private blockToUpstream(block: HeaderBlock | undefined, fields: HeaderList, upstreamId: number, endStream: boolean): void {
    if (block && !this.reencode && upstreamId === block.streamId) {
      for (const frame of block.frames) this.toUpstream.pass(frame.buffer, frame.at, frame.end);
      return;
    }
    // Each re-encoded block empties the pods' dynamic table (a size update to 0, always allowed):
    // the router never uses it, and a lowered SETTINGS_HEADER_TABLE_SIZE is answered whatever the
    // client's own updates were, even those in blocks that were taken out.
    this.toUpstream.add(headersFrames(upstreamId, encodeHeaderBlock(fields, [0]), endStream));
  }

  /**
   * The highest client id among the streams the pods got with an id up to `last` (a GOAWAY's
   * last-stream id, in the pods' ids): those under their own id, and the renumbered ones remembered.
   */
  private clientIdsUpTo(last: number): number {
    // Every stream the pods got (2^31-1, a graceful GOAWAY's first): the same for the client. Ids
    // only ever rise on the way to the pods, so no client id is above its pods' id.
    if (last >= this.nextUpstreamId - 2) return last;
    let highest = Math.min(last, this.highestIdentityId);
    for (const renumbered of this.byUpstreamId.values()) {
      if (renumbered.upstreamId <= last) highest = Math.max(highest, renumbered.clientId);
    }
    return highest;
  }

  /**
   * A renumbered stream is over. Its ids stay mapped for a while: a late frame (a reset crossing an
   * END_STREAM, a CONTINUATION) must still reach its own stream, never another one's under the
   * same id.
   */
  private retireRenumbered(renumbered: Renumbered): void {
    if (this.retired.includes(renumbered)) return;
    this.retired.push(renumbered);
    if (this.retired.length <= RENUMBERED_KEPT) return;
    const old = this.retired.shift()!;
    this.byClientId.delete(old.clientId);
    this.byUpstreamId.delete(old.upstreamId);
  }

  private flushToUpstream(): void {
    const out = this.toUpstream.take();
    if (out && !this.upstream.write(out)) this.client.pause();
  }

  // ---- streams taken out for a developer -------------------------------------------------------

  private takeOut(id: number, target: Upstream, fields: HeaderList, endStream: boolean): void {
    this.reencode = true;
    const taken: TakenStream = {
      id,
      target,
      fields,
      requestEnded: endStream,
      phase: "connecting",
      held: [],
      heldBytes: 0,
      creditWhileConnecting: 0,
      window: this.clientInitialWindow,
      out: [],
      outBytes: 0,
      responded: false,
      answerEnded: false,
      endSent: false,
      uncredited: 0,
    };
    this.taken.set(id, taken);
    this.takenIds.add(id);
    this.highestTakenId = id;
    if (this.takenIds.size > TAKEN_IDS_KEPT) {
      let drop = this.takenIds.size - TAKEN_IDS_KEPT / 2;
      for (const old of this.takenIds) {
        if (drop-- <= 0) break;
        if (!this.taken.has(old)) this.takenIds.delete(old);
      }
    }
    this.sessions.get(target).then(
      (session) => this.guard(() => this.openOnDeveloper(taken, session)),
      (error: Error) => this.guard(() => this.developerUnreachable(taken, error)),
    );
  }

  /** The developer cannot be reached: the stream goes to the pods after all, with what the client sent meanwhile. */
  private developerUnreachable(taken: TakenStream, error: Error): void {
    if (taken.phase !== "connecting" || this.ended) return;
    this.doneConnecting(taken);
    const { ctx } = this;
    ctx.health.markDown(taken.target);
    ctx.counters.routed--;
    ctx.counters.fallbacks++;
    ctx.log.info("route.fallback", { port: ctx.port, upstream: upstreamKey(taken.target), why: error.message });
    taken.phase = "closed";
    this.taken.delete(taken.id);
    this.takenIds.delete(taken.id);
    this.openOnUpstream(undefined, taken.fields, taken.id, taken.requestEnded);
    const renumbered = this.byClientId.get(taken.id);
    const upstreamId = renumbered?.upstreamId ?? taken.id;
    for (const item of taken.held) {
      if ("trailers" in item) {
        this.toUpstream.add(headersFrames(upstreamId, encodeHeaderBlock(item.trailers, [0]), item.endStream));
        if (renumbered && item.endStream) renumbered.clientEnded = true;
        continue;
      }
      const { buffer, at, end } = item;
      this.passToUpstream(buffer, at, end, buffer[at + 3]!, buffer[at + 4]!, taken.id);
    }
    // The stream credit the client gave while the stream waited belongs to the pods now.
    if (taken.creditWhileConnecting > 0) this.toUpstream.add(windowUpdateFrame(upstreamId, taken.creditWhileConnecting));
    this.flushToUpstream();
  }

  private openOnDeveloper(taken: TakenStream, session: ClientHttp2Session): void {
    if (taken.phase !== "connecting" || this.ended) return;
    this.doneConnecting(taken);
    let developer: ClientHttp2Stream;
    try {
      developer = session.request(requestHeaders(taken.fields), { endStream: taken.requestEnded });
    } catch (error) {
      taken.phase = "open";
      return this.answerFailure(taken, (error as Error).message);
    }
    taken.developer = developer;
    taken.phase = "open";
    // Every handler runs under guard: an exception in one must end this connection, not the router.
    developer.on("response", (headers, flags) =>
      this.guard(() => {
        if (taken.phase === "closed") return;
        taken.responded = true;
        const endStream = (flags & Flag.END_STREAM) !== 0;
        this.mine.push(this.ownHeaders(taken.id, responseFields(headers, true), endStream));
        if (endStream) {
          // A headers-only answer (an early gRPC status, a 401) may come before the whole request.
          taken.endSent = true;
          this.endAnsweredStream(taken);
        }
        this.pumpClient();
      }),
    );
    developer.on("data", (chunk: Buffer) => {
      if (taken.phase === "closed" || taken.endSent) return;
      taken.out.push(chunk);
      taken.outBytes += chunk.length;
      if (taken.outBytes > DEVELOPER_BACKLOG) developer.pause();
      this.sending.add(taken);
      this.guard(() => this.pumpClient());
    });
    developer.on("trailers", (trailers) => (taken.trailers = trailers));
    developer.on("end", () => {
      if (taken.phase === "closed" || taken.endSent) return;
      taken.answerEnded = true;
      this.sending.add(taken);
      this.guard(() => this.pumpClient());
    });
    developer.on("drain", () => {
      if (taken.uncredited === 0 || taken.phase === "closed") return;
      this.mine.push(windowUpdateFrame(taken.id, taken.uncredited));
      taken.uncredited = 0;
      this.guard(() => this.pumpClient());
    });
    developer.on("error", () => undefined); // 'close' carries the outcome
    developer.on("close", () =>
      this.guard(() => {
        if (taken.phase === "closed") return;
        if (!taken.responded) return this.answerFailure(taken, `the upstream reset the stream (code ${developer.rstCode ?? "?"})`);
        if (taken.endSent) return this.closeTaken(taken);
        // An answer that ended cleanly still goes out in full; its end closes the stream then.
        if (taken.answerEnded) return this.pumpClient();
        this.closeTaken(taken, developer.rstCode || NGHTTP2_INTERNAL_ERROR);
      }),
    );
    for (const item of taken.held.splice(0)) {
      if ("trailers" in item) this.takenStreamTrailers(taken, item.trailers, item.endStream);
      else this.takenStreamFrame(taken, item);
    }
  }

  private takenStreamFrame(taken: TakenStream, frame: FrameRef): void {
    const { buffer, at, end } = frame;
    const type = buffer[at + 3]!;
    const flags = buffer[at + 4]!;
    const payload = buffer.subarray(at + FRAME_HEADER_BYTES, end);
    if (taken.phase === "connecting") return this.holdWhileConnecting(taken, frame, type, payload);
    switch (type) {
      case FrameType.DATA: {
        // The pods' streams share the connection's window.
        this.creditBack(type, payload.length);
        const developer = taken.developer;
        if (taken.requestEnded || !developer || taken.phase === "closed") return;
        const data = dataOf(payload, flags);
        const flowing = data.length === 0 || developer.write(data);
        const endStream = (flags & Flag.END_STREAM) !== 0;
        if (!endStream && payload.length > 0) {
          if (flowing) this.mine.push(windowUpdateFrame(taken.id, payload.length));
          else taken.uncredited += payload.length;
        }
        if (endStream) {
          taken.requestEnded = true;
          developer.end();
        }
        return;
      }
      case FrameType.RST_STREAM:
        taken.developer?.close(NGHTTP2_CANCEL);
        return this.closeTaken(taken);
      case FrameType.WINDOW_UPDATE:
        if (payload.length === 4) {
          taken.window += payload.readUInt32BE(0) & 0x7fffffff;
          this.sending.add(taken);
        }
        return;
      default:
        return; // PRIORITY and the like: nothing for a node:http2 stream
    }
  }

  /**
   * Keeps what the client sends on a stream whose developer's session is being made: DATA (bounded by
   * the stream's window, copied so that no whole read stays pinned) and a reset, in order. Credit is
   * counted, not kept as frames; priorities are dropped.
   */
  private holdWhileConnecting(taken: TakenStream, frame: FrameRef, type: number, payload: Buffer): void {
    if (type === FrameType.WINDOW_UPDATE) {
      if (payload.length !== 4) return;
      const increment = payload.readUInt32BE(0) & 0x7fffffff;
      taken.window += increment;
      taken.creditWhileConnecting += increment;
      return;
    }
    if (type !== FrameType.DATA && type !== FrameType.RST_STREAM) return;
    const copy = Buffer.from(frame.buffer.subarray(frame.at, frame.end));
    taken.heldBytes += payload.length;
    this.heldWhileConnecting += payload.length;
    taken.held.push({ buffer: copy, at: 0, end: copy.length });
    // A large upload waits in the client's socket rather than here, until the developer is reached.
    if (this.heldWhileConnecting > HELD_WHILE_CONNECTING_MAX && !this.pausedForConnecting) {
      this.pausedForConnecting = true;
      this.client.pause();
    }
  }

  /** A taken stream no longer waits for its developer: what it held no longer counts. */
  private doneConnecting(taken: TakenStream): void {
    this.heldWhileConnecting -= taken.heldBytes;
    taken.heldBytes = 0;
    if (this.pausedForConnecting && this.heldWhileConnecting <= HELD_WHILE_CONNECTING_MAX / 2) {
      this.pausedForConnecting = false;
      if (this.upstream.backlog === 0) this.client.resume();
    }
  }

  /** The answer ended before the request: the client may stop sending, without error (RFC 9113 §8.1). */
  private endAnsweredStream(taken: TakenStream): void {
    taken.phase = "closed";
    this.taken.delete(taken.id);
    this.sending.delete(taken);
    if (!taken.requestEnded) {
      this.mine.push(rstStreamFrame(taken.id, NGHTTP2_NO_ERROR));
      taken.developer?.close(NGHTTP2_NO_ERROR);
    }
  }

  /** A header block of the router's own for the client, encoded as it is written (see flushMine). */
  private ownHeaders(streamId: number, fields: HeaderList, endStream: boolean): OwnHeaders {
    return { streamId, fields, endStream };
  }

  /** The router's own frames go to the client; the first header block carries the size updates owed. */
  private flushMine(): void {
    for (const item of this.mine) {
      if (Buffer.isBuffer(item)) {
        this.toClient.add(item);
        continue;
      }
      const due = this.tableSizeUpdateDue;
      this.tableSizeUpdateDue = undefined;
      const updates = due === undefined ? [] : due.smallest < due.final ? [due.smallest, due.final] : [due.final];
      this.toClient.add(headersFrames(item.streamId, encodeHeaderBlock(item.fields, updates), item.endStream, this.clientMaxFrame));
    }
    this.mine = [];
  }

  private takenStreamTrailers(taken: TakenStream, trailers: HeaderList, endStream: boolean): void {
    if (taken.phase === "connecting") return void taken.held.push({ trailers, endStream });
    // Like node:http2's server-side proxying, request trailers end the request; their fields are not sent on.
    if (!endStream || taken.requestEnded) return;
    taken.requestEnded = true;
    taken.developer?.end();
  }

  /** Nothing usable came from the developer: the client gets an answer that says so. */
  private answerFailure(taken: TakenStream, why: string): void {
    const { ctx } = this;
    ctx.counters.upstreamErrors++;
    ctx.log.info("http2.bad-gateway", { port: ctx.port, error: why });
    if (taken.responded) return this.closeTaken(taken, NGHTTP2_INTERNAL_ERROR);
    taken.responded = true;
    // gRPC clients read grpc-status; 14 is UNAVAILABLE, what a gone backend is.
    const fields: HeaderList = [
      [":status", "502"],
      ["content-type", "text/plain; charset=utf-8"],
      ["grpc-status", "14"],
      ["grpc-message", encodeURIComponent(`ktctl router: ${why}`)],
    ];
    this.mine.push(this.ownHeaders(taken.id, fields, false));
    const body = Buffer.from(`ktctl router: ${why}\n`);
    taken.out.push(body);
    taken.outBytes += body.length;
    taken.answerEnded = true;
    this.sending.add(taken);
    this.pumpClient();
  }

  /** The stream is over for the router; with a code, the client hears of it as a reset. */
  private closeTaken(taken: TakenStream, resetCode?: number): void {
    if (taken.phase === "closed") return;
    taken.phase = "closed";
    this.taken.delete(taken.id);
    this.sending.delete(taken);
    if (resetCode !== undefined && !taken.endSent) this.mine.push(rstStreamFrame(taken.id, resetCode));
    this.pumpClient();
  }

  private dropTakenStreams(): void {
    for (const taken of this.taken.values()) {
      taken.phase = "closed";
      taken.developer?.close(NGHTTP2_CANCEL);
    }
    this.taken.clear();
    this.sending.clear();
  }

  // ---- pods -> client --------------------------------------------------------------------------

  private upstreamBytes(chunk: Buffer): void {
    if (this.ended) return;
    this.fromUpstream.push(chunk, this.upstreamFrame);
    this.pumpClient();
  }

  private readonly upstreamFrame: FrameVisitor = (buffer, at, end, type, flags, id) => {
    let clientId = id;
    if (id !== 0 && this.byUpstreamId.size > 0) {
      const renumbered = this.byUpstreamId.get(id);
      if (renumbered) {
        clientId = renumbered.clientId;
        buffer.writeUInt32BE(clientId, at + 5);
        if (type === FrameType.RST_STREAM) this.retireRenumbered(renumbered);
        else if ((type === FrameType.DATA || type === FrameType.HEADERS) && flags & Flag.END_STREAM) {
          renumbered.upstreamEnded = true;
          if (renumbered.clientEnded) this.retireRenumbered(renumbered);
        }
      }
    }
    if (type === FrameType.GOAWAY && end - at >= FRAME_HEADER_BYTES + 8) {
      // The last stream the pods will answer, in the client's ids; the router's own count as answered.
      const last = buffer.readUInt32BE(at + FRAME_HEADER_BYTES) & 0x7fffffff;
      // Never higher than a GOAWAY the client already has (RFC 9113 §6.8).
      const lastForClient = Math.min(Math.max(this.clientIdsUpTo(last), this.highestTakenId), this.lastGoawayToClient);
      this.lastGoawayToClient = lastForClient;
      buffer.writeUInt32BE(lastForClient, at + FRAME_HEADER_BYTES);
    }
    if (type === FrameType.SETTINGS && !(flags & Flag.ACK)) {
      // The client's encoder may use as large a table as the pods allow.
      for (const [setting, value] of settingsOf(buffer.subarray(at + FRAME_HEADER_BYTES, end))) if (setting === Setting.HEADER_TABLE_SIZE) this.decoder.allowTableSize(value);
    }
    if (this.heldForClient.length > 0 && this.mustWait(type, clientId, end - at - FRAME_HEADER_BYTES)) return this.holdForClient(Buffer.from(buffer.subarray(at, end)));
    if (type === FrameType.DATA && end - at - FRAME_HEADER_BYTES > this.clientWindow) return this.holdForClient(Buffer.from(buffer.subarray(at, end)));
    this.released(type, flags, clientId, end - at - FRAME_HEADER_BYTES);
    this.toClient.pass(buffer, at, end);
  };

  // The pods' frames that wait for the client's window: a DATA frame beyond it, and behind it what
  // must keep its order: the rest of its stream, and every header block and SETTINGS (HPACK state
  // and table size changes must reach the client in the order the pods sent them). The rest (PING,
  // credit, GOAWAY, other streams' DATA) goes on.
  private readonly heldStreams = new Set<number>();
  private heldHeaderFrames = 0;
  /** A DATA frame of the pods waits for credit: the router's own answers do not take it first. */
  private podsWaitForWindow = false;
  private pausedForHeld = false;
  /** Request bytes held for taken streams whose developers are being reached, all streams together. */
  private heldWhileConnecting = 0;
  private pausedForConnecting = false;

  private mustWait(type: number, streamId: number, length: number): boolean {
    // Credit and priorities carry no order with the stream's data: an upload's credit never waits for a download's.
    if (type === FrameType.WINDOW_UPDATE || type === FrameType.PRIORITY) return false;
    if (streamId !== 0 && this.heldStreams.has(streamId)) return true;
    if (isHeaderFrame(type) || type === FrameType.SETTINGS) return this.heldHeaderFrames > 0;
    return type === FrameType.DATA && length > this.clientWindow;
  }

  private holdForClient(frame: Buffer): void {
    this.countHeld(frame[3]!, frame.readUInt32BE(5) & 0x7fffffff);
    this.heldForClient.push(frame);
    this.heldForClientBytes += frame.length;
    // The pods overran the client's window by at most what the router sent of its own; more is a
    // pods' peer that ignores flow control: stop reading it until the client gives credit.
    this.pauseIfHeldTooMuch();
  }

  /** What a held frame makes wait behind it (see mustWait). */
  private countHeld(type: number, streamId: number): void {
    if (streamId !== 0) this.heldStreams.add(streamId);
    if (isHeaderFrame(type)) this.heldHeaderFrames++;
    if (type === FrameType.DATA) this.podsWaitForWindow = true;
  }

  /** Never in the middle of a header block the client has begun: its end is needed to release anything. */
  private pauseIfHeldTooMuch(): void {
    if (this.heldForClientBytes > HELD_FOR_CLIENT_MAX && !this.upstreamMidBlock && !this.pausedForHeld) {
      this.pausedForHeld = true;
      this.upstream.pause();
    }
  }

  /** Bookkeeping for a frame of the pods on its way to the client. */
  private released(type: number, flags: number, streamId: number, length: number): void {
    this.prefaceForwarded = true;
    if (type === FrameType.DATA) this.clientWindow -= length;
    else if (isHeaderFrame(type)) {
      this.upstreamMidBlock = (flags & Flag.END_HEADERS) === 0;
      if (!this.upstreamMidBlock) this.pauseIfHeldTooMuch();
      else if (this.pausedForHeld) {
        // The block's CONTINUATION must be read, or nothing held can go to the client again.
        this.pausedForHeld = false;
        this.upstream.resume();
      }
      // The pods' block carries whatever table size update the client was owed.
      this.tableSizeUpdateDue = undefined;
    } else if (type === FrameType.SETTINGS && flags & Flag.ACK) {
      // The pods took one of the client's SETTINGS: a new HEADER_TABLE_SIZE holds from here.
      const size = this.clientTableSizes.shift();
      if (size !== undefined) {
        const due = this.tableSizeUpdateDue;
        this.tableSizeUpdateDue = { smallest: Math.min(due?.smallest ?? size, size), final: size };
      }
    }
  }

  /** Writes to the client what may go now: the pods' frames in their order, then the router's own. */
  private pumpClient(): void {
    if (this.client.closed) return;
    if (this.heldForClient.length > 0 && !this.upstreamMidBlock) this.releaseHeld();
    if (this.sending.size > 0) this.sendAnswers();
    if (this.prefaceForwarded && !this.upstreamMidBlock && this.mine.length > 0) this.flushMine();
    const out = this.toClient.take();
    if (out && !this.client.write(out)) this.upstream.pause();
  }

  private releaseHeld(): void {
    const waiting: Buffer[] = [];
    this.heldStreams.clear();
    this.heldHeaderFrames = 0;
    this.podsWaitForWindow = false;
    for (const frame of this.heldForClient) {
      const type = frame[3]!;
      const streamId = frame.readUInt32BE(5) & 0x7fffffff;
      if (this.mustWait(type, streamId, frame.length - FRAME_HEADER_BYTES)) {
        waiting.push(frame);
        this.countHeld(type, streamId);
        continue;
      }
      this.heldForClientBytes -= frame.length;
      this.released(type, frame[4]!, streamId, frame.length - FRAME_HEADER_BYTES);
      this.toClient.add(frame);
    }
    this.heldForClient = waiting;
    if (this.pausedForHeld && this.heldForClientBytes <= HELD_FOR_CLIENT_MAX / 2) {
      this.pausedForHeld = false;
      if (this.client.backlog === 0) this.upstream.resume();
    }
  }

  /** The developers' answer bytes, as far as the client's windows allow, and their ends. */
  private sendAnswers(): void {
    for (const taken of this.sending) {
      while (taken.out.length > 0 && !this.podsWaitForWindow && this.clientWindow > 0 && taken.window > 0) {
        const head = taken.out[0]!;
        const n = Math.min(head.length, this.clientWindow, taken.window, this.clientMaxFrame);
        const piece = n === head.length ? head : head.subarray(0, n);
        if (n === head.length) taken.out.shift();
        else taken.out[0] = head.subarray(n);
        taken.outBytes -= n;
        taken.window -= n;
        this.clientWindow -= n;
        this.routerDebt += n;
        this.mine.push(dataFrame(taken.id, piece, false));
      }
      if (taken.outBytes <= DEVELOPER_BACKLOG / 2 && taken.developer?.isPaused()) taken.developer.resume();
      if (taken.out.length > 0) continue;
      this.sending.delete(taken);
      if (!taken.answerEnded || taken.endSent) continue;
      taken.endSent = true;
      const trailers = taken.trailers ? responseFields(taken.trailers, false) : undefined;
      this.mine.push(trailers ? this.ownHeaders(taken.id, trailers, true) : dataFrame(taken.id, Buffer.alloc(0), true));
      this.endAnsweredStream(taken);
    }
  }
}

/** A header's value by lowercase name (repeated fields joined), as route matching asks for it. */
function headerLookup(fields: HeaderList): (name: string) => string | undefined {
  return (name) => {
    let value: string | undefined;
    for (const [field, fieldValue] of fields) {
      if (field === name) value = value === undefined ? fieldValue : `${value}, ${fieldValue}`;
    }
    return value;
  };
}

/** A taken-out request for node:http2: connection-specific fields dropped, as the pods' relay would never add them. */
function requestHeaders(fields: HeaderList): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {};
  for (const [name, value] of fields) {
    if (HOP_BY_HOP.has(name) || (name === "te" && value !== "trailers")) continue;
    const previous = headers[name];
    if (previous === undefined) headers[name] = value;
    else if (Array.isArray(previous)) previous.push(value);
    else headers[name] = [String(previous), value];
  }
  headers[":scheme"] = "http";
  return headers;
}

/** A developer's answer headers (or trailers) as header fields, pseudo-headers first. */
function responseFields(headers: IncomingHttpHeaders, withStatus: boolean): HeaderList {
  const fields: HeaderList = withStatus ? [[":status", String(headers[":status"] ?? 502)]] : [];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || name.startsWith(":") || HOP_BY_HOP.has(name)) continue;
    if (Array.isArray(value)) for (const each of value) fields.push([name, each]);
    else fields.push([name, String(value)]);
  }
  return fields;
}

const isHeaderFrame = (type: number): boolean => type === FrameType.HEADERS || type === FrameType.CONTINUATION || type === FrameType.PUSH_PROMISE;
