// `api.ui`: the plugins' side of the local page. The session process's channel is opened on first
// use (a shadow starting, a panel, a tap), so commands that never serve anything never watch.

import type { ConsolaInstance } from "consola";
import type { ConnectionTap, Session, Shadow, TapOptions, UiApi } from "../plugin-api.ts";
import { ktctlHome } from "../config/paths.ts";
import { createUiPublisher, type UiPublisher } from "./publisher.ts";
import { createConnectionTap } from "./tap/connection.ts";

/** A tap that can never take the relay down: the first fault turns it off. */
function guarded(tap: ConnectionTap, log: (message: string) => void): ConnectionTap {
  let failed = false;
  const run = (action: () => void) => {
    if (failed) return;
    try {
      action();
    } catch (error) {
      failed = true;
      log(`ui tap: stopped following a connection: ${(error as Error).message}`);
    }
  };
  return {
    fromClient: (chunk) => run(() => tap.fromClient(chunk)),
    fromServer: (chunk) => run(() => tap.fromServer(chunk)),
    end: () => run(() => tap.end()),
  };
}

export interface UiMembers {
  ui: UiApi;
  /** Reports the tunnel's health of a shadow to the ui (the core calls it for every shadow). */
  reportShadow(session: Session, shadow: Shadow): Shadow;
}

export function createUiMembers(logger: ConsolaInstance): UiMembers {
  const home = () => ktctlHome();
  let publisher: UiPublisher | undefined;
  const channel = () => (publisher ??= createUiPublisher(home(), logger));
  const debug = (message: string) => logger.debug(message);

  const ui: UiApi = {
    get watching() {
      return channel().connected;
    },
    publish: (notice) => channel().send({ type: "notice", notice }),
    panel: (panel) => channel().sendState(`panel/${panel.sessionId ?? ""}/${panel.id}`, { type: "panel", panel }),
    removePanel: (id, sessionId) => channel().sendState(`panel/${sessionId ?? ""}/${id}`, undefined, { type: "panel-removed", id, sessionId }),
    tap(options: TapOptions) {
      const out = channel();
      if (!out.connected) return undefined;
      return guarded(
        createConnectionTap(options, (record) => out.send({ type: "traffic", record })),
        debug,
      );
    },
    openHub: async () => (await import("./hub.ts")).openUiHub(home(), logger),
    endSession: async (sessionId) => (await import("./end-session.ts")).endSession(home(), sessionId),
  };

  return {
    ui,
    reportShadow(session, shadow) {
      const out = channel();
      const key = `tunnel/${session.id}/${shadow.podName}`;
      out.sendState(key, { type: "tunnel", sessionId: session.id, state: "connected" });
      shadow.tunnel.onStateChange((state, detail) => out.sendState(key, { type: "tunnel", sessionId: session.id, state, detail }));
      return shadow;
    },
  };
}
