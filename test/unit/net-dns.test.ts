// The DNS server with real clients (dns2's UDP and TCP clients, dig) on loopback. The upstream is a
// real DNS responder too: a dns2 server for ordinary names, and a raw one that proves forwarded
// answers come back byte for byte.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createSocket } from "node:dgram";
import { connect, createServer, type Server } from "node:net";
import DNS, { Packet, TCPClient, UDPClient } from "dns2";
import { startDnsServer, type DnsServer } from "../../plugins/connect/net/dns-server.ts";
import { answerName, classifyName } from "../../plugins/connect/net/cluster-names.ts";
import { ClusterIndex } from "../../plugins/connect/net/cluster-index.ts";
import { demoObjects, endpointSlice, service, storeWith } from "./net-support.ts";

let upstream: any;
let upstreamPort: number;
let raw: ReturnType<typeof createSocket>;
let rawPort: number;
let rawReply: Buffer | undefined;
let rawTcp: Server;
let rawTcpReply: Buffer | undefined;
let server: DnsServer;
let index: ClusterIndex;

const ctx = { namespace: "demo", domain: "cluster.local" };

/** A real upstream: answers *.corp.example and example.com, NXDOMAIN otherwise. */
async function startUpstream() {
  const dns = DNS.createServer({
    udp: true,
    tcp: true,
    handle: (request: any, send: (r: any) => void) => {
      const response = Packet.createResponseFromRequest(request);
      const [question] = request.questions;
      response.header.ra = 1;
      if (question.name.endsWith("corp.example") || question.name === "example.com") {
        response.answers.push(new Packet.Resource({ name: question.name, type: Packet.TYPE.A, class: Packet.CLASS.IN, ttl: 300, address: "192.0.2.7" }));
      } else response.header.rcode = 3;
      send(response);
    },
  });
  const ready = new Promise<void>((resolve) => dns.on("listening", () => resolve()));
  dns.listen({ udp: { port: 0, address: "127.0.0.1" }, tcp: { port: 0, address: "127.0.0.1" } });
  await ready;
  return dns;
}

beforeAll(async () => {
  upstream = await startUpstream();
  const addresses = upstream.addresses();
  // The forwarder asks UDP and TCP on the same port; a dns2 server binds them separately, so the
  // UDP port is used here and TCP forwarding is tested against the raw responder below.
  upstreamPort = addresses.udp.port;

  // A free UDP port whose TCP twin another program holds: pick again (the machine is shared).
  for (let attempt = 0; ; attempt++) {
    raw = createSocket("udp4");
    await new Promise<void>((resolve) => raw.bind(0, "127.0.0.1", resolve));
    rawPort = raw.address().port;
    const probe = createServer();
    const free = await new Promise<boolean>((resolve) => {
      probe.on("error", () => resolve(false));
      probe.listen(rawPort, "127.0.0.1", () => resolve(true));
    });
    await new Promise<void>((resolve) => (free ? probe.close(() => resolve()) : resolve()));
    if (free) break;
    raw.close();
    if (attempt >= 10) throw new Error("no UDP port with a free TCP twin");
  }
  raw.on("message", (query, peer) => {
    // An answer with a record type dns2 has no codec for (HTTPS, 65) and an EDNS cookie option.
    const response = Buffer.concat([
      query.subarray(0, 2),
      Buffer.from([0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]),
      query.subarray(12, query.length - (query.readUInt16BE(10) ? 11 : 0)),
      Buffer.from([0xc0, 0x0c, 0x00, 0x41, 0x00, 0x01, 0, 0, 0x0e, 0x10, 0, 4, 0, 1, 0, 0]),
    ]);
    rawReply = response;
    raw.send(response, peer.port, peer.address);
  });
  // The same responder over TCP on the same port, as a DNS server is reached after a truncated answer.
  rawTcp = createServer((socket) =>
    socket.on("data", (framed: Buffer) => {
      const response = Buffer.concat([framed.subarray(2, 4), Buffer.from([0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0]), framed.subarray(14)]);
      rawTcpReply = response;
      const length = Buffer.alloc(2);
      length.writeUInt16BE(response.length);
      socket.end(Buffer.concat([length, response]));
    }),
  );
  await new Promise<void>((resolve) => rawTcp.listen(rawPort, "127.0.0.1", resolve));

  const objects = demoObjects();
  objects.push(service("demo", "big", { clusterIP: "None", ports: [{ port: 80 }] }));
  objects.push(endpointSlice("demo", "big-1", "big", Array.from({ length: 60 }, (_, i) => ({ ip: `10.244.1.${i + 1}` }))));
  index = new ClusterIndex({ kube: storeWith(objects).kube, namespaces: ["demo"] });
  await index.start();
  server = await startDnsServer({
    port: 0,
    zone: "cluster.local",
    // The first upstream does not answer: the next one is asked.
    upstreams: [
      { host: "127.0.0.1", port: 9 },
      { host: "127.0.0.1", port: upstreamPort },
    ],
    upstreamTimeoutMs: 300,
    answer: (qname) => answerName(classifyName(qname, ctx), index),
  });
});

