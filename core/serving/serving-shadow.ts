// The life of a session whose shadow serves cluster traffic to the laptop (exchange, preview, a
// team's mode): setup that undoes everything on failure or a signal, the shadow with its remote
// listeners (their arrivals counted), and the tunnel's end.

import type { PluginApi, ServingShadow, ServingShadowOptions, Session, Shadow, StopSignals } from "../plugin-api.ts";
import { errorText } from "../kube/objects.ts";
import { createArrivalCounter } from "./relay.ts";

/**
 * Starts the shadow declaring `ports` and makes each of them forward to the laptop's local port,
 * counting the arrivals (see relay.ts).
 */
export async function startServingShadow(
  api: Pick<PluginApi, "logger" | "startShadow" | "ui">,
  session: Session,
  options: ServingShadowOptions,
): Promise<ServingShadow> {
  const arrivals = createArrivalCounter();
  const shadow = await api.startShadow(session, {
    role: options.role,
    labels: options.labels,
    ports: options.ports.map((p) => (p.name ? { name: p.name, port: p.shadowPort } : { port: p.shadowPort })),
  });
  for (const port of options.ports) {
    const local = { host: options.localHost, port: port.localPort };
    const via = `${options.describe ?? options.role} :${port.shadowPort}`;
    await shadow.tunnel.addRemoteListener(port.shadowPort, local.host, local.port, (origin) => {
      arrivals.arrived();
      return api.ui.tap({ sessionId: session.id, via, local, remote: `${origin.address}:${origin.port}` });
    });
  }
  return {
    shadow,
    connections: arrivals.connections,
    drained: (quietMs, maxMs) => arrivals.quiet(quietMs, maxMs),
    // Nothing of its own to close any more: the tunnel's listeners go with the session.
    close: async () => {},
  };
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
