// The laptop's DNS server while connect runs: cluster names are answered from the index, every other
// query goes to the resolvers the laptop used before connect, byte for byte (EDNS options, DNSSEC
// records and types we do not know pass untouched), so VPN and corporate names keep working.
// dns2 encodes and decodes the messages; the sockets are our own so forwarded bytes are never re-encoded.

import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { createServer, connect, type Server, type Socket } from "node:net";
import DNS, { Packet } from "dns2";

type Resource = DNS.Packet.Resource;
import { canonicalName, type NameAnswer } from "./cluster-names.ts";

export interface Upstream {
  host: string;
  port: number;
}

export interface DnsServerOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** One port for UDP and TCP; 0 picks a free one. */
  port?: number;
  /** Decides a name: cluster answer, or "forward" for the upstream resolvers. */
  answer(qname: string): Promise<NameAnswer>;
  /** The laptop's original resolvers, in resolv.conf order. */
  upstreams: Upstream[];
  /** TTL of cluster answers, seconds (default 5: services come and go). */
  ttl?: number;
  /** Zone whose SOA goes with negative answers under it (the cluster domain). */
  zone: string;
  /** How long one upstream gets before the next is asked (default 2000 ms). */
  upstreamTimeoutMs?: number;
  logger?: { debug(message: string): void };
}

export interface DnsServer {
  host: string;
  port: number;
  /** Queries answered from the cluster index and forwarded upstream, since start. */
  stats(): { answered: number; forwarded: number; failed: number };
  close(): Promise<void>;
}

const UDP_LIMIT_WITHOUT_EDNS = 512;
const RCODE_NXDOMAIN = 3;
const RCODE_SERVFAIL = 2;

