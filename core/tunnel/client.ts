// The host's tunnel: keeps one Link to the shadow alive, makes a new one whenever it is lost,
// and keeps the remote listeners the modes asked for.
//
// The shadow's host key is not pinned by default: the shadow makes a new one at every start, and
// the stream we ride is already an authenticated port-forward to the very pod we created.

import net from "node:net";
import type { Duplex } from "node:stream";
import type { Channel, ClientChannel, TcpConnectionDetails } from "ssh2";
import { ExitCode, KtctlError, isKtctlError } from "../errors.ts";
import type { ObserveConnection, Tunnel } from "../plugin-api.ts";
import { backoffDelay } from "./backoff.ts";
import { sessionOf } from "../kube/portforward.ts";
import type { DirectStream, SiblingStreams } from "./direct.ts";
import type { ReverseArrival } from "./reverse.ts";
import { Link, PermanentLinkError, describeError, type LinkTiming, type ShadowInfo } from "./link.ts";
import { splice } from "../protocol/splice.ts";

export { StreamOpenError, type ShadowInfo } from "./link.ts";

export type TunnelState = "connected" | "reconnecting" | "closed";
type StateListener = (state: TunnelState, detail?: string) => void;

/** The part of consola the tunnel uses. */
export interface TunnelLogger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
}

export interface TunnelTiming extends LinkTiming {
  /** The first link must be up within this long, or createTunnel fails. */
  startTimeoutMs: number;
  /** Reconnect delays double from min to max. */
  backoffMinMs: number;
  backoffMaxMs: number;
  /** openStream/addRemoteListener wait at most this long for a link while reconnecting. */
  linkWaitMs: number;
}

export const DEFAULT_TUNNEL_TIMING: TunnelTiming = {
  handshakeTimeoutMs: 10_000,
  livenessIntervalMs: 1_000,
  deadAfterMs: 4_000,
  requestTimeoutMs: 10_000,
  startTimeoutMs: 30_000,
  backoffMinMs: 250,
  // A lost link is retried at least every 2 s (one port-forward upgrade, cheap for the API server):
  // after a 20 s outage the tunnel is back within about 2 s of the network, not 5.
  backoffMaxMs: 2_000,
  linkWaitMs: 15_000,
};

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

export interface TunnelOptions {
  /** Opens a fresh byte stream to the shadow's SSH port (a port-forward); called again on every reconnect. */
  connect: () => Promise<Duplex>;
  /** The session's private key (OpenSSH format, see keys.ts). */
  privateKey: string | Buffer;
  /** Return false to refuse the shadow's host key (raw SSH key blob). Default: accept. */
  hostKeyCheck?: (hostKey: Buffer) => boolean;
  logger: TunnelLogger;
  onState?: StateListener;
  /** Bound on one call of `connect` (default 10 s); the SSH handshake has its own (timing). */
  connectTimeoutMs?: number;
  /** Reported to the shadow for its log. */
  clientVersion?: string;
  timing?: Partial<TunnelTiming>;
  /**
   * Outbound streams as direct streams (their own port-forward streams to the shadow) when the
   * stream from `connect` can open siblings and the shadow serves them; SSH channels otherwise.
   * Default: on, unless KTCTL_TUNNEL_DIRECT=0.
   */
  direct?: boolean;
  /** How to open siblings of a stream from `connect` (default: its SPDY port-forward session, if any). */
  siblingsOf?: (sock: Duplex) => SiblingStreams | undefined;
  /**
   * Connections from the cluster to remote listeners on reverse streams (port-forward streams the
   * host keeps waiting at the shadow) when siblings can be opened and the shadow serves them; SSH
   * channels otherwise, and whenever no reverse stream is waiting. Default: on, unless KTCTL_TUNNEL_REVERSE=0.
   */
  reverse?: boolean;
  /**
   * Direct and reverse streams carry one connection after another, with a shadow that can: a new
   * connection opens no port-forward stream. Default: on, unless KTCTL_TUNNEL_REUSE=0.
   */
  reuse?: boolean;
}

/** The Tunnel of plugin-api.ts plus what the host itself uses. */
export interface SshTunnel extends Tunnel {
  readonly state: TunnelState | "connecting";
  /** What the shadow said about itself on the current (or last) link. */
  readonly shadow: ShadowInfo | undefined;
  /** Resolves a name with the pod's resolver (cluster DNS and the namespace's search path). */
  resolve(name: string): Promise<string[]>;
  /** Round trip through the shadow, in ms. */
  ping(): Promise<number>;
}

interface RemoteListener {
  localHost: string;
  localPort: number;
  refusalLogged: boolean;
  observe?: ObserveConnection;
}

