import { afterEach, describe, expect, test } from "bun:test";
import net from "node:net";
import { watchCollection } from "../../core/kube/watch.ts";
import type { Transport } from "../../core/kube/transport.ts";

let server: net.Server | undefined;
afterEach(() => server?.close());

const chunk = (text: string) => `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`;
const event = (type: string, name: string, version: string) =>
  chunk(`${JSON.stringify({ type, object: { kind: "ConfigMap", metadata: { namespace: "demo", name, resourceVersion: version } } })}\n`);

/**
 * An API server (plain HTTP) whose first watch sends one event and then resets the connection, as a
 * restarted API server does; the second watch sends another event and stays open.
 */
async function flakyApiServer(): Promise<{ base: string; watches: string[] }> {
  const watches: string[] = [];
  server = net.createServer((socket) => {
    socket.once("data", (data) => {
      const url = data.toString().split(" ")[1]!;
      const head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
      if (!url.includes("watch=1")) {
        socket.end(head + chunk(JSON.stringify({ kind: "ConfigMapList", apiVersion: "v1", metadata: { resourceVersion: "1" }, items: [] })) + chunk(""));
        return;
      }
      watches.push(url);
      if (watches.length === 1) {
        socket.write(head + event("ADDED", "a", "2"), () => setTimeout(() => socket.resetAndDestroy(), 50));
      } else {
        socket.write(head + event("ADDED", "b", "3"));
      }
    });
  });
  await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
  return { base: `http://127.0.0.1:${(server!.address() as net.AddressInfo).port}`, watches };
}

describe("watch across a connection reset", () => {
  test("a stream that breaks mid-way is resumed from the last version, not ended", async () => {
    const { base, watches } = await flakyApiServer();
    const transport = {
      server: base,
      credentials: async () => ({ headers: {}, tls: { rejectUnauthorized: true } }),
      fetch: (path: string, init: RequestInit) => fetch(`${base}${path}`, init),
    } as unknown as Transport;
    const stop = new AbortController();
    const seen: string[] = [];
    let failed: unknown;
    const both = new Promise<void>((resolve) => {
      watchCollection(transport, "/api/v1/namespaces/demo/configmaps", {}, (type, obj) => {
        seen.push(`${type} ${obj.metadata.name}`);
        if (seen.length === 2) resolve();
      }, stop.signal).catch((error) => {
        failed = error;
        resolve();
      });
    });
    await both;
    stop.abort();
    expect(failed).toBeUndefined();
    expect(seen).toEqual(["ADDED a", "ADDED b"]);
    expect(watches[1]).toContain("resourceVersion=2");
  }, 5_000);
});
