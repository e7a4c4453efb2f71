// Runs INSIDE a scratch network namespace (see net-capture.test.ts): the Linux driver for real
// (nftables, routes, resolv.conf or hosts bind-mounted by `ip netns exec`), the transparent
// listener with SO_ORIGINAL_DST, the DNS server, and curl as the developer's program. The "cluster"
// is a local responder that reports which destination each connection was meant for.
// Prints one JSON object with what it saw; the test judges it.

import { createServer, connect, type Socket } from "node:net";
import { readFile } from "node:fs/promises";
import { parseCidr } from "../../plugins/connect/net/cidr.ts";
import { answerName, classifyName, serviceNameForms } from "../../plugins/connect/net/cluster-names.ts";
import { ClusterIndex } from "../../plugins/connect/net/cluster-index.ts";
import { startDnsServer } from "../../plugins/connect/net/dns-server.ts";
import { PlanExecutor, spawnRunner, type ConnectNetSpec } from "../../plugins/connect/net/driver.ts";
import { createLinuxDriver, DNS_ADDRESS } from "../../plugins/connect/net/drivers/linux.ts";
import { loadOriginalDestination } from "../../plugins/connect/net/original-dst.ts";
import { startRelayListener } from "../../plugins/connect/net/relay-listener.ts";
import { clusterSearchDomains, parseResolvConf, upstreamsOf } from "../../plugins/connect/net/resolv-conf.ts";
import { connectApi, demoObjects, localSession, storeWith } from "./net-support.ts";

const mode = process.argv[2] === "hosts" ? "hosts" : "system";
const result: Record<string, unknown> = { mode };

async function curl(url: string, seconds = 3): Promise<string> {
  const r = await spawnRunner(["curl", "-sS", "--max-time", String(seconds), url]);
  return r.code === 0 ? r.stdout.trim() : `curl exit ${r.code}: ${r.stderr.trim()}`;
}

async function state() {
  const [resolv, hosts, nft, routes] = await Promise.all([
    readFile("/etc/resolv.conf", "utf8"),
    readFile("/etc/hosts", "utf8"),
    spawnRunner(["nft", "list", "ruleset"]),
    spawnRunner(["ip", "-4", "route", "show", "table", "all"]),
  ]);
  return { resolv, hosts, nft: nft.stdout, routes: routes.stdout };
}

// The "cluster": every connection first gets a line naming the target (written by openStream), then
// an HTTP request, which it answers with that target.
const cluster = createServer((socket) => {
  let buffered = "";
  socket.on("data", (chunk) => {
    buffered += chunk;
    const firstLine = buffered.indexOf("\n");
    if (firstLine >= 0 && buffered.includes("\r\n\r\n")) {
      const target = buffered.slice(0, firstLine);
      socket.end(`HTTP/1.1 200 OK\r\nContent-Length: ${target.length + 8}\r\nConnection: close\r\n\r\ncluster ${target}`);
    }
  });
});
await new Promise<void>((resolve) => cluster.listen(7000, "127.0.0.2", resolve));

// The developer's own process on 8080, on every address: it must keep answering.
const local = Bun.serve({ hostname: "0.0.0.0", port: 8080, fetch: () => new Response("local 8080") });

const before = await state();
const index = new ClusterIndex({ kube: storeWith(demoObjects()).kube, namespaces: ["demo", "demo2"] });
await index.start();
const context = { namespace: "demo", domain: "cluster.local" };
const dns = await startDnsServer({
  port: 0,
  zone: "cluster.local",
  upstreams: upstreamsOf(parseResolvConf(before.resolv), [DNS_ADDRESS]),
  answer: (qname) => answerName(classifyName(qname, context), index),
});
const originalDestination = await loadOriginalDestination(connectApi.errors);
const opened: string[] = [];
const listener = await startRelayListener(
  {
    destination: originalDestination,
    openStream: async (host, port) => {
      opened.push(`${host}:${port}`);
      const socket: Socket = connect(7000, "127.0.0.2");
      await new Promise((resolve, reject) => socket.once("connect", resolve).once("error", reject));
      socket.write(`${host}:${port}\n`);
      return socket;
    },
  },
  connectApi,
);

const spec: ConnectNetSpec = {
  sessionId: "unit0001",
  namespace: "demo",
  domain: "cluster.local",
  capture: { capture: [parseCidr("10.96.0.0/16"), parseCidr("10.244.0.0/24")], exclude: [parseCidr("10.96.0.1/32")] },
  transparentPort: listener.port,
  dns: { address: DNS_ADDRESS, port: dns.port, searchDomains: clusterSearchDomains("demo", "cluster.local"), namespaces: ["demo", "demo2"] },
  hosts: index.services().map((s) => ({ address: s.clusterIPs[0] ?? "0.0.0.0", names: serviceNameForms(s, context) })).filter((e) => e.address !== "0.0.0.0"),
};
const driver = createLinuxDriver({ errors: connectApi.errors, variant: mode });
const facts = await driver.probe(spec);
const plan = driver.prepare(spec, facts);
result.unrouted = facts.unroutedCidrs;
const session = localSession();
await new PlanExecutor(session, connectApi).apply(plan.actions);
result.during = await state();

result.answers = {
  fqdn: await curl("http://echo.demo.svc.cluster.local:8080/"),
  short: await curl("http://echo:80/"),
  otherNamespace: await curl("http://echo.demo2:80/"),
  clusterIp: await curl("http://10.96.12.34:9090/"),
  podIp: await curl("http://10.244.0.7:8080/"),
  local8080: await curl("http://127.0.0.1:8080/"),
  apiServerNotCaptured: await curl("http://10.96.0.1:443/", 0.5),
};
result.opened = opened;

await session.close();
result.after = await state();
result.before = before;
await listener.close();
await dns.close();
index.close();
local.stop(true);
cluster.close();
console.log(JSON.stringify(result));