afterAll(async () => {
  await server.close();
  upstream.close();
  raw.close();
  rawTcp.close();
  index.close();
});

const udp = () => UDPClient({ dns: "127.0.0.1", port: server.port, timeout: 2000 });
const tcp = () => TCPClient({ dns: "127.0.0.1", port: server.port, timeout: 2000 } as any);

async function dig(...args: string[]) {
  const proc = Bun.spawn(["dig", "@127.0.0.1", "-p", String(server.port), "+time=2", "+tries=1", ...args], { stdout: "pipe", stderr: "pipe" });
  const [stdout, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  return { stdout, code };
}

describe("dns server: cluster names", () => {
  test("every service form answers the ClusterIP, authoritative, TTL 5", async () => {
    for (const name of ["echo", "echo.demo", "echo.demo.svc", "echo.demo.svc.cluster.local"]) {
      const answer = await udp()(name, "A");
      expect(answer.header.aa).toBe(1);
      expect(answer.answers.map((a: any) => [a.address, a.ttl])).toEqual([["10.96.12.34", 5]]);
    }
  });

  test("dig sees the same, and a second namespace", async () => {
    expect((await dig("+short", "echo.demo.svc.cluster.local")).stdout.trim()).toBe("10.96.12.34");
    expect((await dig("+short", "echo.demo2")).stdout.trim()).toBe("10.96.50.1");
  });

  test("AAAA of a cluster name: no data, no error (no IPv6 fallback surprises)", async () => {
    const answer = await udp()("echo.demo.svc.cluster.local", "AAAA");
    expect(answer.header.rcode).toBe(0);
    expect(answer.answers).toEqual([]);
    expect(answer.authorities[0]?.type).toBe(Packet.TYPE.SOA);
  });

  test("absent in the zone: NXDOMAIN with the zone's SOA", async () => {
    const answer = await udp()("nope.demo.svc.cluster.local", "A");
    expect(answer.header.rcode).toBe(3);
    expect(answer.authorities[0]).toMatchObject({ name: "cluster.local", type: Packet.TYPE.SOA });
  });

  test("headless: ready pod IPs; too many for UDP sets TC and TCP carries them all", async () => {
    const small = await udp()("echo-headless", "A");
    expect(small.answers.map((a: any) => a.address).sort()).toEqual(["10.244.0.7", "10.244.0.8"]);
    const truncated = await dig("+notcp", "+noedns", "+ignore", "big.demo.svc.cluster.local");
    expect(truncated.stdout).toContain("flags: qr aa tc rd ra");
    const overTcp = await tcp()("big.demo.svc.cluster.local", "A");
    expect(overTcp.answers.length).toBe(60);
  });

  test("ExternalName: CNAME plus the target's address", async () => {
    const answer = await udp()("ext", "A");
    expect(answer.answers.map((a: any) => a.domain ?? a.address)).toEqual(["echo.demo2.svc.cluster.local", "10.96.50.1"]);
  });
});

describe("dns server: everything else goes upstream untouched", () => {
  test("a corporate name and a two-label internet name are forwarded (after a dead first upstream)", async () => {
    const corp = await udp()("intranet.corp.example", "A");
    expect(corp.answers.map((a: any) => a.address)).toEqual(["192.0.2.7"]);
    expect(corp.header.aa).toBe(0);
    const internet = await udp()("example.com", "A");
    expect(internet.answers.map((a: any) => a.address)).toEqual(["192.0.2.7"]);
    const search = await udp()("echo.demo.svc.cluster.local.corp.example", "A");
    expect(search.answers.map((a: any) => a.address)).toEqual(["192.0.2.7"]);
    expect(server.stats().forwarded).toBeGreaterThanOrEqual(3);
  });

  test("forwarded answers come back byte for byte, over UDP and TCP", async () => {
    const rawServer = await startDnsServer({
      port: 0,
      zone: "cluster.local",
      upstreams: [{ host: "127.0.0.1", port: rawPort }],
      answer: async () => ({ kind: "forward" }),
    });
    try {
      const query = new Packet();
      query.header.id = 0x4242;
      query.header.rd = 1;
      query.questions.push(new Packet.Question("www.example.org", 65, Packet.CLASS.IN));
      const client = createSocket("udp4");
      const reply = await new Promise<Buffer>((resolve) => {
        client.on("message", (message) => resolve(message));
        client.send(query.toBuffer(), rawServer.port, "127.0.0.1");
      });
      client.close();
      expect(reply.equals(rawReply!)).toBe(true);
      expect(reply.readUInt16BE(0)).toBe(0x4242);

      const socket = connect(rawServer.port, "127.0.0.1");
      const bytes = query.toBuffer();
      const length = Buffer.alloc(2);
      length.writeUInt16BE(bytes.length);
      socket.write(Buffer.concat([length, bytes]));
      const framed = await new Promise<Buffer>((resolve) => socket.once("data", resolve));
      socket.destroy();
      expect(framed.readUInt16BE(0)).toBe(framed.length - 2);
      expect(framed.subarray(2).equals(rawTcpReply!)).toBe(true);
    } finally {
      await rawServer.close();
    }
  });
});