export async function startDnsServer(options: DnsServerOptions): Promise<DnsServer> {
  const host = options.host ?? "127.0.0.1";
  const ttl = options.ttl ?? 5;
  const timeoutMs = options.upstreamTimeoutMs ?? 2000;
  const zone = canonicalName(options.zone);
  const counters = { answered: 0, forwarded: 0, failed: 0 };
  const log = (message: string) => options.logger?.debug(message);

  // The upstream that answered last is asked first: a dead first nameserver costs one timeout, not one per query.
  let preferred = 0;
  const forward = async (raw: Buffer, over: "udp" | "tcp"): Promise<Buffer | undefined> => {
    const count = options.upstreams.length;
    for (let i = 0; i < count; i++) {
      const which = (preferred + i) % count;
      const upstream = options.upstreams[which]!;
      try {
        const reply = over === "udp" ? await askUdp(upstream, raw, timeoutMs) : await askTcp(upstream, raw, timeoutMs);
        counters.forwarded++;
        preferred = which;
        return reply;
      } catch (error) {
        log(`dns: upstream ${upstream.host}:${upstream.port} did not answer (${(error as Error).message})`);
      }
    }
    counters.failed++;
    return undefined;
  };

  /** The reply to one query, or undefined to stay silent (the client retries or gives up). */
  const handle = async (raw: Buffer, over: "udp" | "tcp"): Promise<Buffer | undefined> => {
    let request: Packet;
    try {
      request = Packet.parse(raw);
    } catch {
      return forward(raw, over); // not ours to judge
    }
    const question = request.questions[0];
    if (request.header.qr !== 0 || request.header.opcode !== 0 || request.questions.length !== 1 || !question || question.class !== Packet.CLASS.IN) {
      return forward(raw, over);
    }
    const qname = canonicalName(question.name);
    let decision: NameAnswer;
    try {
      decision = await options.answer(qname);
    } catch (error) {
      log(`dns: deciding ${qname} failed (${(error as Error).message})`);
      counters.failed++;
      return encode(errorResponse(request, RCODE_SERVFAIL), request, over);
    }
    if (decision.kind === "forward") return forward(raw, over);
    counters.answered++;
    const response = Packet.createResponseFromRequest(request);
    response.header.aa = 1;
    response.header.ra = 1;
    const negative = () => {
      if (qname === zone || qname.endsWith(`.${zone}`)) response.authorities.push(new Packet.Resource(soaRecord(zone, ttl)));
    };
    switch (decision.kind) {
      case "addresses":
        if (question.type === Packet.TYPE.A || question.type === Packet.TYPE.ANY) {
          for (const address of decision.addresses) response.answers.push(new Packet.Resource({ name: question.name, type: Packet.TYPE.A, class: Packet.CLASS.IN, ttl, address }));
        } else negative();
        break;
      case "cname":
        response.answers.push(new Packet.Resource({ name: question.name, type: Packet.TYPE.CNAME, class: Packet.CLASS.IN, ttl, domain: decision.target }));
        if (question.type !== Packet.TYPE.CNAME) response.answers.push(...(await chase(decision.target, question.type, over)));
        break;
      case "nodata":
        negative();
        break;
      case "nxdomain":
        response.header.rcode = RCODE_NXDOMAIN;
        negative();
        break;
    }
    return encode(response, request, over);
  };

  /** Records of an ExternalName target, so clients that do not chase CNAMEs still get an address. */
  const chase = async (target: string, type: number, over: "udp" | "tcp"): Promise<Resource[]> => {
    const query = new Packet();
    query.header.id = (Math.random() * 0xffff) | 0;
    query.header.rd = 1;
    query.questions.push(new Packet.Question(target, type, Packet.CLASS.IN));
    const targetDecision = await options.answer(canonicalName(target)).catch(() => ({ kind: "forward" }) as NameAnswer);
    if (targetDecision.kind === "addresses" && (type === Packet.TYPE.A || type === Packet.TYPE.ANY)) {
      return targetDecision.addresses.map((address) => new Packet.Resource({ name: target, type: Packet.TYPE.A, class: Packet.CLASS.IN, ttl, address }));
    }
    if (targetDecision.kind !== "forward") return [];
    const reply = await forward(query.toBuffer(), over);
    if (!reply) return [];
    try {
      return Packet.parse(reply).answers;
    } catch {
      return [];
    }
  };

  // --- sockets --------------------------------------------------------------------------------
  const { udp, tcp, port } = await bindBoth(host, options.port ?? 0);
  const tcpClients = new Set<Socket>();

  udp.on("message", (raw, peer) => {
    handle(raw, "udp").then(
      (reply) => {
        if (reply) udp.send(reply, peer.port, peer.address);
      },
      (error) => log(`dns: ${(error as Error).message}`),
    );
  });

  tcp.on("connection", (socket) => {
    tcpClients.add(socket);
    socket.on("close", () => tcpClients.delete(socket));
    socket.on("error", () => socket.destroy());
    socket.setTimeout(10_000, () => socket.end());
    readFrames(socket, (raw) => {
      handle(raw, "tcp").then(
        (reply) => {
          if (reply && !socket.destroyed) socket.write(frame(reply));
        },
        (error) => log(`dns: ${(error as Error).message}`),
      );
    });
  });

  return {
    host,
    port,
    stats: () => ({ ...counters }),
    close: async () => {
      for (const socket of tcpClients) socket.destroy();
      await Promise.all([new Promise<void>((resolve) => udp.close(() => resolve())), new Promise<void>((resolve) => tcp.close(() => resolve()))]);
    },
  };
}

function errorResponse(request: Packet, rcode: number): Packet {
  const response = Packet.createResponseFromRequest(request);
  response.header.ra = 1;
  response.header.rcode = rcode;
  return response;
}

function soaRecord(zone: string, ttl: number) {
  return {
    name: zone,
    type: Packet.TYPE.SOA,
    class: Packet.CLASS.IN,
    ttl,
    primary: `ns.dns.${zone}`,
    admin: `hostmaster.${zone}`,
    serial: Math.floor(Date.now() / 1000) >>> 0,
    refresh: 7200,
    retry: 1800,
    expiration: 86400,
    minimum: ttl,
  };
}

