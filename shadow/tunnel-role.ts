// The tunnel role: the SSH endpoint the host reaches through its port-forward.
// The port is bound before ssh2 is even loaded, so the readiness probe (and the host, which
// starts knocking as soon as the pod runs) finds it open as early as possible; sockets that
// arrive meanwhile wait, paused, and are handed over once the SSH server exists.

import net from "node:net";
import type { RunningRole, ShadowContext } from "./roles.ts";

export async function start(ctx: ShadowContext): Promise<RunningRole> {
  const { config, log } = ctx;
  const early: net.Socket[] = [];
  let hand: ((socket: net.Socket) => void) | undefined;

  const listener = net.createServer({ pauseOnConnect: true }, (socket) => {
    socket.on("error", () => {}); // a probe that resets must not take the shadow down
    if (hand) hand(socket);
    else early.push(socket);
  });
  await new Promise<void>((resolve, reject) => {
    listener.once("error", reject);
    listener.listen({ host: config.tunnel.host, port: config.tunnel.port }, resolve);
  });
  listener.on("error", (error) => log.error("tunnel.listener-error", { error: error.message }));
  const { port } = listener.address() as net.AddressInfo;
  log.info("tunnel.listening", { host: config.tunnel.host, port });

  const [{ TunnelServer, explainStreamFailure }, { createHostKey, fingerprint, parseAuthorizedKey }, { DirectServer }, { FEATURE_DIRECT, FEATURE_EARLY_REUSE, FEATURE_LATE_EOF, FEATURE_REVERSE, FEATURE_REUSE }, { ReverseServer }] =
    await Promise.all([
      import("./tunnel-server.ts"),
      import("../core/protocol/keys.ts"),
      import("./direct-server.ts"),
      import("../core/protocol/tunnel.ts"),
      import("./reverse-server.ts"),
    ]);
  let authorizedKey;
  try {
    authorizedKey = parseAuthorizedKey(config.tunnel.authorizedKey);
  } catch (error) {
    listener.close();
    throw new Error(`the authorized key is unusable: ${(error as Error).message}`);
  }
  // Direct streams arrive through the port-forward, which connects to the pod's loopback: nothing
  // else needs to reach this listener. Its port is whatever is free (the host asks for it).
  const direct = await DirectServer.start({ log, host: "127.0.0.1", port: 0, explain: explainStreamFailure });
  ctx.control.handle("direct", () => ({ type: "direct-ready", port: direct.port, token: direct.token.toString("hex") }));
  // Reverse streams the same way; their token is per SSH connection, whose listeners they serve.
  const reverse = await ReverseServer.start({ log, host: "127.0.0.1", port: 0 });
  ctx.control.handle("reverse", (_request, peer) => ({ type: "reverse-ready", port: reverse.port, token: reverse.tokenFor(peer.connection).toString("hex") }));
  const server = new TunnelServer({
    authorizedKey,
    hostKey: createHostKey(),
    log,
    control: ctx.control,
    identity: { version: ctx.version, roles: config.roles, session: config.sessionId, podIP: config.podIP, features: [FEATURE_DIRECT, FEATURE_REVERSE, FEATURE_REUSE, FEATURE_EARLY_REUSE, FEATURE_LATE_EOF] },
    reverse,
  });
  hand = (socket) => server.accept(socket);
  for (const socket of early.splice(0)) if (!socket.destroyed) hand(socket);
  log.info("tunnel.ready", { key: fingerprint(authorizedKey), direct: direct.port, reverse: reverse.port });

  return {
    servesEndpoint: () => server.servesEndpoint(),
    async stop() {
      await new Promise<void>((resolve) => {
        listener.close(() => resolve());
        server.close();
        direct.close();
        reverse.close();
      });
    },
  };
}
