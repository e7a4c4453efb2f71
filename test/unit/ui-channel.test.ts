import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { UiHub, UiReceivedEvent } from "../../core/plugin-api.ts";
import { endpointPath, readEndpoint } from "../../core/ui/channel.ts";
import { openUiHub } from "../../core/ui/hub.ts";
import { createUiPublisher, type UiPublisher } from "../../core/ui/publisher.ts";

const quiet = { debug: () => undefined };
const homes: string[] = [];
const closers: (() => unknown)[] = [];

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  for (const home of homes.splice(0)) rmSync(home, { recursive: true, force: true });
});

function home(): string {
  const dir = mkdtempSync(join(tmpdir(), "ktctl-ui-"));
  homes.push(dir);
  return dir;
}

async function until(check: () => boolean, what: string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(5);
  }
}

function publisher(dir: string): UiPublisher {
  const p = createUiPublisher(dir, quiet);
  closers.push(() => p.close());
  return p;
}

async function hub(dir: string): Promise<UiHub> {
  const h = await openUiHub(dir, quiet);
  closers.push(() => h.close());
  return h;
}

describe("ui channel", () => {
  test("with no ui open a session sends nothing; a ui opened later is noticed without polling and gets the remembered state", async () => {
    const dir = home();
    const out = publisher(dir);
    await Bun.sleep(50);
    expect(out.connected).toBe(false);
    // Sent while no ui is open: dropped (never queued).
    out.send({ type: "notice", notice: { source: "t", text: "lost" } });
    out.sendState("panel/x", { type: "panel", panel: { id: "x", title: "X", columns: ["a"], rows: [["1"]] } });

    const ui = await hub(dir);
    const received: UiReceivedEvent[] = [];
    ui.subscribe((e) => received.push(e));
    await until(() => out.connected, "the session to connect");
    await until(() => received.length >= 1, "the remembered panel");
    expect(received[0]!.event).toMatchObject({ type: "panel", panel: { id: "x" } });
    expect(received[0]!.pid).toBe(process.pid);

    out.send({ type: "notice", notice: { source: "t", text: "seen" } });
    await until(() => received.length >= 2, "the notice");
    expect(received.map((e) => e.event.type)).toEqual(["panel", "notice"]);
    expect(JSON.stringify(received)).not.toContain("lost");
    expect(ui.publishers()).toEqual([process.pid]);
  });

  test("the endpoint file is its owner's only; the token is required", async () => {
    const dir = home();
    const ui = await hub(dir);
    expect(statSync(endpointPath(dir)).mode & 0o077).toBe(0);
    const endpoint = (await readEndpoint(dir))!;
    const presence: boolean[] = [];
    ui.onPublisher((_pid, connected) => presence.push(connected));

    const intruder = connect({ host: "127.0.0.1", port: endpoint.port });
    const closed = new Promise((resolve) => intruder.once("close", resolve));
    intruder.on("error", () => undefined);
    intruder.write(JSON.stringify({ hello: { token: "wrong", pid: 1 } }) + "\n");
    await closed;
    expect(presence).toEqual([]);
    expect(ui.publishers()).toEqual([]);
  });

  test("a second ui is refused while the first runs; the first leaves no endpoint behind", async () => {
    const dir = home();
    const first = await openUiHub(dir, quiet);
    // Same process: pretend the file belongs to another live process (our parent).
    const endpoint = JSON.parse(readFileSync(endpointPath(dir), "utf8"));
    await Bun.write(endpointPath(dir), JSON.stringify({ ...endpoint, pid: process.ppid }));
    await expect(openUiHub(dir, quiet)).rejects.toThrow(/already open/);
    await Bun.write(endpointPath(dir), JSON.stringify(endpoint));
    await first.close();
    expect(await readEndpoint(dir)).toBeUndefined();
  });

  test("the ui closing disconnects sessions quietly; a ui opening again is found again", async () => {
    const dir = home();
    const out = publisher(dir);
    const ui = await openUiHub(dir, quiet);
    await until(() => out.connected, "connect");
    await ui.close();
    await until(() => !out.connected, "disconnect");
    out.send({ type: "notice", notice: { source: "t", text: "nobody listens" } });
    const again = await hub(dir);
    await until(() => out.connected, "reconnect");
    expect(again.publishers()).toEqual([process.pid]);
  });
});
