// One SSH connection to the shadow over one stream: handshake, version check, liveness, and
// the channel operations the tunnel needs. Outbound streams go as direct streams (direct.ts) when
// the stream underneath can open siblings and the shadow serves them, else as SSH channels. A Link
// never comes back once lost; client.ts makes a new one.

import type { Duplex } from "node:stream";
import { Client, type ClientChannel, type TcpConnectionDetails } from "ssh2";
import { ExitCode, KtctlError } from "../errors.ts";
import { ControlClient } from "./control-client.ts";
import { CarrierPool, startDirectStream, type DirectEndpoint, type ReturnCarrier, type DirectStream, type SiblingStreams } from "./direct.ts";
import { ReversePool, type ReverseArrival } from "./reverse.ts";
import {
  CONTROL_SUBSYSTEM,
  FEATURE_DIRECT,
  FEATURE_EARLY_REUSE,
  FEATURE_LATE_EOF,
  FEATURE_REUSE,
  FEATURE_REVERSE,
  MAX_STREAM_REF,
  REMOTE_LISTEN_ADDRESS,
  SSH_USERNAME,
  STREAM_ORIGIN_ADDRESS,
  TUNNEL_PROTOCOL_VERSION,
} from "../protocol/tunnel.ts";
import type { Splice } from "../protocol/splice.ts";
import { StreamOpenError } from "./stream-error.ts";

export { StreamOpenError } from "./stream-error.ts";

export interface LinkTiming {
  /** Bound on the SSH handshake plus the control hello. */
  handshakeTimeoutMs: number;
  /** With nothing received for this long, provoke traffic (a ping). */
  livenessIntervalMs: number;
  /** With nothing received for this long, the link is dead. */
  deadAfterMs: number;
  /** Bound on one control request or global request (listen/unlisten). */
  requestTimeoutMs: number;
}

export interface ShadowInfo {
  version: string;
  protocol: number;
  roles: string[];
  session: string;
  hostname: string;
  /** The pod's IP as the shadow knows it (absent from shadows started without it). */
  podIP?: string;
  /** Outbound streams go as direct streams (port-forward streams of their own), not SSH channels. */
  direct: boolean;
  /** Remote listeners deliver on reverse streams (port-forward streams of their own), SSH channels as the fallback. */
  reverse: boolean;
  /** Direct and reverse streams carry one connection after another. */
  reuse: boolean;
}

export interface LinkOptions {
  sock: Duplex;
  privateKey: string | Buffer;
  /** Return false to refuse the shadow's host key (raw SSH key blob). */
  hostKeyCheck?: (hostKey: Buffer) => boolean;
  clientVersion: string;
  timing: LinkTiming;
  /**
   * When the stream under the link can open more streams to the shadow's pod, outbound streams
   * become direct streams on it (see core/protocol/direct-streams.ts), if the shadow serves them.
   */
  siblings?: SiblingStreams;
  /** A connection arrived at one of the shadow's remote listeners. */
  onIncoming(details: TcpConnectionDetails, accept: () => ClientChannel, reject: () => void): void;
  /**
   * With siblings, remote listeners may deliver on reverse streams (see core/protocol/reverse-streams.ts)
   * when the shadow offers them; each such connection arrives here. Absent: SSH channels only.
   */
  onReverse?(arrival: ReverseArrival): void;
  /**
   * Direct and reverse streams carry one connection after another when the shadow can ("reuse"
   * feature): a new connection then opens no port-forward stream. False keeps one per connection.
   */
  reuse?: boolean;
}

/** Where direct streams go, and the streams to there kept ready. */
interface DirectPath {
  endpoint: DirectEndpoint;
  carriers: CarrierPool;
  /** Streams go back to `carriers` after a clean end (the shadow reuses them). */
  reuse: ReturnCarrier | undefined;
  /** Their DONE waits for their next use (the shadow takes them back before it: "early-reuse"). */
  deferDone: boolean;
  /** So may their EOF when the shadow's came first ("late-eof"). */
  lateEof: boolean;
}

/** A failure that retrying cannot fix (wrong key, wrong protocol); carries the user-facing error. */
export class PermanentLinkError extends Error {
  constructor(readonly failure: KtctlError) {
    super(failure.message);
    this.name = "PermanentLinkError";
  }
}

