// The life of a session whose shadow serves cluster traffic to the laptop (exchange, preview, a
// team's mode): setup that undoes everything on failure or a signal, the shadow with its remote
// listeners behind counting relays, and the tunnel's end.

import { errorText } from "../kube/objects.ts";
import type { PluginApi, ServingShadow, ServingShadowOptions, Session, Shadow, StopSignals } from "../plugin-api.ts";
import { startCountingRelay, type CountingRelay } from "./relay.ts";

/**
 * Starts the shadow declaring `ports` and makes each of them forward to the laptop's local port,
 * through a loopback relay that watches the arrivals (see relay.ts).
 */
export async function startServingShadow(
  api: Pick<PluginApi, "logger" | "startShadow" | "ui">,
  session: Session,
  options: ServingShadowOptions,
): Promise<ServingShadow> {
  const relays: CountingRelay[] = [];
  const closeRelays = () => Promise.all(relays.map((r) => r.close())).then(() => undefined);
  try {
    for (const port of options.ports) {
      const target = `${options.localHost}:${port.localPort}`;
      relays.push(
        await startCountingRelay(
          { host: options.localHost, port: port.localPort },
          {
            refused: (error) => api.logger.warn(`${target} refused a connection from the cluster (${errorText(error)}); is the local process running?`),
            recovered: () => api.logger.info(`${target} accepts connections again`),
          },
        ),
      );
    }
    const shadow = await api.startShadow(session, {
      role: options.role,
      labels: options.labels,
      ports: options.ports.map((p) => (p.name ? { name: p.name, port: p.shadowPort } : { port: p.shadowPort })),
    });
    for (const [i, port] of options.ports.entries()) {
      const local = { host: options.localHost, port: port.localPort };
      const via = `${options.describe ?? options.role} :${port.shadowPort}`;
      await shadow.tunnel.addRemoteListener(port.shadowPort, relays[i]!.host, relays[i]!.port, (origin) =>
        api.ui.tap({ sessionId: session.id, via, local, remote: `${origin.address}:${origin.port}` }),
      );
    }
    return {
      shadow,
      connections: () => relays.reduce((sum, r) => sum + r.connections(), 0),
      drained: async (quietMs, maxMs) => (await Promise.all(relays.map((r) => r.quiet(quietMs, maxMs)))).every(Boolean),
      close: closeRelays,
    };
  } catch (error) {
    await closeRelays();
    throw error;
  }
}

/** Resolves when the tunnel gives up for good (it reconnects by itself otherwise). */
export function tunnelClosed(shadow: Shadow): Promise<string> {
  return new Promise((resolve) => shadow.tunnel.onStateChange((state, detail) => state === "closed" && resolve(`tunnel closed${detail ? ` (${detail})` : ""}`)));
}

/** Runs `setup` with the session; any failure (or a signal meanwhile) undoes everything before rethrowing. */
export async function setUp<T>(session: Session, stop: StopSignals, logger: PluginApi["logger"], setup: () => Promise<T>): Promise<T> {
  let settingUp = true;
  // A signal during setup ends the session at once: its steps settle, then unwind. Later signals
  // are the caller's: it may have to restore things in an order of its own first.
  void stop.received.then((signal) => {
    if (settingUp) session.close(`signal ${signal}`).catch(() => undefined);
  });
  try {
    return await setup();
  } catch (error) {
    try {
      await session.close(stop.signal ? `signal ${stop.signal}` : `setup failed: ${errorText(error)}`);
    } catch (closeError) {
      logger.error(errorText(closeError));
    }
    throw error;
  } finally {
    settingUp = false;
  }
}
