import { describe, expect, test } from "bun:test";
import { ClusterIndex } from "../../plugins/connect/net/cluster-index.ts";
import { PodPaths } from "../../plugins/connect/net/pod-paths.ts";
import { endpointSlice, service, storeWith } from "./net-support.ts";

/** A namespace as a cluster has it: a deployment behind a service with a named and an unnamed port, and the odd cases. */
async function pathsOver(extra: any[] = []) {
  const store = storeWith([
    service("demo", "web", { clusterIP: "10.96.0.10", clusterIPs: ["10.96.0.10"], ports: [{ name: "http", port: 80 }, { name: "admin", port: 9000 }] }),
    endpointSlice(
      "demo",
      "web-a",
      "web",
      [
        { ip: "10.244.0.11", pod: "web-1", podUid: "uid-web-1" },
        { ip: "10.244.0.12", pod: "web-2" },
        { ip: "10.244.0.13", pod: "web-3", ready: false },
      ],
      [{ name: "http", port: 8080 }, { name: "admin", port: 9001 }],
    ),
    service("demo", "manual", { clusterIP: "10.96.0.20", clusterIPs: ["10.96.0.20"], ports: [{ port: 5432 }] }),
    endpointSlice("demo", "manual-1", "manual", [{ ip: "10.244.0.21", pod: "db-0" }, { ip: "192.168.1.5" }], [5432]),
    service("demo", "stateful", { clusterIP: "None", ports: [{ port: 7000 }] }),
    endpointSlice("demo", "stateful-x", "stateful", [{ ip: "10.244.0.31", pod: "st-0", hostname: "st-0" }], [7000]),
    service("demo", "ext", { type: "ExternalName", externalName: "db.example.com" }),
    service("demo", "empty", { clusterIP: "10.96.0.40", clusterIPs: ["10.96.0.40"], ports: [{ port: 80 }] }),
    service("demo", "starting", { clusterIP: "10.96.0.41", clusterIPs: ["10.96.0.41"], ports: [{ port: 80 }] }),
    endpointSlice("demo", "starting-1", "starting", [{ ip: "10.244.0.41", pod: "starting-0", ready: false }], [8080]),
    // One unnamed port, and a rolling update whose new pods serve the target port elsewhere (a named targetPort).
    service("demo", "api", { clusterIP: "10.96.0.50", clusterIPs: ["10.96.0.50"], ports: [{ port: 80 }] }),
    endpointSlice("demo", "api-old", "api", [{ ip: "10.244.0.51", pod: "api-old-0" }], [8080]),
    endpointSlice("demo", "api-new", "api", [{ ip: "10.244.0.52", pod: "api-new-0" }], [9080]),
    service("demo", "sticky", { clusterIP: "10.96.0.60", clusterIPs: ["10.96.0.60"], sessionAffinity: "ClientIP", ports: [{ port: 80 }] }),
    endpointSlice("demo", "sticky-1", "sticky", [{ ip: "10.244.0.61", pod: "sticky-0" }, { ip: "10.244.0.62", pod: "sticky-1" }], [8080]),
    ...extra,
  ]);
  const index = new ClusterIndex({ kube: store.kube, namespaces: ["demo"] });
  await index.start();
  return { index, store, paths: new PodPaths(index, { namespace: "demo", domain: "cluster.local" }) };
}

