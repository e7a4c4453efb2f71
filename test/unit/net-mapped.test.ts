// Mapped capture (the macOS and Windows way) run on loopback here: real listeners, real connections.

import { describe, expect, test } from "bun:test";
import { connect, createServer } from "node:net";
import { ClusterIndex } from "../../plugins/connect/net/cluster-index.ts";
import { AliasLayout, MappedListeners, addressTargets, loopbackAlias } from "../../plugins/connect/net/mapped-capture.ts";
import { connectApi, demoObjects, service, storeWith } from "./net-support.ts";

const ctx = { namespace: "demo", domain: "cluster.local" };

async function indexed() {
  const store = storeWith(demoObjects());
  const index = new ClusterIndex({ kube: store.kube, namespaces: ["demo", "demo2"] });
  await index.start();
  return { store, index };
}

/** Sends nothing, reads what the far side says first. */
function greeting(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, host);
    let text = "";
    socket.on("data", (chunk) => (text += chunk));
    socket.on("end", () => resolve(text));
    socket.on("error", reject);
  });
}

describe("mapped capture", () => {
  test("address targets: every ClusterIP:port and endpoint IP:port", async () => {
    const { index } = await indexed();
    expect(addressTargets(index).map((t) => t.key).sort()).toEqual(["10.244.0.7:8080", "10.244.0.8:8080", "10.244.0.9:8080", "10.96.12.34:80", "10.96.12.34:9090", "10.96.50.1:80"]);
    index.close();
  });

  test("alias layout: one stable loopback address per service, names in the hosts block", async () => {
    const { index, store } = await indexed();
    const layout = new AliasLayout();
    const first = layout.layout(index, ctx);
    const echo = first.hosts.find((h) => h.names.includes("echo"))!;
    expect(echo.names).toEqual(["echo", "echo.demo", "echo.demo.svc", "echo.demo.svc.cluster.local"]);
    expect(first.mappings.filter((m) => m.listen.host === echo.address).map((m) => [m.listen.port, m.target.host, m.target.port])).toEqual([
      [80, "echo.demo.svc.cluster.local", 80],
      [9090, "echo.demo.svc.cluster.local", 9090],
    ]);
    store.put(service("demo", "aaa-new", { clusterIP: "10.96.9.9", ports: [{ port: 5432 }] }));
    const second = layout.layout(index, ctx);
    expect(second.hosts.find((h) => h.names.includes("echo"))!.address).toBe(echo.address);
    expect(new Set(second.hosts.map((h) => h.address)).size).toBe(second.hosts.length);
    expect(loopbackAlias(258)).toBe("127.20.1.2");
    index.close();
  });

  test("listeners follow the desired set; each carries its own target", async () => {
    const far = createServer((socket) => socket.end("far side\n"));
    await new Promise<void>((resolve) => far.listen(0, "127.0.0.1", resolve));
    const farPort = (far.address() as { port: number }).port;
    const asked: string[] = [];
    const listeners = new MappedListeners(connectApi, async (host, port) => {
      asked.push(`${host}:${port}`);
      const socket = connect(farPort, "127.0.0.1");
      await new Promise((resolve) => socket.once("connect", resolve));
      return socket;
    });
    const a = { key: "a", target: { host: "10.96.12.34", port: 80 }, listen: { host: "127.20.0.1", port: 0 } };
    const b = { key: "b", target: { host: "echo.demo2.svc.cluster.local", port: 80 }, listen: { host: "127.20.0.2", port: 0 } };
    const mapped = await listeners.sync([a, b]);
    expect(mapped.map((m) => m.listen.host)).toEqual(["127.20.0.1", "127.20.0.2"]);
    for (const m of mapped) expect(await greeting(m.listen.host, m.listen.port)).toBe("far side\n");
    expect(asked).toEqual(["10.96.12.34:80", "echo.demo2.svc.cluster.local:80"]);

    const kept = mapped[0]!.listen.port;
    const after = await listeners.sync([a]);
    expect(after).toEqual([{ target: a.target, listen: { host: "127.20.0.1", port: kept } }]);
    await expect(greeting("127.20.0.2", mapped[1]!.listen.port)).rejects.toThrow();
    await listeners.close();
    far.close();
  });
});