export class Link {
  readonly lost: Promise<string>;
  private lostReason: string | undefined;
  private markLost!: (reason: string) => void;
  private readonly splices = new Set<Splice>();
  private readonly channels = new Set<ClientChannel>();
  private readonly directStreams = new Set<DirectStream>();
  private direct: DirectPath | undefined;
  private reverse: ReversePool | undefined;
  private readonly warmTargets = new WarmTargets();
  private nextRef = 1;
  private liveness: ReturnType<typeof setInterval> | undefined;
  private control: ControlClient | undefined;
  shadow: ShadowInfo | undefined;

  private constructor(
    private readonly ssh: Client,
    private readonly sock: Duplex,
    private readonly siblings: SiblingStreams | undefined,
  ) {
    this.lost = new Promise((resolve) => (this.markLost = resolve));
  }

  /** Handshake, authenticate, say hello. Throws PermanentLinkError when retrying is pointless. */
  static async open(options: LinkOptions): Promise<Link> {
    const { sock, timing } = options;
    const ssh = new Client();
    const link = new Link(ssh, sock, options.siblings);
    let hostKeyRefused = false;
    let lastError: Error | undefined;

    ssh.on("error", (error) => (lastError = error));
    const onGone = () => link.die(lastError ? describeError(lastError) : "connection closed");
    ssh.on("close", onGone).on("end", onGone);
    ssh.on("tcp connection", (details, accept, reject) => {
      if (link.alive) options.onIncoming(details, accept, reject);
      else reject();
    });

    try {
      await new Promise<void>((resolve, reject) => {
        ssh.once("ready", resolve);
        ssh.once("error", reject);
        link.lost.then((reason) => reject(new Error(reason)));
        ssh.connect({
          sock,
          username: SSH_USERNAME,
          privateKey: options.privateKey,
          readyTimeout: timing.handshakeTimeoutMs,
          keepaliveInterval: 0, // liveness below counts any traffic, not just keepalive replies
          hostVerifier: (key: Buffer) => {
            hostKeyRefused = options.hostKeyCheck ? !options.hostKeyCheck(key) : false;
            return !hostKeyRefused;
          },
        });
      });
      // ssh2 reads the stream from here on; watching its traffic is how liveness is judged.
      link.watchTraffic(timing);
      // Aborting on the stream's own events runs before ssh2's channels report a clean end.
      sock.once("close", () => link.die("stream closed")).once("end", () => link.die("stream ended"));
      await link.hello(options.clientVersion, timing, options.onReverse, options.reuse ?? true);
      return link;
    } catch (error) {
      link.kill(describeError(error));
      if (error instanceof PermanentLinkError) throw error;
      if (hostKeyRefused) {
        throw new PermanentLinkError(new KtctlError("refused the shadow's host key", ExitCode.unreachable));
      }
      if ((error as { level?: string }).level === "client-authentication") {
        throw new PermanentLinkError(
          new KtctlError(
            "the shadow refused this session's key",
            ExitCode.unreachable,
            "the shadow pod belongs to another session or was started with another key",
          ),
        );
      }
      throw error;
    }
  }

  get alive(): boolean {
    return this.lostReason === undefined;
  }

  /** A new stream to host:port, opened by the shadow inside the cluster. */
  openStream(host: string, port: number): Promise<Duplex> {
    const direct = this.direct;
    if (direct && this.siblings?.accepting) return this.openDirect(direct, host, port);
    return this.openChannel(host, port);
  }

  /**
   * A direct stream. To a target that accepted a stream moments ago, the stream is handed out at
   * once, without waiting for the shadow's word (one round trip through the API server and the
   * node saved per connection); should the target refuse after all, the stream fails with the same
   * StreamOpenError instead of the open. First contacts, and any after a refusal, wait for it.
   */
  private async openDirect(direct: DirectPath, host: string, port: number): Promise<Duplex> {
    const key = `${host}:${port}`;
    // To a warm target nothing waits for the shadow's word, so the preamble can wait (a moment) for
    // the connection's first bytes and leave with them.
    const warm = this.warmTargets.isWarm(key);
    const stream = startDirectStream((preamble) => direct.carriers.take(preamble, warm), direct.endpoint, host, port, { reuse: direct.reuse, deferDone: direct.deferDone, lateEof: direct.lateEof });
    // Its failure reaches whoever listens (splice, carry); unheard, it must not end the process.
    stream.on("error", () => {});
    this.directStreams.add(stream);
    stream.once("close", () => this.directStreams.delete(stream));
    const confirmed = stream.opened.then(
      () => this.warmTargets.touch(key),
      () => this.warmTargets.forget(key),
    );
    if (warm) return stream;
    await confirmed;
    try {
      await stream.opened;
    } catch (error) {
      if (!this.alive) throw new StreamOpenError(host, port, "link-lost", `tunnel link lost (${this.lostReason})`);
      throw error;
    }
    return stream;
  }

