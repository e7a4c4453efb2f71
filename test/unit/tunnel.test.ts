// The tunnel end to end without a cluster: the real shadow program runs as a subprocess on
// loopback and the real client rides a plain TCP connection to it (in production the same
// client rides a port-forward stream instead).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import net from "node:net";
import { createTunnel, type SshTunnel } from "../../core/tunnel/client.ts";
import { isKtctlError } from "../../core/errors.ts";
import { createSessionKeyPair } from "../../core/protocol/keys.ts";
import {
  SHADOW_COMMAND,
  ShadowProcess,
  StateLog,
  connectTcp,
  echoServer,
  exchange,
  freePort,
  localServer,
  memoryLogger,
  readAll,
  type LocalServer,
} from "./tunnel-harness.ts";

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

describe("tunnel through a real shadow process", () => {
  const keys = createSessionKeyPair("ktctl-test");
  const states = new StateLog();
  const log = memoryLogger();
  let shadow: ShadowProcess;
  let tunnel: SshTunnel;
  let echo: LocalServer;
  // The stream the tunnel rides now, and a switch that makes new ones fail (a port-forward outage).
  let currentLink: net.Socket | undefined;
  let outage: Error | undefined;

  beforeAll(async () => {
    echo = await echoServer();
    shadow = await ShadowProcess.start(keys.publicKey);
    // Reads `shadow` on every call: after a restart the tunnel must find the new process by itself.
    tunnel = await createTunnel({
      connect: async () => {
        if (outage) throw outage;
        return (currentLink = net.connect(shadow.port, "127.0.0.1"));
      },
      privateKey: keys.privateKey,
      logger: log.logger,
      onState: states.listener,
      clientVersion: "test",
    });
  }, 20_000);

  // A shadow that has not yet read the tunnel's close when stopped lingers (ENDPOINT_LINGER_MS).
  afterAll(async () => {
    await tunnel?.close();
    expect(states.seen.at(-1)?.state).toBe("closed");
    expect(await shadow?.stop("SIGTERM")).toBe(0); // SIGTERM is a clean exit
    await echo?.close();
  }, 15_000);

  test("the handshake reports the shadow's identity", async () => {
    expect(states.seen[0]?.state).toBe("connected");
    expect(tunnel.shadow).toMatchObject({ protocol: 1, roles: ["tunnel"], session: "test-session" });
    await shadow.waitFor(/conn\.open conn=\d+/);
  });

  test("a stream carries 1 MiB to a server and back intact", async () => {
    const payload = randomBytes(1024 * 1024);
    const stream = await tunnel.openStream("127.0.0.1", echo.port);
    const answer = await exchange(stream, payload);
    expect(answer.length).toBe(payload.length);
    expect(sha256(answer)).toBe(sha256(payload));
  });

  test("a stream to a name resolves it inside the shadow", async () => {
    const stream = await tunnel.openStream("localhost", echo.port);
    expect((await exchange(stream, "by name")).toString()).toBe("by name");
  });

  test("a failed open says why, as seen from the shadow", async () => {
    const closedPort = await freePort();
    const refused = await tunnel.openStream("127.0.0.1", closedPort).catch((error) => error);
    expect(isKtctlError(refused)).toBe(true);
    expect(refused.message).toBe(`cannot reach 127.0.0.1:${closedPort} from the cluster: connection refused`);
    expect(refused.reason).toBe("refused");

    const unknown = await tunnel.openStream("no-such-service.invalid", 80).catch((error) => error);
    expect(unknown.message).toBe('cannot reach no-such-service.invalid:80 from the cluster: no such host "no-such-service.invalid"');
    expect(unknown.reason).toBe("not-found");
  });

  test("resolve and ping go through the control channel", async () => {
    expect(await tunnel.resolve("localhost")).toContain("127.0.0.1");
    await expect(tunnel.resolve("no-such-service.invalid")).rejects.toThrow(/no such host/);
    expect(await tunnel.ping()).toBeLessThan(1000);
  });

  test("a remote listener delivers connections to a local server, half-close included", async () => {
    const laptop = await localServer(async (socket) => {
      // Answer only after the cluster side has finished sending: proves its FIN did not close our way back.
      const request = await readAll(socket);
      socket.end(`laptop got ${request.length} bytes: ${request.toString().slice(0, 5)}`);
    });
    const remotePort = await freePort();
    await tunnel.addRemoteListener(remotePort, "127.0.0.1", laptop.port);
    await shadow.waitFor(new RegExp(`listen\\.open .*port=${remotePort}`));

    const fromCluster = await connectTcp(remotePort);
    const answer = await exchange(fromCluster, "hello from the cluster");
    expect(answer.toString()).toBe("laptop got 22 bytes: hello");

    // Many at once, each to a fresh local connection.
    const answers = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => (await exchange(await connectTcp(remotePort), `req-${i}`)).toString()),
    );
    expect(answers).toEqual(Array.from({ length: 20 }, (_, i) => `laptop got ${`req-${i}`.length} bytes: req-${i}`.slice(0, 25)));
    expect(laptop.connections).toBe(21);

    await tunnel.removeRemoteListener(remotePort);
    await shadow.waitFor(new RegExp(`listen\\.close port=${remotePort} why=cancelled`));
    await expect(connectTcp(remotePort)).rejects.toMatchObject({ code: "ECONNREFUSED" });
    await laptop.close();
  }, 20_000);

  test("a refusing local port closes the cluster connection cleanly and is logged once", async () => {
    const deadLocalPort = await freePort();
    const remotePort = await freePort();
    await tunnel.addRemoteListener(remotePort, "127.0.0.1", deadLocalPort);
    for (let i = 0; i < 3; i++) {
      const fromCluster = await connectTcp(remotePort);
      expect((await exchange(fromCluster, "anyone?")).length).toBe(0);
    }
    const refusals = log.messages.filter((m) => m.level === "warn" && m.message.includes(`127.0.0.1:${deadLocalPort} refused`));
    expect(refusals).toHaveLength(1);
    await tunnel.removeRemoteListener(remotePort);
  });

  test("200 concurrent streams, 64 KiB each way, all intact", async () => {
    const results = await Promise.all(
      Array.from({ length: 200 }, async () => {
        const payload = randomBytes(64 * 1024);
        const answer = await exchange(await tunnel.openStream("127.0.0.1", echo.port), payload);
        return answer.equals(payload);
      }),
    );
    expect(results.filter(Boolean)).toHaveLength(200);
  }, 30_000);

  test("a wrong key is refused at once, with a clear error", async () => {
    const stranger = createSessionKeyPair("stranger");
    const started = Date.now();
    const error = await createTunnel({
      connect: async () => net.connect(shadow.port, "127.0.0.1"),
      privateKey: stranger.privateKey,
      logger: memoryLogger().logger,
    }).catch((e) => e);
    expect(isKtctlError(error)).toBe(true);
    expect(error.message).toBe("the shadow refused this session's key");
    expect(Date.now() - started).toBeLessThan(3000); // no pointless retries
    await shadow.waitFor(/auth\.refused .*key=SHA256:/);
  });

  test("a cut link resets its streams; cluster connections arriving meanwhile wait for the host", async () => {
    const laptop = await localServer(async (socket) => socket.end(`late answer to ${await readAll(socket)}`));
    const remotePort = await freePort();
    await tunnel.addRemoteListener(remotePort, "127.0.0.1", laptop.port);
    const openStream = await tunnel.openStream("127.0.0.1", echo.port);
    const streamError = new Promise<Error>((resolve) => openStream.once("error", resolve));

    const from = states.seen.length;
    outage = new Error("port-forward unavailable");
    currentLink!.destroy();
    expect((await streamError).message).toMatch(/tunnel link lost/); // not a clean-looking end
    await states.waitFor("reconnecting", from, 5_000);
    await shadow.waitFor(new RegExp(`listen\\.orphaned port=${remotePort}`));

    // The host is away: the shadow still listens and holds this connection instead of refusing it.
    const fromCluster = await connectTcp(remotePort);
    const answer = exchange(fromCluster, "held request");
    outage = undefined;
    await states.waitFor("connected", from, 10_000);
    expect((await answer).toString()).toBe("late answer to held request");
    await tunnel.removeRemoteListener(remotePort);
    await laptop.close();
  }, 20_000);

  test("a stalled link is noticed within seconds; the reconnected link takes the listeners over", async () => {
    const laptop = await localServer((socket) => socket.end("still here"));
    const remotePort = await freePort();
    await tunnel.addRemoteListener(remotePort, "127.0.0.1", laptop.port);

    const from = states.seen.length;
    const stalledAt = Date.now();
    shadow.process.kill("SIGSTOP"); // the TCP connection stays open; nothing answers
    const lost = await states.waitFor("reconnecting", from, 10_000);
    const detectMs = lost.at - stalledAt;
    console.log(`stalled link detected after ${detectMs} ms (${lost.detail})`);
    expect(detectMs).toBeLessThan(6000);
    expect(lost.detail).toMatch(/no traffic from the shadow/);

    shadow.process.kill("SIGCONT");
    await states.waitFor("connected", from, 15_000);
    await shadow.waitFor(new RegExp(`listen\\.taken-over port=${remotePort}`));
    expect((await exchange(await connectTcp(remotePort), "")).toString()).toBe("still here");
    await tunnel.removeRemoteListener(remotePort);
    await laptop.close();
  }, 30_000);

  test("shadow killed and replaced: the tunnel reconnects by itself and its listener works again", async () => {
    const laptop = await localServer((socket) => socket.end("back again"));
    const remotePort = await freePort();
    await tunnel.addRemoteListener(remotePort, "127.0.0.1", laptop.port);
    expect((await exchange(await connectTcp(remotePort), "")).toString()).toBe("back again");

    const from = states.seen.length;
    const port = shadow.port;
    await shadow.stop("SIGKILL");
    await states.waitFor("reconnecting", from, 5_000);

    // Asked while the link is down: waits for the next link instead of failing.
    const pendingStream = tunnel.openStream("127.0.0.1", echo.port);

    const restartedAt = Date.now();
    shadow = await ShadowProcess.start(keys.publicKey, port);
    const back = await states.waitFor("connected", from, 15_000);
    console.log(`reconnected ${back.at - restartedAt} ms after the new shadow listened (${back.detail})`);

    expect((await exchange(await pendingStream, "waited")).toString()).toBe("waited");
    await shadow.waitFor(new RegExp(`listen\\.open .*port=${remotePort}`));
    expect((await exchange(await connectTcp(remotePort), "")).toString()).toBe("back again");
    await laptop.close();
  }, 30_000);
});

test("the shadow refuses to start without a usable key, saying why", async () => {
  const child = Bun.spawn(SHADOW_COMMAND, {
    env: { ...process.env, KTCTL_AUTHORIZED_KEY: "", KTCTL_TUNNEL_PORT: "0" },
    stdout: "pipe",
    stderr: "pipe",
  });
  expect(await child.exited).toBe(2);
  expect(await new Response(child.stderr).text()).toContain("KTCTL_AUTHORIZED_KEY must hold");
});
