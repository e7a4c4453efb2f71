// The ui's end of the channel (see channel.ts): a loopback listener that accepts session processes
// presenting the token, and hands their events to the page. Only one ui per KTCTL_HOME: a second
// one is refused with the first one's pid, since sessions connect to the one endpoint file.

import { randomBytes } from "node:crypto";
import { mkdir, open, rename, rm } from "node:fs/promises";
import { createServer, type Socket } from "node:net";
import type { UiEvent, UiHub, UiPanel, UiReceivedEvent } from "../plugin-api.ts";
import { ExitCode, KtctlError } from "../errors.ts";
import { isProcessAlive } from "../session/processes.ts";
import { endpointPath, lineSplitter, readEndpoint, uiDir, type Hello, type UiEndpoint } from "./channel.ts";

interface Publisher {
  pid: number;
  socket: Socket;
  panels: Map<string, UiPanel>;
}

async function writeEndpoint(home: string, endpoint: UiEndpoint): Promise<void> {
  await mkdir(uiDir(home), { recursive: true, mode: 0o700 });
  const path = endpointPath(home);
  const tmp = `${path}.${process.pid}.tmp`;
  // The token lets a process send to the ui: readable by its owner only.
  const file = await open(tmp, "w", 0o600);
  try {
    await file.writeFile(JSON.stringify(endpoint));
  } finally {
    await file.close();
  }
  await rename(tmp, path);
}

export async function openUiHub(home: string, log: { debug(message: string): void }): Promise<UiHub> {
  const existing = await readEndpoint(home);
  if (existing && existing.pid !== process.pid && isProcessAlive(existing.pid)) {
    throw new KtctlError(`a ktctl ui is already open (pid ${existing.pid})`, ExitCode.conflict, "use that page, or end that ktctl ui first");
  }
  const token = randomBytes(24).toString("hex");
  const publishers = new Map<Socket, Publisher>();
  const listeners = new Set<(event: UiReceivedEvent) => void>();
  const presence = new Set<(pid: number, connected: boolean) => void>();

  const deliver = (received: UiReceivedEvent) => {
    for (const listener of listeners) {
      try {
        listener(received);
      } catch (error) {
        log.debug(`ui hub: a listener failed: ${(error as Error).message}`);
      }
    }
  };

  const server = createServer({ noDelay: true }, (socket) => {
    let publisher: Publisher | undefined;
    socket.on("error", () => socket.destroy());
    const feed = lineSplitter((line) => {
      let message: unknown;
      try {
        message = JSON.parse(line);
      } catch {
        return void socket.destroy();
      }
      if (!publisher) {
        const hello = (message as Hello)?.hello;
        if (!hello || hello.token !== token || typeof hello.pid !== "number") return void socket.destroy();
        publisher = { pid: hello.pid, socket, panels: new Map() };
        publishers.set(socket, publisher);
        for (const listener of presence) listener(publisher.pid, true);
        return;
      }
      const event = message as UiEvent;
      if (event.type === "panel") publisher.panels.set(`${event.panel.sessionId ?? ""}/${event.panel.id}`, event.panel);
      if (event.type === "panel-removed") publisher.panels.delete(`${event.sessionId ?? ""}/${event.id}`);
      deliver({ pid: publisher.pid, at: Date.now(), event });
    });
    socket.on("data", (chunk) => {
      if (!feed(chunk)) socket.destroy();
    });
    socket.once("close", () => {
      if (!publisher) return;
      publishers.delete(socket);
      for (const listener of presence) listener(publisher.pid, false);
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0 }, () => resolve());
  });
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("the ui channel has no port");
  await writeEndpoint(home, { port: address.port, token, pid: process.pid });

  return {
    publishers: () => [...new Set([...publishers.values()].map((p) => p.pid))],
    subscribe(listener) {
      for (const publisher of publishers.values()) {
        for (const panel of publisher.panels.values()) listener({ pid: publisher.pid, at: Date.now(), event: { type: "panel", panel } });
      }
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    onPublisher(listener) {
      presence.add(listener);
      return () => presence.delete(listener);
    },
    async close() {
      // Only our own file: a newer ui may have replaced it.
      const current = await readEndpoint(home);
      if (current?.token === token) await rm(endpointPath(home), { force: true });
      for (const socket of publishers.keys()) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
