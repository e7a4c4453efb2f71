// The router's route table, the checks on routes and configuration, and the first-bytes sniffing.

import { describe, expect, test } from "bun:test";
import {
  ContractError,
  listenerProtocolOf,
  checkMarkHeader,
  checkPathPrefix,
  validateRoute,
  validateRouterConfig,
  type Route,
} from "../../core/protocol/router.ts";
import { RouteTable, underPrefix } from "../../shadow/router/routes.ts";
import { classify, H2_PREFACE } from "../../shadow/router/sniff.ts";

const route = (id: string, value: string, extra: Partial<Route> = {}): Route => ({
  id,
  header: "version",
  value,
  upstreams: { "8080": { host: `10.0.0.${id.length}`, port: 8080 } },
  ...extra,
});
const headers = (h: Record<string, string>) => (name: string) => h[name];

describe("route table", () => {
  test("matches by header value, per listener port", () => {
    const table = new RouteTable();
    table.put(route("alice", "a"));
    table.put(route("bob", "b", { upstreams: { "9000": { host: "10.0.0.9", port: 9 } } }));
    expect(table.match(8080, headers({ version: "a" }), "/")?.route.id).toBe("alice");
    expect(table.match(8080, headers({ version: "b" }), "/")).toBeUndefined(); // bob has no route on 8080
    expect(table.match(9000, headers({ version: "b" }), "/")?.upstream).toEqual({ host: "10.0.0.9", port: 9 });
    expect(table.match(8080, headers({ version: "c" }), "/")).toBeUndefined();
    expect(table.match(8080, headers({}), "/")).toBeUndefined();
    expect(table.match(8080, headers({ version: " a " }), "/")?.route.id).toBe("alice");
  });

  test("the longest path prefix wins; a route without prefix takes the rest", () => {
    const table = new RouteTable();
    table.put(route("any", "a"));
    table.put(route("api", "a", { pathPrefix: "/api" }));
    table.put(route("apiv2", "a", { pathPrefix: "/api/v2" }));
    const at = (path: string) => table.match(8080, headers({ version: "a" }), path)?.route.id;
    expect(at("/api/v2/users")).toBe("apiv2");
    expect(at("/api/v1")).toBe("api");
    expect(at("/api")).toBe("api");
    expect(at("/api?x=1")).toBe("api");
    expect(at("/apix")).toBe("any");
    expect(at("/")).toBe("any");
  });

  test("routes with different header names live side by side", () => {
    const table = new RouteTable();
    table.put(route("alice", "a"));
    table.put({ ...route("carol", "c"), header: "x-dev" });
    expect(table.match(8080, headers({ "x-dev": "c" }), "/")?.route.id).toBe("carol");
    expect(table.match(8080, headers({ version: "a", "x-dev": "c" }), "/")).toBeDefined();
  });

  test("a second session cannot take a mark that is routed already; its owner can replace it", () => {
    const table = new RouteTable();
    expect(table.put(route("alice", "a")).conflict).toBeUndefined();
    expect(table.put(route("mallory", "a")).conflict?.id).toBe("alice");
    expect(table.put(route("mallory", "a", { pathPrefix: "/other" })).conflict).toBeUndefined();
    expect(table.put(route("alice", "a", { upstreams: { "8080": { host: "10.1.1.1", port: 1 } } })).conflict).toBeUndefined();
    expect(table.match(8080, headers({ version: "a" }), "/")?.upstream.host).toBe("10.1.1.1");
  });

  test("deleting a route takes it out of the index at once", () => {
    const table = new RouteTable();
    table.put(route("alice", "a"));
    const generation = table.generation;
    expect(table.delete("alice")).toBe(true);
    expect(table.delete("alice")).toBe(false);
    expect(table.generation).toBe(generation + 1);
    expect(table.match(8080, headers({ version: "a" }), "/")).toBeUndefined();
  });

  test("prefix matching is on segment boundaries", () => {
    expect(underPrefix("/api", "/api")).toBe(true);
    expect(underPrefix("/api/", "/api")).toBe(true);
    expect(underPrefix("/api#x", "/api")).toBe(true);
    expect(underPrefix("/apix", "/api")).toBe(false);
    expect(underPrefix("/x", undefined)).toBe(true);
    expect(underPrefix("/grpc.health.v1.Health/Check", "/grpc.health.v1.Health")).toBe(true);
  });
});

