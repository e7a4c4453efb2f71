import { describe, expect, test } from "bun:test";
import { ClusterIndex, serviceRecordOf, sliceRecordOf } from "../../plugins/connect/net/cluster-index.ts";
import { demoObjects, endpointSlice, service, storeWith } from "./net-support.ts";

describe("records", () => {
  test("services: ClusterIP, headless, ExternalName, dual-stack keeps IPv4", () => {
    expect(serviceRecordOf(service("demo", "a", { clusterIP: "10.96.0.5", clusterIPs: ["10.96.0.5", "fd00::5"], ports: [{ port: 80, name: "http" }] }))).toEqual({
      namespace: "demo",
      name: "a",
      clusterIPs: ["10.96.0.5"],
      headless: false,
      publishNotReadyAddresses: false,
      ports: [{ name: "http", port: 80, protocol: "TCP" }],
    });
    expect(serviceRecordOf(service("demo", "h", { clusterIP: "None", publishNotReadyAddresses: true })).headless).toBe(true);
    const external = serviceRecordOf(service("demo", "x", { type: "ExternalName", externalName: "db.example.com" }));
    expect([external.headless, external.externalName]).toEqual([false, "db.example.com"]);
  });

  test("endpoint slices: IPv4 only, readiness, hostnames", () => {
    expect(sliceRecordOf(endpointSlice("demo", "s", "svc", [{ ip: "10.244.0.1", ready: false, hostname: "w-0" }]))).toEqual({
      service: "svc",
      endpoints: [{ ip: "10.244.0.1", ready: false, hostname: "w-0" }],
      ports: [],
      namedPorts: [],
    });
    expect(sliceRecordOf(endpointSlice("demo", "s", "svc", [{ ip: "10.244.0.2", pod: "svc-abc" }], [{ name: "http", port: 8080 }, 9090]))).toEqual({
      service: "svc",
      endpoints: [{ ip: "10.244.0.2", ready: true, pod: "svc-abc" }],
      ports: [8080, 9090],
      namedPorts: [
        { name: "http", port: 8080 },
        { name: "", port: 9090 },
      ],
    });
    expect(sliceRecordOf({ ...endpointSlice("demo", "s", "svc", []), addressType: "IPv6" })).toBeUndefined();
    expect(sliceRecordOf({ metadata: { name: "orphan" } })).toBeUndefined();
  });
});

describe("ClusterIndex", () => {
  test("start lists the connect namespace; watch events keep it current", async () => {
    const store = storeWith(demoObjects());
    const index = new ClusterIndex({ kube: store.kube, namespaces: ["demo"] });
    await index.start();
    expect(index.services("demo").map((s) => s.name)).toEqual(["db", "echo", "echo-headless", "ext"]);
    expect(index.isWatched("demo2")).toBe(false);

    const changes: string[] = [];
    index.onChange((ns) => changes.push(ns));
    store.put(service("demo", "echo", { clusterIP: "10.96.12.99", ports: [{ port: 80 }] }));
    expect(index.service("demo", "echo")?.clusterIPs).toEqual(["10.96.12.99"]);
    store.put(endpointSlice("demo", "echo-headless-abc", "echo-headless", [{ ip: "10.244.0.70" }]));
    expect(index.endpoints("demo", "echo-headless").map((e) => e.ip)).toEqual(["10.244.0.70"]);
    store.remove(endpointSlice("demo", "echo-headless-abc", "echo-headless", []));
    expect(index.endpoints("demo", "echo-headless")).toEqual([]);
    expect(changes).toEqual(["demo", "demo", "demo"]);

    index.close();
    store.put(service("demo", "after-close", { clusterIP: "10.96.1.1" }));
    expect(index.service("demo", "after-close")).toBeUndefined();
  });

  test("a namespace that cannot be listed fails start with the API's error", async () => {
    const store = storeWith(demoObjects());
    store.forbidden.add("/api/v1/namespaces/demo/services");
    const index = new ClusterIndex({ kube: store.kube, namespaces: ["demo"] });
    await expect(index.start()).rejects.toThrow("forbidden");
    expect(index.isWatched("demo")).toBe(false);
  });

  test("names in other namespaces: one GET, remembered absent for a while, refusals are absences", async () => {
    let now = 1000;
    const store = storeWith(demoObjects());
    store.forbidden.add("/api/v1/namespaces/secret/services/db");
    const index = new ClusterIndex({ kube: store.kube, namespaces: ["demo"], negativeCacheMs: 5000, now: () => now });
    await index.start();
    const gets = () => store.requests.filter((r) => r.startsWith("GET /api/v1/namespaces/com/")).length;

    expect(await index.lookupService("com", "github")).toBeUndefined();
    expect(await index.lookupService("com", "github")).toBeUndefined();
    expect(gets()).toBe(1);
    now += 6000;
    expect(await index.lookupService("com", "github")).toBeUndefined();
    expect(gets()).toBe(2);
    expect(index.isWatched("com")).toBe(false);

    expect(await index.lookupService("secret", "db")).toBeUndefined();

    // Concurrent lookups of one name share the request.
    const [a, b] = await Promise.all([index.lookupService("demo2", "echo"), index.lookupService("demo2", "echo")]);
    expect(a?.clusterIPs).toEqual(["10.96.50.1"]);
    expect(b).toEqual(a);
    expect(store.requests.filter((r) => r === "GET /api/v1/namespaces/demo2/services/echo").length).toBe(1);
    index.close();
  });

  test("all namespaces through cluster-wide watches; new namespaces appear by themselves; refusal falls back", async () => {
    const store = storeWith(demoObjects());
    const index = new ClusterIndex({ kube: store.kube, namespaces: ["demo"], allNamespaces: true });
    await index.start();
    expect(index.allNamespaces).toBe(true);
    expect(index.namespaces()).toEqual(["demo", "demo2"]);
    store.put(service("demo3", "api", { clusterIP: "10.96.3.3", ports: [{ port: 80 }] }));
    expect(index.service("demo3", "api")?.clusterIPs).toEqual(["10.96.3.3"]);
    const before = store.requests.length;
    expect(await index.lookupService("com", "github")).toBeUndefined();
    expect(store.requests.length).toBe(before); // everything is seen: no lookups
    index.close();

    const limited = storeWith(demoObjects());
    limited.forbidden.add("/api/v1/services");
    const fallback = new ClusterIndex({ kube: limited.kube, namespaces: ["demo"], allNamespaces: true });
    await fallback.start();
    expect([fallback.allNamespaces, fallback.namespaces()]).toEqual([false, ["demo"]]);
    fallback.close();
  });
});