  /** A direct-tcpip SSH channel to host:port. */
  private openChannel(host: string, port: number): Promise<ClientChannel> {
    const ref = this.nextRef;
    this.nextRef = ref >= MAX_STREAM_REF ? 1 : ref + 1;
    return new Promise((resolve, reject) => {
      const failed = (error: Error) => {
        if (!this.alive) return reject(new StreamOpenError(host, port, "link-lost", `tunnel link lost (${this.lostReason})`));
        const note = this.control?.takeStreamFailure(ref);
        reject(new StreamOpenError(host, port, note?.reason ?? "failed", note?.message ?? error.message));
      };
      try {
        this.ssh.forwardOut(STREAM_ORIGIN_ADDRESS, ref, host, port, (error, channel) => {
          if (error) return failed(error);
          this.channels.add(channel);
          channel.once("close", () => this.channels.delete(channel));
          resolve(channel);
        });
      } catch (error) {
        failed(error as Error);
      }
    });
  }

  listen(remotePort: number, timeoutMs: number): Promise<void> {
    return this.globalRequest(timeoutMs, (done) => this.ssh.forwardIn(REMOTE_LISTEN_ADDRESS, remotePort, done));
  }

  unlisten(remotePort: number, timeoutMs: number): Promise<void> {
    return this.globalRequest(timeoutMs, (done) => this.ssh.unforwardIn(REMOTE_LISTEN_ADDRESS, remotePort, done));
  }

  async resolve(name: string, timeoutMs: number): Promise<string[]> {
    const reply = await this.requireControl().request({ type: "resolve", name }, timeoutMs);
    return reply.addresses;
  }

  async ping(timeoutMs: number): Promise<number> {
    const started = performance.now();
    await this.requireControl().request({ type: "ping" }, timeoutMs);
    return performance.now() - started;
  }

  /** Ties a spliced connection to this link: if the link dies, the connection is reset, not ended. */
  adopt(spliced: Splice): void {
    this.splices.add(spliced);
    spliced.closed.then(() => this.splices.delete(spliced));
  }

  kill(reason: string): void {
    this.die(reason);
    this.ssh.end();
    this.sock.destroy();
  }

  private die(reason: string): void {
    if (this.lostReason !== undefined) return;
    this.lostReason = reason;
    clearInterval(this.liveness);
    this.direct?.carriers.close();
    this.reverse?.close(new Error(`tunnel link lost (${reason})`));
    this.control?.abandon(reason);
    for (const spliced of this.splices) spliced.abort();
    this.splices.clear();
    // Streams handed out by openStream would otherwise just end, which looks like a clean close.
    const error = new Error(`tunnel link lost (${reason})`);
    for (const channel of this.channels) if (channel.listenerCount("error") > 0) channel.emit("error", error);
    this.channels.clear();
    // Direct streams ride the link's own port-forward connection, which goes with it; say why.
    for (const stream of this.directStreams) stream.destroy(error);
    this.directStreams.clear();
    this.sock.destroy();
    this.markLost(reason);
  }

  private watchTraffic(timing: LinkTiming): void {
    let lastHeard = Date.now();
    this.sock.on("data", () => (lastHeard = Date.now()));
    // Checked twice per interval so a dead link is called within half an interval of deadAfterMs.
    this.liveness = setInterval(() => {
      const silentMs = Date.now() - lastHeard;
      if (silentMs >= timing.deadAfterMs) this.kill(`no traffic from the shadow for ${silentMs} ms`);
      else if (silentMs >= timing.livenessIntervalMs) this.control?.nudge();
    }, timing.livenessIntervalMs / 2);
  }