describe("connect --via pod: the pod port a connection lands on", () => {
  test("a ClusterIP's service port becomes its target port on the ready pods, in turn", async () => {
    const { index, paths } = await pathsOver();
    const picks = [1, 2, 3, 4].map(() => paths.ofAddress("10.96.0.10", 80));
    expect(picks.map((p) => `${p?.pod.name}:${p?.port}`)).toEqual(["web-1:8080", "web-2:8080", "web-1:8080", "web-2:8080"]);
    // The uid goes with the pod: one recreated under the same name gets a connection of its own.
    expect(paths.ofAddress("10.96.0.10", 9000)).toEqual({ pod: { namespace: "demo", name: "web-1", uid: "uid-web-1" }, port: 9001 });
    index.close();
  });

  test("an unnamed port, its target port per slice: the pods of a rolling update each on their own port", async () => {
    const { index, paths } = await pathsOver();
    const picks = [1, 2, 3].map(() => paths.ofAddress("10.96.0.50", 80));
    expect(picks.map((p) => `${p?.pod.name}:${p?.port}`)).toEqual(["api-old-0:8080", "api-new-0:9080", "api-old-0:8080"]);
    index.close();
  });

  test("sessionAffinity ClientIP: this laptop is one client, its connections stick to one pod while it is ready", async () => {
    const { index, store, paths } = await pathsOver();
    expect([1, 2, 3].map(() => paths.ofAddress("10.96.0.60", 80)?.pod.name)).toEqual(["sticky-0", "sticky-0", "sticky-0"]);
    store.put(endpointSlice("demo", "sticky-1", "sticky", [{ ip: "10.244.0.61", pod: "sticky-0", ready: false }, { ip: "10.244.0.62", pod: "sticky-1" }], [8080]));
    expect([1, 2].map(() => paths.ofAddress("10.96.0.60", 80)?.pod.name)).toEqual(["sticky-1", "sticky-1"]);
    store.put(endpointSlice("demo", "sticky-1", "sticky", [{ ip: "10.244.0.61", pod: "sticky-0" }, { ip: "10.244.0.62", pod: "sticky-1" }], [8080]));
    expect(paths.ofAddress("10.96.0.60", 80)?.pod.name).toBe("sticky-1");
    index.close();
  });

  test("one pod to open a port-forward connection to at the start: the first service's ready pod", async () => {
    const { index, paths } = await pathsOver();
    expect(paths.anyPod(index.services("demo"))).toEqual({ pod: { namespace: "demo", name: "api-old-0" }, port: 8080 });
    expect(paths.anyPod(index.services("demo").filter((s) => s.name === "starting" || s.name === "empty"))).toBeUndefined();
    index.close();
  });

  test("a pod IP stays itself, on the port asked for", async () => {
    const { index, paths } = await pathsOver();
    expect(paths.ofAddress("10.244.0.12", 12345)).toEqual({ pod: { namespace: "demo", name: "web-2" }, port: 12345 });
    // Not ready behind its service, but still that pod when asked by its address.
    expect(paths.ofAddress("10.244.0.13", 8080)?.pod.name).toBe("web-3");
    index.close();
  });

  test("left to the shadow: a port the service lacks, an endpoint that is no pod, no endpoint or no ready one, an unknown address", async () => {
    const { index, paths } = await pathsOver();
    expect(paths.ofAddress("10.96.0.10", 81)).toBeUndefined();
    expect(paths.ofAddress("10.96.0.20", 5432)).toBeUndefined();
    expect(paths.ofAddress("10.96.0.40", 80)).toBeUndefined();
    expect(paths.ofAddress("10.96.0.41", 80)).toBeUndefined();
    expect(paths.ofAddress("10.244.9.9", 80)).toBeUndefined();
    expect(paths.ofAddress("192.168.1.5", 5432)).toBeUndefined();
    index.close();
  });

  test("names as the proxy passes them: services, headless services and their endpoints, pods; not an ExternalName", async () => {
    const { index, paths } = await pathsOver();
    expect(await paths.of("web.demo.svc.cluster.local", 80)).toMatchObject({ pod: { name: "web-1" }, port: 8080 });
    expect(await paths.of("web", 80)).toMatchObject({ pod: { name: "web-2" }, port: 8080 });
    expect(await paths.of("stateful.demo.svc.cluster.local", 7000)).toEqual({ pod: { namespace: "demo", name: "st-0" }, port: 7000 });
    expect(await paths.of("st-0.stateful.demo.svc.cluster.local", 7000)).toMatchObject({ pod: { name: "st-0" } });
    expect(await paths.of("10-244-0-11.demo.pod.cluster.local", 8080)).toMatchObject({ pod: { name: "web-1" } });
    expect(await paths.of("ext.demo.svc.cluster.local", 443)).toBeUndefined();
    expect(await paths.of("nothing.demo.svc.cluster.local", 80)).toBeUndefined();
    index.close();
  });

  test("an address of a namespace found by name a moment ago waits for that namespace's lists", async () => {
    const store = storeWith([
      service("demo", "web", { clusterIP: "10.96.0.10", clusterIPs: ["10.96.0.10"], ports: [{ port: 80 }] }),
      service("demo2", "api", { clusterIP: "10.96.7.7", clusterIPs: ["10.96.7.7"], ports: [{ port: 80 }] }),
      endpointSlice("demo2", "api-1", "api", [{ ip: "10.244.1.7", pod: "api-0" }], [8080]),
    ]);
    // demo2's endpoint slices are listed only when the test says so.
    let listSlices!: () => void;
    const slicesListed = new Promise<void>((resolve) => (listSlices = resolve));
    const kube = {
      ...store.kube,
      request: async (method: string, path: string) => {
        if (path.startsWith("/apis/discovery.k8s.io/v1/namespaces/demo2/endpointslices")) await slicesListed;
        return store.request(method, path);
      },
    };
    const index = new ClusterIndex({ kube: kube as any, namespaces: ["demo"] });
    await index.start();
    const paths = new PodPaths(index, { namespace: "demo", domain: "cluster.local" });
    // The DNS server's question: one GET, and demo2's lists begin.
    expect((await index.lookupService("demo2", "api"))?.clusterIPs).toEqual(["10.96.7.7"]);
    expect(paths.ofAddress("10.96.7.7", 80)).toBeUndefined();
    const connection = paths.of("10.96.7.7", 80);
    listSlices();
    expect(await connection).toEqual({ pod: { namespace: "demo2", name: "api-0" }, port: 8080 });
    index.close();
  });

  test("follows the index: a pod that goes away is no longer picked", async () => {
    const { index, store, paths } = await pathsOver();
    expect(paths.ofAddress("10.244.0.11", 8080)?.pod.name).toBe("web-1");
    store.put(endpointSlice("demo", "web-a", "web", [{ ip: "10.244.0.12", pod: "web-2" }], [{ name: "http", port: 8080 }]));
    expect(paths.ofAddress("10.244.0.11", 8080)).toBeUndefined();
    expect([1, 2].map(() => paths.ofAddress("10.96.0.10", 80)?.pod.name)).toEqual(["web-2", "web-2"]);
    expect(paths.ofAddress("10.96.0.10", 9000)).toBeUndefined();
    index.close();
  });
});
