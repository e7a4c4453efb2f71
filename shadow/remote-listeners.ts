// The shadow's remote listeners (tcpip-forward). They belong to the shadow, not to one SSH
// connection: when the host's link drops and it reconnects, its new connection takes the
// listeners over instead of failing with "address in use" against its own dead predecessor.
// While no connection owns a listener, new cluster connections are held (briefly) rather than
// refused, so a port-forward blip looks like latency to the cluster, not like an outage.
// A connection goes to the host on one of its waiting reverse streams when it has one (no round
// trip before the first bytes travel), else as an SSH forwarded-tcpip channel.

import net from "node:net";
import type { Channel } from "ssh2";
import { splice, type Splice } from "../core/protocol/splice.ts";
import type { ShadowLog } from "./log.ts";
import type { ReverseCarrier } from "./reverse-server.ts";

/** The SSH connection a listener delivers to. */
export interface ListenerOwner {
  readonly id: number;
  readonly alive: boolean;
  forwardOut(
    boundAddr: string,
    boundPort: number,
    remoteAddr: string,
    remotePort: number,
    callback: (error: Error | undefined, channel: Channel) => void,
  ): void;
  adopt(spliced: Splice): void;
  /** A reverse stream of this connection's waiting for a cluster connection, if any (reverse-server.ts). */
  takeReverse?(): ReverseCarrier | undefined;
}

export interface RemoteListenerTiming {
  /** A listener nobody reclaims for this long is closed. */
  orphanGraceMs: number;
  /** A connection held for an absent owner is dropped after this long. */
  holdMs: number;
  /** At most this many connections are held per listener. */
  maxHeld: number;
}

/** Upper bound on waiting for a refused peer to close its side. */
const GENTLE_CLOSE_LIMIT_MS = 10_000;

export const DEFAULT_REMOTE_LISTENER_TIMING: RemoteListenerTiming = { orphanGraceMs: 30_000, holdMs: 10_000, maxHeld: 256 };

interface Entry {
  server: net.Server;
  port: number;
  /** The bind address exactly as the owner asked for it: the host matches forwarded channels on it. */
  announcedAddr: string;
  owner: ListenerOwner | undefined;
  held: Map<net.Socket, ReturnType<typeof setTimeout>>;
  orphanTimer: ReturnType<typeof setTimeout> | undefined;
}

export class RemoteListeners {
  private readonly entries = new Map<number, Entry>();

  constructor(
    private readonly log: ShadowLog,
    private readonly timing: RemoteListenerTiming = DEFAULT_REMOTE_LISTENER_TIMING,
  ) {}

  /** Whether some listener has a live owner: cluster connections reach a host through this shadow. */
  hasLiveOwner(): boolean {
    for (const entry of this.entries.values()) if (entry.owner?.alive) return true;
    return false;
  }

  /**
   * Listens (or takes over a listener) for `owner`; returns the port actually bound.
   * Connections held meanwhile are not delivered yet: the host refuses forwarded channels for a
   * listen it has not seen confirmed, so call deliverHeld() once the reply is sent.
   */
  async bind(owner: ListenerOwner, bindAddr: string, port: number): Promise<number> {
    const existing = port === 0 ? undefined : this.entries.get(port);
    if (existing) {
      const previous = existing.owner;
      existing.owner = owner;
      existing.announcedAddr = bindAddr;
      clearTimeout(existing.orphanTimer);
      existing.orphanTimer = undefined;
      if (previous !== owner) this.log.info("listen.taken-over", { port, conn: owner.id, from: previous?.id ?? "none" });
      return port;
    }

    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
    const entry: Entry = { server, port, announcedAddr: bindAddr, owner, held: new Map(), orphanTimer: undefined };
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      // SSH's "" means every address.
      server.listen({ host: bindAddr === "" ? "0.0.0.0" : bindAddr, port }, () => {
        server.off("error", reject);
        resolve();
      });
    });
    entry.port = (server.address() as net.AddressInfo).port;
    server.on("connection", (socket) => this.arrived(entry, socket));
    server.on("error", (error) => this.log.warn("listen.error", { port: entry.port, error: error.message }));
    this.entries.set(entry.port, entry);
    this.log.info("listen.open", { addr: bindAddr, port: entry.port, conn: owner.id });
    return entry.port;
  }

  /** Hands the connections held while the listener had no owner to its (new) owner. */
  deliverHeld(owner: ListenerOwner, port: number): void {
    const entry = this.entries.get(port);
    if (!entry || entry.owner !== owner) return;
    for (const [socket, timer] of entry.held) {
      clearTimeout(timer);
      this.deliver(entry, socket);
    }
    entry.held.clear();
  }

  /** cancel-tcpip-forward: only the current owner may close a listener. */
  release(owner: ListenerOwner, port: number): boolean {
    const entry = this.entries.get(port);
    if (!entry || entry.owner !== owner) return false;
    this.close(entry, "cancelled");
    return true;
  }

  /** The owner's connection is gone: keep its listeners for a while, for its successor. */
  orphan(owner: ListenerOwner): void {
    for (const entry of this.entries.values()) {
      if (entry.owner !== owner) continue;
      entry.owner = undefined;
      entry.orphanTimer = setTimeout(() => this.close(entry, "not reclaimed"), this.timing.orphanGraceMs);
      this.log.info("listen.orphaned", { port: entry.port, conn: owner.id, graceMs: this.timing.orphanGraceMs });
    }
  }

  closeAll(): void {
    for (const entry of [...this.entries.values()]) this.close(entry, "shutdown");
  }

  private arrived(entry: Entry, socket: net.Socket): void {
    socket.on("error", () => {}); // until spliced: a reset while waiting must not crash the shadow
    if (entry.owner?.alive) return this.deliver(entry, socket);
    if (entry.held.size >= this.timing.maxHeld) return void socket.destroy();
    entry.held.set(
      socket,
      setTimeout(() => {
        entry.held.delete(socket);
        socket.destroy();
      }, this.timing.holdMs),
    );
    socket.once("close", () => {
      clearTimeout(entry.held.get(socket));
      entry.held.delete(socket);
    });
  }

  private deliver(entry: Entry, socket: net.Socket): void {
    const owner = entry.owner!;
    // A waiting reverse stream carries it without a round trip to the host; SSH when none waits.
    const reverse = owner.takeReverse?.();
    if (reverse) return reverse.carry(socket, entry.port);
    const fail = () => closeGently(socket);
    try {
      owner.forwardOut(entry.announcedAddr, entry.port, socket.remoteAddress ?? "0.0.0.0", socket.remotePort ?? 0, (error, channel) => {
        if (error) return fail();
        if (socket.destroyed) return void channel.close();
        owner.adopt(splice(socket, channel));
      });
    } catch {
      fail();
    }
  }

  private close(entry: Entry, why: string): void {
    if (this.entries.get(entry.port) !== entry) return;
    this.entries.delete(entry.port);
    clearTimeout(entry.orphanTimer);
    for (const [socket, timer] of entry.held) {
      clearTimeout(timer);
      socket.destroy();
    }
    entry.held.clear();
    entry.server.close();
    this.log.info("listen.close", { port: entry.port, why });
  }
}

/** The host would not take the connection: end it with a FIN, not a reset (which unread data would cause). */
function closeGently(socket: net.Socket): void {
  socket.allowHalfOpen = false; // the peer's FIN then completes the close
  socket.resume(); // read and drop whatever it sent
  socket.end();
  setTimeout(() => socket.destroy(), GENTLE_CLOSE_LIMIT_MS).unref();
}
