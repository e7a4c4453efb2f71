// A session process's end of the ui channel (see channel.ts). It costs nothing while no ui is
// open: one directory watch, and `connected` false so every send returns at once. It never makes
// the session wait: a ui that reads too slowly loses traffic records, never the session's time.

import { mkdirSync, watch, type FSWatcher } from "node:fs";
import { connect, type Socket } from "node:net";
import type { UiEvent } from "../plugin-api.ts";
import { ENDPOINT_FILE, readEndpoint, uiDir, type Hello, type UiEndpoint } from "./channel.ts";

export interface UiPublisher {
  readonly connected: boolean;
  send(event: UiEvent): void;
  /**
   * Sends an event that describes current state (a panel, the tunnel's health): the latest per key
   * is remembered and sent again to a ui that connects later. `undefined` forgets the key.
   */
  sendState(key: string, event: UiEvent | undefined, removal?: UiEvent): void;
  close(): void;
}

export function createUiPublisher(home: string, log: { debug(message: string): void }): UiPublisher {
  let socket: Socket | undefined;
  let endpoint: UiEndpoint | undefined;
  let connected = false;
  /** The kernel buffer is full: drop traffic until it drains. */
  let congested = false;
  let checking = false;
  let recheck = false;
  let closed = false;
  let watcher: FSWatcher | undefined;
  const state = new Map<string, UiEvent>();

  const write = (event: UiEvent) => {
    if (!socket || !connected || congested) return;
    if (!socket.write(JSON.stringify(event) + "\n")) congested = true;
  };

  const disconnect = () => {
    connected = false;
    congested = false;
    socket?.destroy();
    socket = undefined;
    endpoint = undefined;
  };

  const open = (next: UiEndpoint) => {
    disconnect();
    endpoint = next;
    const attempt = connect({ host: "127.0.0.1", port: next.port, noDelay: true });
    socket = attempt;
    attempt.unref(); // an open ui must not keep a finished session alive
    attempt.on("error", (error) => log.debug(`ui channel: ${error.message}`));
    attempt.once("connect", () => {
      if (socket !== attempt) return;
      const hello: Hello = { hello: { token: next.token, pid: process.pid } };
      attempt.write(JSON.stringify(hello) + "\n");
      connected = true;
      log.debug(`ui channel: connected to the ui (pid ${next.pid})`);
      for (const event of state.values()) write(event);
    });
    attempt.on("drain", () => {
      if (!congested) return;
      congested = false;
      // Panels may have changed meanwhile: the latest content goes again.
      for (const event of state.values()) write(event);
    });
    attempt.once("close", () => {
      if (socket === attempt) disconnect();
    });
  };

  const check = async () => {
    if (checking) {
      recheck = true;
      return;
    }
    checking = true;
    try {
      do {
        recheck = false;
        const found = await readEndpoint(home);
        if (closed) return;
        if (!found) {
          if (endpoint) disconnect();
        } else if (!endpoint || found.port !== endpoint.port || found.token !== endpoint.token) {
          open(found);
        }
      } while (recheck);
    } finally {
      checking = false;
    }
  };

  try {
    const dir = uiDir(home);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    watcher = watch(dir, (_event, name) => {
      if (!name || name === ENDPOINT_FILE) void check();
    });
    watcher.on("error", (error) => log.debug(`ui channel: watch failed: ${error.message}`));
    watcher.unref();
    void check();
  } catch (error) {
    // No watchable home (read-only, unusual file system): the session simply has no ui.
    log.debug(`ui channel: not watching: ${(error as Error).message}`);
  }

  return {
    get connected() {
      return connected && !congested;
    },
    send: write,
    sendState(key, event, removal) {
      if (event) {
        state.set(key, event);
        write(event);
      } else if (state.delete(key) && removal) write(removal);
    },
    close() {
      closed = true;
      watcher?.close();
      disconnect();
    },
  };
}
