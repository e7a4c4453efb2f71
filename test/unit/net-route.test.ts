import { describe, expect, test } from "bun:test";
import { createServer } from "node:net";
import { PassThrough } from "node:stream";
import { parseCidr } from "../../plugins/connect/net/cidr.ts";
import { clusterRoute, directStream, isCapturedAddress } from "../../plugins/connect/net/cluster-route.ts";
import { ClusterIndex } from "../../plugins/connect/net/cluster-index.ts";
import { clusterHostsEntries } from "../../plugins/connect/net/hosts-entries.ts";
import { connectApi, demoObjects, storeWith } from "./net-support.ts";

const capture = { capture: [parseCidr("10.96.0.0/16"), parseCidr("10.244.0.0/24")], exclude: [parseCidr("10.96.0.1/32")] };
const ctx = { namespace: "demo", domain: "cluster.local" };

async function setup() {
  const index = new ClusterIndex({ kube: storeWith(demoObjects()).kube, namespaces: ["demo"] });
  await index.start();
  const routes: string[] = [];
  const route = clusterRoute({
    context: ctx,
    view: index,
    capture,
    errors: connectApi.errors,
    cluster: async (host, port) => {
      routes.push(`cluster ${host}:${port}`);
      return new PassThrough();
    },
    direct: async (host, port) => {
      routes.push(`direct ${host}:${port}`);
      return new PassThrough();
    },
  });
  return { index, route, routes };
}

describe("proxy routing", () => {
  test("captured addresses", () => {
    expect(isCapturedAddress("10.96.12.34", capture)).toBe(true);
    expect(isCapturedAddress("10.96.0.1", capture)).toBe(false);
    expect(isCapturedAddress("192.168.1.1", capture)).toBe(false);
    expect(isCapturedAddress("echo", capture)).toBe(false);
  });

  test("cluster names go through the tunnel fully qualified; the rest goes direct", async () => {
    const { index, route, routes } = await setup();
    await route("echo", 80);
    await route("echo.demo2", 80);
    await route("db-0.db.demo.svc.cluster.local", 5432);
    await route("10-244-0-5.demo.pod.cluster.local", 8080);
    await route("10.96.12.34", 9090);
    await route("10.96.0.1", 443);
    await route("example.com", 443);
    await route("intranet", 80);
    expect(routes).toEqual([
      "cluster echo.demo.svc.cluster.local:80",
      "cluster echo.demo2.svc.cluster.local:80",
      "cluster db-0.db.demo.svc.cluster.local:5432",
      "cluster 10-244-0-5.demo.pod.cluster.local:8080",
      "cluster 10.96.12.34:9090",
      "direct 10.96.0.1:443",
      "direct example.com:443",
      "direct intranet:80",
    ]);
    await expect(route("nope.demo.svc.cluster.local", 80)).rejects.toMatchObject({ reason: "not-found" });
    index.close();
  });

  test("direct connections are real TCP connections", async () => {
    const server = createServer((socket) => socket.end("hi"));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const stream = await directStream("127.0.0.1", (server.address() as { port: number }).port);
    const text = await new Promise<string>((resolve) => {
      let data = "";
      stream.on("data", (c) => (data += c));
      stream.on("end", () => resolve(data));
    });
    expect(text).toBe("hi");
    server.close();
  });
});

describe("hosts entries", () => {
  test("services at their ClusterIP, headless at ready pods, endpoint hostnames, no ExternalName", async () => {
    const index = new ClusterIndex({ kube: storeWith(demoObjects()).kube, namespaces: ["demo", "demo2"] });
    await index.start();
    const entries = clusterHostsEntries(index, ctx);
    const lookup = (name: string) => entries.filter((e) => e.names.includes(name)).map((e) => e.address);
    expect(lookup("echo")).toEqual(["10.96.12.34"]);
    expect(lookup("echo.demo2")).toEqual(["10.96.50.1"]);
    expect(lookup("echo.demo2.svc.cluster.local")).toEqual(["10.96.50.1"]);
    expect(lookup("echo-headless")).toEqual(["10.244.0.7", "10.244.0.8"]);
    expect(lookup("db-1.db.demo.svc.cluster.local")).toEqual(["10.244.0.21"]);
    expect(lookup("ext")).toEqual([]);
    index.close();
  });
});
