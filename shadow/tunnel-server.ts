// The shadow's SSH endpoint. It lets in exactly one key (the session's), opens streams into the
// cluster for the host (direct-tcpip), listens for it (tcpip-forward) and serves the control
// channel. It never listens by itself: tunnel-role.ts hands it accepted sockets.

import net from "node:net";
import os from "node:os";
import { lookup } from "node:dns/promises";
import { Server, type Connection, type ParsedKey } from "ssh2";
import { CONTROL_SUBSYSTEM, streamFailureOf, TUNNEL_PROTOCOL_VERSION, type StreamFailure } from "../core/protocol/tunnel.ts";
import { fingerprint } from "../core/protocol/keys.ts";
import { splice, type Splice } from "../core/protocol/splice.ts";
import { ControlAnswerError, serveControl, type ControlHandlers, type ControlSession } from "./control.ts";
import type { ShadowLog } from "./log.ts";
import { RemoteListeners, type ListenerOwner, type RemoteListenerTiming } from "./remote-listeners.ts";
import type { ReverseServer } from "./reverse-server.ts";

const AUTH_TIMEOUT_MS = 30_000;

export interface TunnelServerOptions {
  authorizedKey: ParsedKey;
  hostKey: string;
  log: ShadowLog;
  control: ControlHandlers;
  /** What the hello answer reports. */
  identity: { version: string; roles: string[]; session: string; podIP?: string; features?: string[] };
  /** Bound on connecting to a cluster address for a direct-tcpip stream. */
  connectTimeoutMs?: number;
  listenerTiming?: RemoteListenerTiming;
  /** Where remote listeners find waiting reverse streams (absent: SSH channels only). */
  reverse?: ReverseServer;
}

/** One authenticated (or authenticating) SSH connection from the host. */
class HostConnection implements ListenerOwner {
  alive = true;
  control: ControlSession | undefined;
  private readonly splices = new Set<Splice>();

  constructor(
    readonly id: number,
    private readonly ssh: Connection,
    private readonly reverse: ReverseServer | undefined,
  ) {}

  takeReverse: ListenerOwner["takeReverse"] = () => this.reverse?.take(this.id);

  forwardOut: ListenerOwner["forwardOut"] = (boundAddr, boundPort, remoteAddr, remotePort, callback) => {
    this.ssh.forwardOut(boundAddr, boundPort, remoteAddr, remotePort, callback);
  };

  adopt(spliced: Splice): void {
    this.splices.add(spliced);
    spliced.closed.then(() => this.splices.delete(spliced));
  }

  /** The connection is gone: reset what it carried rather than let it look cleanly finished. */
  gone(): void {
    this.alive = false;
    this.reverse?.forget(this.id);
    for (const spliced of this.splices) spliced.abort();
    this.splices.clear();
  }

  end(): void {
    this.ssh.end();
  }
}

export class TunnelServer {
  private readonly ssh: Server;
  private readonly listeners: RemoteListeners;
  private readonly connections = new Set<HostConnection>();
  private readonly authorizedBlob: Buffer;
  private readonly connectTimeoutMs: number;
  private nextId = 1;

  constructor(private readonly options: TunnelServerOptions) {
    this.authorizedBlob = options.authorizedKey.getPublicSSH();
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.listeners = new RemoteListeners(options.log, options.listenerTiming);
    this.ssh = new Server({ hostKeys: [options.hostKey], ident: "ktctl-shadow" }, (ssh, info) =>
      this.connected(ssh, `${info.ip}:${info.port}`),
    );
    this.ssh.on("error", (error: Error) => options.log.debug("ssh.error", { error: error.message }));
    registerTunnelAnswers(options.control, options.identity);
  }

  accept(socket: net.Socket): void {
    socket.setNoDelay(true);
    this.ssh.injectSocket(socket);
  }

  /** Whether a live host listens on a cluster port through this server (see RemoteListeners). */
  servesEndpoint(): boolean {
    return this.listeners.hasLiveOwner();
  }

  close(): void {
    this.listeners.closeAll();
    for (const connection of this.connections) connection.end();
  }