/** Connects to the shadow (retrying transient failures for up to timing.startTimeoutMs) and keeps the link up. */
export async function createTunnel(options: TunnelOptions): Promise<SshTunnel> {
  const tunnel = new ReconnectingTunnel(options);
  await tunnel.start();
  return tunnel;
}

class ReconnectingTunnel implements SshTunnel {
  state: TunnelState | "connecting" = "connecting";
  shadow: ShadowInfo | undefined;
  private link: Link | undefined;
  private lastProblem = "not connected yet";
  private readonly timing: TunnelTiming;
  private readonly log: TunnelLogger;
  private readonly stateListeners = new Set<StateListener>();
  private readonly linkWaiters = new Set<() => void>();
  private readonly listeners = new Map<number, RemoteListener>();
  private readonly stop = new AbortController();
  private supervising: Promise<void> = Promise.resolve();

  constructor(private readonly options: TunnelOptions) {
    this.timing = { ...DEFAULT_TUNNEL_TIMING, ...options.timing };
    this.log = options.logger;
    if (options.onState) this.stateListeners.add(options.onState);
  }

  async start(): Promise<void> {
    const deadline = Date.now() + this.timing.startTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      try {
        const link = await this.establish();
        this.publish(link, "connected");
        this.supervising = this.supervise(link);
        return;
      } catch (error) {
        if (error instanceof PermanentLinkError) {
          this.finish(error.message);
          throw error.failure;
        }
        this.lastProblem = describeError(error);
        const delay = backoffDelay(attempt, { minMs: this.timing.backoffMinMs, maxMs: this.timing.backoffMaxMs });
        if (this.stop.signal.aborted || Date.now() + delay > deadline) {
          this.finish(this.lastProblem);
          throw new KtctlError(
            `cannot reach the shadow through the port-forward: ${this.lastProblem}`,
            ExitCode.unreachable,
            "check that the shadow pod is running, and read its log (kubectl logs <pod>)",
          );
        }
        this.log.debug(`tunnel: attempt ${attempt + 1} failed (${this.lastProblem}), retrying in ${delay} ms`);
        await this.pause(delay);
      }
    }
  }

  onStateChange(listener: StateListener): void {
    this.stateListeners.add(listener);
  }

  async openStream(host: string, port: number): Promise<Duplex> {
    if (!host) throw new KtctlError("openStream needs a host", ExitCode.usage);
    checkPort(port, "port");
    const deadline = Date.now() + this.timing.linkWaitMs;
    for (;;) {
      const link = await this.waitForLink(deadline - Date.now());
      try {
        return await link.openStream(host, port);
      } catch (error) {
        // A link lost mid-open says nothing about host:port: try again on the next link.
        if (link.alive || Date.now() >= deadline) throw error;
      }
    }
  }

  async addRemoteListener(remotePort: number, localHost: string, localPort: number, observe?: ObserveConnection): Promise<void> {
    checkPort(remotePort, "remote port");
    checkPort(localPort, "local port");
    const known = this.listeners.has(remotePort);
    this.listeners.set(remotePort, { localHost, localPort, refusalLogged: false, observe });
    if (known) return; // the shadow already listens; only where connections go has changed
    const deadline = Date.now() + this.timing.linkWaitMs;
    for (;;) {
      const link = await this.waitForLink(deadline - Date.now());
      try {
        await link.listen(remotePort, this.timing.requestTimeoutMs);
        this.log.debug(`tunnel: shadow port ${remotePort} -> ${localHost}:${localPort}`);
        return;
      } catch (error) {
        if (!link.alive && Date.now() < deadline) continue; // the next link listens for it
        this.listeners.delete(remotePort);
        throw new KtctlError(
          `the shadow could not listen on port ${remotePort}: ${describeError(error)}`,
          ExitCode.conflict,
          "the port is taken in the shadow pod, or it is below 1024 and the pod does not allow unprivileged binds",
        );
      }
    }
  }

  async removeRemoteListener(remotePort: number): Promise<void> {
    if (!this.listeners.delete(remotePort)) return;
    const link = this.link;
    if (!link) return; // a new link will simply not listen on it
    await link.unlisten(remotePort, this.timing.requestTimeoutMs).catch((error) => {
      if (link.alive) this.log.warn(`tunnel: the shadow did not stop listening on port ${remotePort}: ${describeError(error)}`);
    });
  }

  async resolve(name: string): Promise<string[]> {
    const link = await this.waitForLink(this.timing.linkWaitMs);
    return link.resolve(name, this.timing.requestTimeoutMs);
  }

  async ping(): Promise<number> {
    const link = await this.waitForLink(this.timing.linkWaitMs);
    return link.ping(this.timing.requestTimeoutMs);
  }

  async close(): Promise<void> {
    if (this.state === "closed") return this.supervising;
    this.stop.abort();
    const link = this.link;
    link?.kill("tunnel closed");
    if (link) await link.lost;
    await this.supervising;
    this.finish("closed");
  }

  // ---- links -----------------------------------------------------------------------------------

  private async establish(): Promise<Link> {
    const sock = await this.openStreamToShadow();
    const direct = this.options.direct ?? process.env.KTCTL_TUNNEL_DIRECT !== "0";
    const reverse = this.options.reverse ?? process.env.KTCTL_TUNNEL_REVERSE !== "0";
    const reuse = this.options.reuse ?? process.env.KTCTL_TUNNEL_REUSE !== "0";
    // Connections are delivered only once the link is up (the shadow's listeners are asked for after).
    let opened: Link | undefined;
    const counts = { reverse: 0, ssh: 0 };
    const link = (opened = await Link.open({
      sock,
      siblings: direct ? (this.options.siblingsOf ?? sessionOf)(sock) : undefined,
      privateKey: this.options.privateKey,
      hostKeyCheck: this.options.hostKeyCheck,
      clientVersion: this.options.clientVersion ?? "unknown",
      timing: this.timing,
      reuse,
      onIncoming: (details, accept, reject) => {
        if (!opened) return reject();
        counts.ssh++;
        this.deliver(opened, details, accept, reject);
      },
      onReverse: reverse
        ? (arrival) => {
            if (!opened) return void arrival.stream.destroy();
            counts.reverse++;
            this.deliverReverse(opened, arrival);
          }
        : undefined,
    }));
    void link.lost.then(() => {
      if (counts.reverse + counts.ssh > 0) {
        this.log.debug(`tunnel: the link carried ${counts.reverse + counts.ssh} connections from the cluster: ${counts.reverse} on reverse streams, ${counts.ssh} over SSH`);
      }
    });
    // Re-listen before anyone is told the link is up, so a mode never sees a half-restored tunnel.
    const failed: string[] = [];
    await Promise.all(
      [...this.listeners.keys()].map((port) =>
        link.listen(port, this.timing.requestTimeoutMs).catch((error) => {
          failed.push(`${port} (${describeError(error)})`);
        }),
      ),
    );
    if (failed.length > 0) this.log.warn(`tunnel: the shadow could not listen again on port ${failed.join(", ")}`);
    return link;
  }

  private async openStreamToShadow(): Promise<Duplex> {
    const pending = this.options.connect();
    const timeoutMs = this.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        pending.then((late) => late.destroy(), () => {});
        reject(new Error(`opening the stream to the shadow took longer than ${timeoutMs} ms`));
      }, timeoutMs);
    });
    try {
      return await Promise.race([pending, timeout]);
    } catch (error) {
      // Kube said the pod is gone or we may not forward to it: no retry will change that.
      if (isKtctlError(error) && [ExitCode.forbidden, ExitCode.notFound, ExitCode.kubeconfig].includes(error.exitCode as never)) {
        throw new PermanentLinkError(error);
      }
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  private async supervise(link: Link): Promise<void> {
    for (;;) {
      const reason = await link.lost;
      this.link = undefined;
      if (this.stop.signal.aborted) return;
      this.lastProblem = reason;
      this.setState("reconnecting", reason);
      this.log.warn(`tunnel: link to the shadow lost (${reason}), reconnecting`);
      const started = Date.now();
      const next = await this.reconnect();
      if (!next) return;
      link = next;
      this.publish(link, `reconnected after ${Date.now() - started} ms`);
    }
  }

  /** Retries until a link is up (returned), the failure is permanent, or close() (undefined). */
  private async reconnect(): Promise<Link | undefined> {
    for (let attempt = 0; !this.stop.signal.aborted; attempt++) {
      const delay = backoffDelay(attempt, { minMs: this.timing.backoffMinMs, maxMs: this.timing.backoffMaxMs });
      await this.pause(attempt === 0 ? 0 : delay);
      if (this.stop.signal.aborted) return undefined;
      try {
        return await this.establish();
      } catch (error) {
        if (error instanceof PermanentLinkError) {
          this.log.warn(`tunnel: giving up: ${error.message}`);
          this.finish(error.message);
          return undefined;
        }
        this.lastProblem = describeError(error);
        this.log.debug(`tunnel: reconnect attempt ${attempt + 1} failed (${this.lastProblem})`);
      }
    }
    return undefined;
  }

  private publish(link: Link, detail: string): void {
    if (this.stop.signal.aborted) {
      link.kill("tunnel closed");
      return;
    }
    this.link = link;
    this.shadow = link.shadow;
    this.setState("connected", detail);
    const path = `${link.shadow?.direct ? ", direct streams" : ""}${link.shadow?.reverse ? ", reverse streams" : ""}`;
    this.log.info(`tunnel: ${detail} (shadow ${link.shadow?.version ?? "?"} on ${link.shadow?.hostname ?? "?"}${path})`);
    for (const wake of [...this.linkWaiters]) wake();
  }

  private waitForLink(timeoutMs: number): Promise<Link> {
    if (this.link) return Promise.resolve(this.link);
    if (this.state === "closed") return Promise.reject(this.closedError());
    return new Promise((resolve, reject) => {
      const wake = () => {
        clearTimeout(timer);
        this.linkWaiters.delete(wake);
        this.link ? resolve(this.link) : reject(this.closedError());
      };
      const timer = setTimeout(() => {
        this.linkWaiters.delete(wake);
        reject(new KtctlError(`the tunnel to the shadow is down (${this.lastProblem})`, ExitCode.unreachable));
      }, Math.max(0, timeoutMs));
      this.linkWaiters.add(wake);
    });
  }

  // ---- remote listeners --------------------------------------------------------------------------

  /** A cluster connection reached a remote listener over SSH: connect locally first, then accept the channel. */
  private deliver(link: Link, details: TcpConnectionDetails, accept: () => ClientChannel, reject: () => void): void {
    const listener = this.listeners.get(details.destPort);
    if (!listener) return reject();
    // The fallback path: no reverse stream was waiting in the shadow (a burst beyond the pool, an old shadow).
    this.log.debug(`tunnel: a cluster connection from ${details.srcIP}:${details.srcPort} came over SSH`);
    this.connectLocal(link, listener, { address: details.srcIP, port: details.srcPort }, accept, reject);
  }

  /**
   * A cluster connection arrived on a reverse stream: its first bytes may already be on their way,
   * held by the stream (within its credit) while the local port is dialled. A refusal becomes the
   * client's FIN, as over SSH.
   */
  private deliverReverse(link: Link, arrival: ReverseArrival): void {
    const { stream } = arrival;
    const listener = this.listeners.get(arrival.listenerPort);
    const refuse = () => {
      stream.end();
      stream.resume(); // whatever the client still sends is dropped, its credit returned
    };
    if (!listener) return refuse();
    this.connectLocal(link, listener, { address: arrival.originAddress, port: arrival.originPort }, () => stream, refuse);
  }

  private connectLocal(
    link: Link,
    listener: RemoteListener,
    origin: { address: string; port: number },
    accept: () => Channel | DirectStream,
    reject: () => void,
  ): void {
    const target = `${listener.localHost}:${listener.localPort}`;
    const local = net.connect({ host: listener.localHost, port: listener.localPort, allowHalfOpen: true });
    const refused = (error: Error) => {
      reject();
      if (listener.refusalLogged) return;
      listener.refusalLogged = true; // once until the local side accepts again: a dead local server must not flood the log
      this.log.warn(`tunnel: ${target} refused a connection from the cluster (${describeError(error)}); is the local process running?`);
    };
    local.once("error", refused);
    local.once("connect", () => {
      local.off("error", refused);
      if (!link.alive) return local.destroy();
      if (listener.refusalLogged) this.log.info(`tunnel: ${target} accepts connections again`);
      listener.refusalLogged = false;
      const channel = accept();
      // A direct stream behaves as an SSH channel (eof, close, half-close): splice takes both.
      const spliced = splice(local, channel as Channel);
      link.adopt(spliced);
      // Asked per connection and usually answered "no" (no ui open): nothing is done per byte then.
      const tap = listener.observe?.(origin);
      if (tap) {
        channel.on("data", (chunk: Buffer) => tap.fromClient(chunk));
        local.on("data", (chunk: Buffer) => tap.fromServer(chunk));
        void spliced.closed.then(() => tap.end());
      }
    });
  }

  // ---- state -------------------------------------------------------------------------------------

  private setState(state: TunnelState, detail?: string): void {
    if (this.state === "closed") return;
    this.state = state;
    for (const listener of this.stateListeners) {
      try {
        listener(state, detail);
      } catch (error) {
        this.log.warn(`tunnel: a state listener failed: ${describeError(error)}`);
      }
    }
  }

  private finish(detail: string): void {
    this.stop.abort();
    this.setState("closed", detail);
    for (const wake of [...this.linkWaiters]) wake();
  }

  private closedError(): KtctlError {
    return new KtctlError(`the tunnel to the shadow is closed (${this.lastProblem})`, ExitCode.unreachable);
  }

  private pause(ms: number): Promise<void> {
    if (ms <= 0 || this.stop.signal.aborted) return Promise.resolve();
    const signal = this.stop.signal;
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      }
      signal.addEventListener("abort", done, { once: true });
    });
  }
}

function checkPort(port: number, what: string): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new KtctlError(`invalid ${what} ${port}: expected 1-65535`, ExitCode.usage);
  }
}