describe("route and configuration checks", () => {
  test("a route is normalised: lowercase header, trimmed prefix, numeric ports", () => {
    const checked = validateRoute({
      id: "abc123",
      owner: "alice@laptop",
      header: "VERSION",
      value: "alice-1",
      pathPrefix: "/api/",
      upstreams: { "080": { host: "10.244.0.9", port: 8080 } },
    });
    expect(checked.header).toBe("version");
    expect(checked.pathPrefix).toBe("/api");
    expect(Object.keys(checked.upstreams)).toEqual(["80"]);
  });

  test("bad routes are refused with a reason", () => {
    const good = { id: "a", header: "version", value: "v", upstreams: { "80": { host: "10.0.0.1", port: 80 } } };
    const bad: unknown[] = [
      null,
      { ...good, id: "" },
      { ...good, header: "con nection" },
      { ...good, header: "Content-Length" },
      { ...good, header: ":path" },
      { ...good, value: "two\r\nlines" },
      { ...good, value: "" },
      { ...good, pathPrefix: "api" },
      { ...good, upstreams: {} },
      { ...good, upstreams: { x: { host: "h", port: 1 } } },
      { ...good, upstreams: { "80": { host: "bad host", port: 1 } } },
      { ...good, upstreams: { "80": { host: "h", port: 70000 } } },
    ];
    for (const value of bad) expect(() => validateRoute(value)).toThrow(ContractError);
    expect(() => checkMarkHeader("x-dev")).not.toThrow();
    expect(() => checkPathPrefix("/a b")).toThrow(ContractError);
  });

  test("router configuration: defaults, and listeners that clash", () => {
    const config = validateRouterConfig({ listeners: [{ port: 8080, fallback: { host: "10.96.0.5", port: 80 }, name: "http" }] });
    expect(config.adminPort).toBe(2224);
    expect(config.sniffTimeoutMs).toBe(500);
    expect(() => validateRouterConfig({ listeners: [] })).toThrow(ContractError);
    expect(() =>
      validateRouterConfig({
        listeners: [
          { port: 1, fallback: { host: "a", port: 1 } },
          { port: 1, fallback: { host: "a", port: 2 } },
        ],
      }),
    ).toThrow(/twice/);
    expect(() => validateRouterConfig({ listeners: [{ port: 2224, fallback: { host: "a", port: 1 } }] })).toThrow(/admin port/);
  });
});

describe("what a listener expects, from the service port", () => {
  test("appProtocol first, then the port name's first word", () => {
    expect(listenerProtocolOf({ name: "http" })).toBe("http");
    expect(listenerProtocolOf({ name: "grpc-api" })).toBe("http");
    expect(listenerProtocolOf({ name: "tcp-db", appProtocol: "kubernetes.io/h2c" })).toBe("http");
    expect(listenerProtocolOf({ name: "web", appProtocol: "kubernetes.io/ws" })).toBe("http");
    expect(listenerProtocolOf({ name: "tcp" })).toBe("tcp");
    expect(listenerProtocolOf({ name: "mysql" })).toBe("tcp");
    expect(listenerProtocolOf({ name: "https" })).toBe("tcp");
    expect(listenerProtocolOf({ name: "metrics" })).toBe("auto");
    expect(listenerProtocolOf({})).toBe("auto");
  });
});

describe("sniffing the first bytes", () => {
  test("HTTP/2 preface, HTTP/1 request line, anything else", () => {
    expect(classify(H2_PREFACE)).toBe("http2");
    expect(classify(H2_PREFACE.subarray(0, 10))).toBe("more");
    expect(classify(Buffer.from("GET / HTTP/1.1\r\n"))).toBe("http1");
    expect(classify(Buffer.from("M-SEARCH * HTTP/1.1"))).toBe("http1");
    expect(classify(Buffer.from("PRI * HTTP/1.1\r\n"))).toBe("http1");
    expect(classify(Buffer.from("GE"))).toBe("more");
    expect(classify(Buffer.from("hello\n"))).toBe("raw");
    expect(classify(Buffer.from([0x16, 0x03, 0x01]))).toBe("raw"); // a TLS ClientHello
    expect(classify(Buffer.from(" GET"))).toBe("raw");
    expect(classify(Buffer.from("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))).toBe("raw");
    expect(classify(Buffer.alloc(0))).toBe("more");
  });
});
