import { describe, expect, test } from "bun:test";
import { answerName, classifyName, serviceNameForms, undashIp, type NamingContext } from "../../plugins/connect/net/cluster-names.ts";
import { ClusterIndex } from "../../plugins/connect/net/cluster-index.ts";
import { demoObjects, storeWith } from "./net-support.ts";

const ctx: NamingContext = { namespace: "demo", domain: "cluster.local" };

describe("classifyName", () => {
  test("the four service forms", () => {
    expect(classifyName("echo", ctx)).toEqual({ kind: "service", namespace: "demo", service: "echo", qualified: false });
    expect(classifyName("echo.demo2", ctx)).toEqual({ kind: "service", namespace: "demo2", service: "echo", qualified: false });
    expect(classifyName("echo.demo2.svc", ctx)).toEqual({ kind: "service", namespace: "demo2", service: "echo", qualified: false });
    expect(classifyName("echo.demo2.svc.cluster.local", ctx)).toEqual({ kind: "service", namespace: "demo2", service: "echo", qualified: true });
    expect(classifyName("ECHO.Demo2.SVC.cluster.local.", ctx)).toEqual({ kind: "service", namespace: "demo2", service: "echo", qualified: true });
  });

  test("pods and headless endpoints", () => {
    expect(classifyName("10-244-0-5.demo.pod.cluster.local", ctx)).toEqual({ kind: "pod", namespace: "demo", ip: "10.244.0.5" });
    expect(classifyName("10-244-0-500.demo.pod.cluster.local", ctx)).toEqual({ kind: "nonexistent" });
    expect(classifyName("db-0.db.demo.svc.cluster.local", ctx)).toEqual({ kind: "endpoint", namespace: "demo", service: "db", endpoint: "db-0" });
  });

  test("zone names and impossible names inside the zone", () => {
    for (const name of ["cluster.local", "svc.cluster.local", "demo.svc.cluster.local", "pod.cluster.local", "demo.pod.cluster.local"]) {
      expect(classifyName(name, ctx)).toEqual({ kind: "zone" });
    }
    for (const name of ["foo.cluster.local", "a.b.c.cluster.local", "a.b.c.d.e.svc.cluster.local", "under_score.demo.svc.cluster.local"]) {
      expect(classifyName(name, ctx)).toEqual({ kind: "nonexistent" });
    }
  });

  test("search-list artefacts and other people's names are not ours", () => {
    for (const name of [
      "echo.demo.svc.cluster.local.corp.example",
      "echo.demo.svc.corp.example",
      "www.example.com",
      "api.github.com",
      "echo.demo.pod",
      "_http._tcp.echo",
      "",
    ]) {
      expect(classifyName(name, ctx)).toBeUndefined();
    }
  });

  test("another cluster domain", () => {
    const other = { namespace: "demo", domain: "k8s.internal" };
    expect(classifyName("echo.demo.svc.k8s.internal", other)).toEqual({ kind: "service", namespace: "demo", service: "echo", qualified: true });
    expect(classifyName("echo.demo.svc.cluster.local", other)).toBeUndefined();
  });

  test("undashIp", () => {
    expect(undashIp("10-0-0-1")).toBe("10.0.0.1");
    expect(undashIp("10-0-0")).toBeUndefined();
    expect(undashIp("web-0")).toBeUndefined();
  });

  test("hosts-file name forms: short names only for the connect namespace", () => {
    expect(serviceNameForms({ namespace: "demo", name: "echo" }, ctx)).toEqual(["echo", "echo.demo", "echo.demo.svc", "echo.demo.svc.cluster.local"]);
    expect(serviceNameForms({ namespace: "demo2", name: "echo" }, ctx)).toEqual(["echo.demo2", "echo.demo2.svc", "echo.demo2.svc.cluster.local"]);
  });
});

describe("answerName against a live index", () => {
  const setup = async () => {
    const store = storeWith(demoObjects());
    const index = new ClusterIndex({ kube: store.kube, namespaces: ["demo"] });
    await index.start();
    const ask = (name: string) => answerName(classifyName(name, ctx), index);
    return { store, index, ask };
  };

  test("ClusterIP services in every form", async () => {
    const { ask, index } = await setup();
    for (const name of ["echo", "echo.demo", "echo.demo.svc", "echo.demo.svc.cluster.local"]) {
      expect(await ask(name)).toEqual({ kind: "addresses", addresses: ["10.96.12.34"] });
    }
    index.close();
  });

  test("headless: ready endpoints only (unknown readiness counts as ready), and per-endpoint names", async () => {
    const { ask, index } = await setup();
    expect(await ask("echo-headless")).toEqual({ kind: "addresses", addresses: ["10.244.0.7", "10.244.0.8"] });
    expect(await ask("db-1.db.demo.svc.cluster.local")).toEqual({ kind: "addresses", addresses: ["10.244.0.21"] });
    expect(await ask("10-244-0-20.db.demo.svc.cluster.local")).toEqual({ kind: "addresses", addresses: ["10.244.0.20"] });
    expect(await ask("db-9.db.demo.svc.cluster.local")).toEqual({ kind: "nxdomain" });
    expect(await ask("db-0.echo.demo.svc.cluster.local")).toEqual({ kind: "nxdomain" }); // echo is not headless
    index.close();
  });

  test("absent: NXDOMAIN inside the zone, forwarded outside it", async () => {
    const { ask, index } = await setup();
    expect(await ask("nope.demo.svc.cluster.local")).toEqual({ kind: "nxdomain" });
    expect(await ask("nope")).toEqual({ kind: "forward" });
    expect(await ask("www.example.com")).toEqual({ kind: "forward" });
    expect(await ask("example.com")).toEqual({ kind: "forward" });
    index.close();
  });

  test("ExternalName answers as a CNAME; pod names answer their IP", async () => {
    const { ask, index } = await setup();
    expect(await ask("ext")).toEqual({ kind: "cname", target: "echo.demo2.svc.cluster.local" });
    expect(await ask("10-244-0-5.demo.pod.cluster.local")).toEqual({ kind: "addresses", addresses: ["10.244.0.5"] });
    expect(await ask("svc.cluster.local")).toEqual({ kind: "nodata" });
    index.close();
  });

  test("another namespace is looked up once, then watched", async () => {
    const { ask, index, store } = await setup();
    expect(index.isWatched("demo2")).toBe(false);
    expect(await ask("echo.demo2")).toEqual({ kind: "addresses", addresses: ["10.96.50.1"] });
    await index.watchNamespace("demo2");
    expect(index.isWatched("demo2")).toBe(true);
    const before = store.requests.length;
    expect(await ask("echo.demo2.svc.cluster.local")).toEqual({ kind: "addresses", addresses: ["10.96.50.1"] });
    expect(store.requests.length).toBe(before); // answered from the index
    index.close();
  });

  test("services that appear and disappear after start", async () => {
    const { ask, index, store } = await setup();
    const later = { apiVersion: "v1", kind: "Service", metadata: { namespace: "demo", name: "later" }, spec: { clusterIP: "10.96.77.7", ports: [{ port: 80 }] } };
    expect(await ask("later")).toEqual({ kind: "forward" });
    store.put(later);
    expect(await ask("later")).toEqual({ kind: "addresses", addresses: ["10.96.77.7"] });
    store.remove(later);
    expect(await ask("later.demo.svc.cluster.local")).toEqual({ kind: "nxdomain" });
    index.close();
  });
});
