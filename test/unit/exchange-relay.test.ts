import { afterEach, describe, expect, test } from "bun:test";
import { connect, createServer, type Server } from "node:net";
import { startCountingRelay, type CountingRelay } from "../../core/serving/relay.ts";

const servers: Server[] = [];
const relays: CountingRelay[] = [];

afterEach(async () => {
  await Promise.all(relays.splice(0).map((r) => r.close()));
  await Promise.all(servers.splice(0).map((s) => new Promise((done) => s.close(done))));
});

/** A local echo server (stands for the developer's process). */
function echoServer(): Promise<number> {
  const server = createServer((socket) => socket.pipe(socket));
  servers.push(server);
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve((server.address() as { port: number }).port)));
}

/** A port nothing listens on (bound, then released). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as { port: number }).port;
  await new Promise((done) => server.close(done));
  return port;
}

/** Sends `text`, returns what came back before the connection ended (a reset ends it too). */
function roundTrip(port: number, text: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    let answer = "";
    socket.on("data", (chunk) => {
      answer += chunk.toString();
      if (answer.length >= text.length) socket.end();
    });
    socket.once("close", () => resolve(answer));
    socket.once("error", () => resolve(answer));
    socket.write(text);
  });
}

describe("counting relay", () => {
  test("carries bytes both ways and counts connections", async () => {
    const target = await echoServer();
    const relay = await startCountingRelay({ host: "127.0.0.1", port: target }, { refused: () => {}, recovered: () => {} });
    relays.push(relay);
    expect(await roundTrip(relay.port, "hello")).toBe("hello");
    expect(await roundTrip(relay.port, "x".repeat(200_000))).toBe("x".repeat(200_000));
    expect(relay.connections()).toBe(2);
  });

  test("says once that the local process refuses, and once that it is back", async () => {
    const port = await freePort();
    const events: string[] = [];
    const relay = await startCountingRelay({ host: "127.0.0.1", port }, { refused: () => events.push("refused"), recovered: () => events.push("recovered") });
    relays.push(relay);
    expect(await roundTrip(relay.port, "a")).toBe("");
    expect(await roundTrip(relay.port, "b")).toBe("");
    const server = createServer((socket) => socket.pipe(socket));
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", () => resolve()));
    expect(await roundTrip(relay.port, "c")).toBe("c");
    expect(events).toEqual(["refused", "recovered"]);
  });

  test("quiet: resolves after a silence, later when connections keep coming, false at the bound", async () => {
    const target = await echoServer();
    const relay = await startCountingRelay({ host: "127.0.0.1", port: target }, { refused: () => {}, recovered: () => {} });
    relays.push(relay);
    let started = performance.now();
    expect(await relay.quiet(0, 1000)).toBe(true);
    expect(performance.now() - started).toBeLessThan(500);

    // A connection during the wait pushes the end of the silence back.
    started = performance.now();
    const waiting = relay.quiet(300, 5000);
    await Bun.sleep(200);
    await roundTrip(relay.port, "late");
    expect(await waiting).toBe(true);
    expect(performance.now() - started).toBeGreaterThanOrEqual(480);

    // Traffic that never stops: the bound ends the wait.
    let flowing = true;
    const flow = (async () => {
      while (flowing) await roundTrip(relay.port, "x");
    })();
    started = performance.now();
    expect(await relay.quiet(300, 800)).toBe(false);
    expect(performance.now() - started).toBeLessThan(1500);
    flowing = false;
    await flow;
  });
});
