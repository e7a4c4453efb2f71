// A loopback relay between the shadow's remote listeners and the local process. It adds nothing to
// the bytes; it exists to SEE the connections: when the session hands the traffic back, kube-proxy
// applies the endpoint change a little after the API shows it (about a second), and connections
// that still land on the shadow meanwhile must find the tunnel open. The relay says when the last
// one arrived, so the shadow goes only once they have stopped.

import { createServer, connect, type Server, type Socket } from "node:net";

export interface CountingRelay {
  host: string;
  port: number;
  /** Connections accepted so far. */
  connections(): number;
  /** Resolves once no connection has arrived for `quietMs`, or after `maxMs` at the latest. */
  quiet(quietMs: number, maxMs: number): Promise<boolean>;
  close(): Promise<void>;
}

export interface RelayEvents {
  /** The local process refused a connection (said once until it accepts again). */
  refused(error: Error): void;
  /** It accepts again after a refusal. */
  recovered(): void;
}

export function startCountingRelay(target: { host: string; port: number }, events: RelayEvents): Promise<CountingRelay> {
  let count = 0;
  let refusing = false;
  let lastArrival = Date.now();
  const sockets = new Set<Socket>();
  const arrivals = new Set<() => void>();

  const server: Server = createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    count++;
    lastArrival = Date.now();
    for (const wake of [...arrivals]) wake();
    sockets.add(client);
    client.once("close", () => sockets.delete(client));
    client.on("error", () => client.destroy());
    client.pause();
    const local = connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true });
    let connected = false;
    sockets.add(local);
    local.once("close", () => sockets.delete(local));
    local.once("connect", () => {
      connected = true;
      if (refusing) {
        refusing = false;
        events.recovered();
      }
      client.pipe(local);
      local.pipe(client);
      client.resume();
    });
    local.on("error", (error) => {
      if (!connected && !refusing) {
        refusing = true;
        events.refused(error);
      }
      client.destroy();
    });
    client.once("close", () => local.destroy());
    local.once("close", () => client.destroy());
  });

  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0 }, () => {
      const address = server.address();
      if (!address || typeof address === "string") return reject(new Error("relay has no port"));
      resolve({
        host: "127.0.0.1",
        port: address.port,
        connections: () => count,
        quiet(quietMs, maxMs) {
          const deadline = Date.now() + maxMs;
          return new Promise((done) => {
            let timer: ReturnType<typeof setTimeout>;
            const arm = () => {
              clearTimeout(timer);
              const quietAt = lastArrival + quietMs;
              if (quietAt >= deadline) {
                timer = setTimeout(() => finish(false), Math.max(0, deadline - Date.now()));
                return;
              }
              timer = setTimeout(() => finish(true), Math.max(0, quietAt - Date.now()));
            };
            const finish = (wasQuiet: boolean) => {
              clearTimeout(timer);
              arrivals.delete(arm);
              done(wasQuiet);
            };
            arrivals.add(arm);
            arm();
          });
        },
        close: () =>
          new Promise<void>((done) => {
            for (const socket of sockets) socket.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