  private connected(ssh: Connection, from: string): void {
    const connection = new HostConnection(this.nextId++, ssh, this.options.reverse);
    const { log } = this.options;
    let authenticated = false;
    let refusalLogged = false;
    let lastError: string | undefined;
    // A connection that does not authenticate promptly is not our host.
    const authDeadline = setTimeout(() => ssh.end(), AUTH_TIMEOUT_MS);

    ssh.on("authentication", (auth) => {
      if (auth.method !== "publickey") return auth.reject(["publickey"]);
      const matches = auth.key.algo === this.options.authorizedKey.type && auth.key.data.equals(this.authorizedBlob);
      const verified = matches && (!auth.signature || this.options.authorizedKey.verify(auth.blob!, auth.signature, auth.hashAlgo) === true);
      if (!verified) {
        if (!refusalLogged) log.warn("auth.refused", { conn: connection.id, from, key: fingerprint(auth.key.data) });
        refusalLogged = true;
        return auth.reject(["publickey"]);
      }
      auth.accept(); // without a signature this only says "that key would do"; ssh2 asks again, signed
    });

    ssh.on("ready", () => {
      authenticated = true;
      clearTimeout(authDeadline);
      this.connections.add(connection);
      log.info("conn.open", { conn: connection.id, from });
    });

    ssh.on("tcpip", (accept, reject, info) => {
      const target = `${info.destIP}:${info.destPort}`;
      const socket = net.connect({ host: info.destIP, port: info.destPort, allowHalfOpen: true });
      const timer = setTimeout(() => socket.destroy(Object.assign(new Error("no answer"), { code: "ETIMEDOUT" })), this.connectTimeoutMs);
      const failed = (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        const reason = streamFailureOf(error.code);
        // Sent ahead of the rejection on the same connection, so the host reads it first.
        connection.control?.notify({ type: "stream-failed", ref: info.srcPort, reason, message: explainStreamFailure(reason, info.destIP, error) });
        reject();
        log.info("stream.failed", { conn: connection.id, to: target, reason, error: error.code ?? error.message });
      };
      socket.once("error", failed);
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.off("error", failed);
        if (!connection.alive) return void socket.destroy();
        connection.adopt(splice(socket, accept()));
        log.debug("stream.open", { conn: connection.id, to: target });
      });
    });

    ssh.on("request", (accept, reject, name, info) => {
      if (name === "tcpip-forward") {
        this.listeners.bind(connection, info.bindAddr, info.bindPort).then(
          (port) => {
            accept?.(port);
            this.listeners.deliverHeld(connection, port);
          },
          (error: NodeJS.ErrnoException) => {
            log.warn("listen.failed", { conn: connection.id, port: info.bindPort, error: error.code ?? error.message });
            reject?.();
          },
        );
      } else if (name === "cancel-tcpip-forward") {
        this.listeners.release(connection, info.bindPort) ? accept?.() : reject?.();
      } else {
        reject?.();
      }
    });

    ssh.on("session", (accept) => {
      const session = accept();
      session.on("subsystem", (acceptSubsystem, rejectSubsystem, info) => {
        if (info.name !== CONTROL_SUBSYSTEM) return rejectSubsystem();
        connection.control?.close();
        connection.control = serveControl(acceptSubsystem(), this.options.control, { connection: connection.id }, log);
      });
    });

    ssh.on("error", (error) => (lastError = error.message));
    ssh.on("close", () => {
      clearTimeout(authDeadline);
      connection.gone();
      this.connections.delete(connection);
      this.listeners.orphan(connection);
      // Probes and scanners that never authenticate are not worth a line each.
      if (authenticated) log.info("conn.closed", { conn: connection.id, error: lastError });
      else if (refusalLogged) log.debug("conn.closed", { conn: connection.id, error: lastError });
    });
  }
}

/** The control answers the tunnel itself gives: hello, ping, resolve. */
function registerTunnelAnswers(control: ControlHandlers, identity: TunnelServerOptions["identity"]): void {
  control.handle("hello", (hello) => {
    if (hello.protocol !== TUNNEL_PROTOCOL_VERSION) {
      throw new ControlAnswerError(
        "protocol-mismatch",
        `the shadow speaks tunnel protocol ${TUNNEL_PROTOCOL_VERSION}, this ktctl speaks ${hello.protocol}`,
      );
    }
    return {
      type: "welcome",
      protocol: TUNNEL_PROTOCOL_VERSION,
      shadow: identity.version,
      roles: identity.roles,
      session: identity.session,
      hostname: os.hostname(),
      ...(identity.features?.length ? { features: identity.features } : {}),
      ...(identity.podIP ? { podIP: identity.podIP } : {}),
    };
  });
  control.handle("ping", () => ({ type: "pong" }));
  control.handle("resolve", async (request) => {
    // lookup() goes through the pod's resolv.conf: cluster DNS with the namespace search path.
    const found = await lookup(request.name, { all: true }).catch((error: NodeJS.ErrnoException) => {
      throw new ControlAnswerError(streamFailureOf(error.code) === "not-found" ? "not-found" : "failed", explainLookup(request.name, error));
    });
    return { type: "resolved", addresses: [...new Set(found.map((entry) => entry.address))] };
  });
}

/** Why a stream could not be opened, in the words the host shows (SSH and direct streams alike). */
export function explainStreamFailure(reason: StreamFailure, host: string, error: Error): string {
  switch (reason) {
    case "refused":
      return "connection refused";
    case "not-found":
      return `no such host "${host}"`;
    case "timeout":
      return "no answer (timed out)";
    case "unreachable":
      return "host unreachable";
    default:
      return error.message;
  }
}

function explainLookup(name: string, error: NodeJS.ErrnoException): string {
  return streamFailureOf(error.code) === "not-found" ? `no such host "${name}"` : `${error.message}`;
}