  private async hello(clientVersion: string, timing: LinkTiming, onReverse: LinkOptions["onReverse"], reuse: boolean): Promise<void> {
    const channel = await new Promise<ClientChannel>((resolve, reject) =>
      this.ssh.subsys(CONTROL_SUBSYSTEM, (error, channel) => (error ? reject(error) : resolve(channel))),
    );
    this.control = new ControlClient(channel, (reason) => this.kill(reason));
    const welcome = await this.control.request(
      { type: "hello", protocol: TUNNEL_PROTOCOL_VERSION, client: clientVersion },
      timing.handshakeTimeoutMs,
    ).catch((error: Error & { code?: string }) => {
      if (error.code === "protocol-mismatch") throw new PermanentLinkError(protocolMismatch(error.message));
      throw error;
    });
    if (welcome.protocol !== TUNNEL_PROTOCOL_VERSION) {
      throw new PermanentLinkError(
        protocolMismatch(`the shadow speaks tunnel protocol ${welcome.protocol}, this ktctl speaks ${TUNNEL_PROTOCOL_VERSION}`),
      );
    }
    const reusable = reuse && welcome.features?.includes(FEATURE_REUSE) === true;
    const earlyReuse = reusable && welcome.features?.includes(FEATURE_EARLY_REUSE) === true;
    const lateEof = earlyReuse && welcome.features?.includes(FEATURE_LATE_EOF) === true;
    if (this.siblings && welcome.features?.includes(FEATURE_DIRECT)) {
      // Without direct streams the tunnel still works (over SSH channels), so a refusal is no failure.
      const ready = await this.control!.request({ type: "direct" }, timing.requestTimeoutMs).catch(() => undefined);
      if (ready) {
        const endpoint = { port: ready.port, token: Buffer.from(ready.token, "hex") };
        const carriers = new CarrierPool(this.siblings, endpoint.port);
        this.direct = { endpoint, carriers, reuse: reusable ? (carrier, doneOwed, eofOwed) => carriers.give(carrier, doneOwed, eofOwed) : undefined, deferDone: earlyReuse, lateEof };
      }
    }
    if (this.siblings && onReverse && welcome.features?.includes(FEATURE_REVERSE)) {
      // Without reverse streams remote listeners still deliver (over SSH channels): no failure either.
      const ready = await this.control!.request({ type: "reverse" }, timing.requestTimeoutMs).catch(() => undefined);
      if (ready) {
        const endpoint = { port: ready.port, token: Buffer.from(ready.token, "hex") };
        this.reverse = new ReversePool(this.siblings, endpoint, onReverse, { reusable, earlyReuse, lateEof });
      }
    }
    this.shadow = {
      version: welcome.shadow,
      protocol: welcome.protocol,
      roles: welcome.roles,
      session: welcome.session,
      hostname: welcome.hostname,
      ...(welcome.podIP ? { podIP: welcome.podIP } : {}),
      direct: this.direct !== undefined,
      reverse: this.reverse !== undefined,
      reuse: reusable && (this.direct !== undefined || this.reverse !== undefined),
    };
  }

  private requireControl(): ControlClient {
    if (!this.control || !this.alive) throw new Error(`tunnel link lost (${this.lostReason ?? "not ready"})`);
    return this.control;
  }

  private globalRequest(timeoutMs: number, send: (done: (error?: Error | null) => void) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer from the shadow within ${timeoutMs} ms`)), timeoutMs);
      try {
        send((error) => {
          clearTimeout(timer);
          error ? reject(error) : resolve();
        });
      } catch (error) {
        clearTimeout(timer);
        reject(error);
      }
    });
  }
}

/** Targets that accepted a stream recently (bounded: the oldest are forgotten first). */
class WarmTargets {
  private readonly lastOpened = new Map<string, number>();

  isWarm(key: string): boolean {
    return (this.lastOpened.get(key) ?? -Infinity) > Date.now() - WARM_TARGET_MS;
  }

  touch(key: string): void {
    this.lastOpened.delete(key);
    this.lastOpened.set(key, Date.now());
    if (this.lastOpened.size > MAX_WARM_TARGETS) this.lastOpened.delete(this.lastOpened.keys().next().value!);
  }

  forget(key: string): void {
    this.lastOpened.delete(key);
  }
}

const WARM_TARGET_MS = 30_000;
const MAX_WARM_TARGETS = 1024;

function protocolMismatch(detail: string): KtctlError {
  return new KtctlError(detail, ExitCode.image, "use a shadow image built from the same ktctl version (--image)");
}

export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === "string" && !error.message.includes(code) ? `${error.message} (${code})` : error.message;
  }
  return String(error);
}