/** Our own answers: over UDP, a reply larger than the client can take says so (TC) and carries only the question. */
function encode(response: Packet, request: Packet, over: "udp" | "tcp"): Buffer {
  const bytes = response.toBuffer();
  if (over === "tcp") return bytes;
  const edns = request.additionals.find((r: any) => r?.type === Packet.TYPE.EDNS) as { class?: number } | undefined;
  const limit = Math.max(edns?.class ?? 0, UDP_LIMIT_WITHOUT_EDNS);
  if (bytes.length <= limit) return bytes;
  const truncated = Packet.createResponseFromRequest(request);
  truncated.header.aa = response.header.aa;
  truncated.header.ra = response.header.ra;
  truncated.header.rcode = response.header.rcode;
  truncated.header.tc = 1;
  return truncated.toBuffer();
}

const frame = (message: Buffer) => {
  const length = Buffer.alloc(2);
  length.writeUInt16BE(message.length);
  return Buffer.concat([length, message]);
};

/** Calls onMessage for each length-prefixed message (RFC 1035 4.2.2); pipelined queries welcome. */
function readFrames(socket: Socket, onMessage: (message: Buffer) => void) {
  let buffered: Buffer = Buffer.alloc(0);
  socket.on("data", (chunk: Buffer) => {
    buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
    while (buffered.length >= 2) {
      const length = buffered.readUInt16BE(0);
      if (buffered.length < 2 + length) break;
      onMessage(buffered.subarray(2, 2 + length));
      buffered = buffered.subarray(2 + length);
    }
  });
}

/** UDP and TCP on one port, the way resolvers expect a DNS server (TCP after a truncated UDP answer). */
async function bindBoth(host: string, wanted: number): Promise<{ udp: UdpSocket; tcp: Server; port: number }> {
  for (let attempt = 0; ; attempt++) {
    const udp = createSocket("udp4");
    const port = await new Promise<number>((resolve, reject) => {
      udp.once("error", reject);
      udp.bind(wanted, host, () => {
        udp.off("error", reject);
        resolve(udp.address().port);
      });
    });
    const tcp = createServer({ allowHalfOpen: false });
    try {
      await new Promise<void>((resolve, reject) => {
        // `on`, not `once`: Bun may report a failed listen twice, and an unheard error kills the process.
        tcp.on("error", reject);
        tcp.listen({ port, host, exclusive: true }, () => {
          tcp.off("error", reject);
          resolve();
        });
      });
      return { udp, tcp, port };
    } catch (error) {
      tcp.on("error", () => {});
      tcp.close();
      udp.close();
      // A free UDP port whose TCP twin is taken: with a chosen port that is final, with 0 pick again.
      if (wanted !== 0 || attempt >= 10 || (error as NodeJS.ErrnoException).code !== "EADDRINUSE") throw error;
    }
  }
}

function askUdp(upstream: Upstream, raw: Buffer, timeoutMs: number): Promise<Buffer> {
  const id = raw.readUInt16BE(0);
  return new Promise((resolve, reject) => {
    const socket = createSocket(upstream.host.includes(":") ? "udp6" : "udp4");
    const done = (error?: Error, reply?: Buffer) => {
      clearTimeout(timer);
      socket.close();
      if (error) reject(error);
      else resolve(reply!);
    };
    const timer = setTimeout(() => done(new Error("timed out")), timeoutMs);
    socket.on("error", (error) => done(error));
    socket.on("message", (reply, peer) => {
      // Only the resolver we asked, answering the query we sent.
      if (peer.port !== upstream.port || reply.length < 2 || reply.readUInt16BE(0) !== id) return;
      done(undefined, reply);
    });
    socket.send(raw, upstream.port, upstream.host, (error) => {
      if (error) done(error);
    });
  });
}

function askTcp(upstream: Upstream, raw: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: upstream.host, port: upstream.port });
    let settled = false;
    const done = (error?: Error, reply?: Buffer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(reply!);
    };
    const timer = setTimeout(() => done(new Error("timed out")), timeoutMs);
    socket.on("error", (error) => done(error));
    socket.on("connect", () => socket.write(frame(raw)));
    readFrames(socket, (reply) => done(undefined, Buffer.from(reply) as Buffer));
    socket.on("end", () => done(new Error("closed without an answer")));
  });
}
