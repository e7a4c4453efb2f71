// `ktctl ui` in a real headless browser (Chromium from Debian, driven by puppeteer-core) against the
// real cluster. ktctl, the page's browser and the local processes all run in the laptop namespace
// (the browser through a pipe, so the test drives it from outside). Requests come from the toolbox
// pod; each must appear on the page within a second with the right method, path, status and mark.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { DEMO_NS, LAPTOP_NS, eventually, inLaptop, requireCluster, runInLaptop, runInPod } from "./harness.ts";
import { expectLaptopAnswers, expectRestored, runKtctl, snapshot, startKtctl, stopAllKtctl, tempHome, type KtctlProcess } from "./exchange-harness.ts";
import { MESH_SERVICE, ask, deployMeshWorkload, meshLeftovers, removeMeshWorkload, serviceState, startLaptopService } from "./mesh-harness.ts";

const EXCHANGE_PORT = 28090;
const MESH_PORT = 18090;
const MARK = "ui-e2e";
/** The bound the issue sets: a request shows on the page within a second. */
const APPEARS_WITHIN_MS = 1000;
const TEST_TIMEOUT_MS = 180_000;
const EXCHANGED = /exchanged svc\/echo in [\d.]+s \(selector mode, session ([a-z0-9]+)\)/;
/** Set to a folder (e.g. docs/images) to keep screenshots of the page. */
const SCREENSHOTS = process.env.KTCTL_UI_SCREENSHOTS;

const { home, remove } = tempHome("ui");
const otherHome = tempHome("ui-other");
let ui: KtctlProcess;
let url: string;
let base: string;
let browser: Browser;
let exchangeServer: { stop(): Promise<void> };
let meshServer: { stop(): Promise<void> };
let before: Awaited<ReturnType<typeof snapshot>>;
let meshBefore: unknown;

/** The laptop's answer for the exchange: {"pod":"laptop"}, and a 404 for /missing. */
async function startExchangeServer(port: number): Promise<{ stop(): Promise<void> }> {
  const script = `Bun.serve({ port: ${port}, hostname: "127.0.0.1", fetch: (r) => new URL(r.url).pathname === "/missing" ? new Response("no", { status: 404 }) : Response.json({ pod: "laptop" }) });`;
  const proc = Bun.spawn(inLaptop(["bun", "-e", script]), { stdout: "ignore", stderr: "ignore" });
  await eventually(async () => {
    const r = await runInLaptop(["curl", "-s", "--max-time", "2", `http://127.0.0.1:${port}/`]);
    if (!r.stdout.includes("laptop")) throw new Error("not answering yet");
  }, 15_000);
  return {
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}

/** Chromium in the laptop namespace, spoken to over a pipe (its debugging port would be unreachable from here). */
async function launchBrowser(): Promise<Browser> {
  const wrapper = join(home, "chromium-in-laptop.sh");
  writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${LAPTOP_NS} chromium "$@"\n`);
  chmodSync(wrapper, 0o755);
  return puppeteer.launch({
    executablePath: wrapper,
    pipe: true,
    headless: true,
    defaultViewport: { width: 1500, height: 1000 },
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
  });
}

// Functions given to the page run in the browser: they reach its document as globalThis.document
// (this file is typed without the DOM library).
/** The traffic row whose path cell is exactly `path`, as the page shows it. */
async function waitForRow(page: Page, path: string, timeoutMs = APPEARS_WITHIN_MS): Promise<Record<string, string>> {
  const started = performance.now();
  const handle = await page.waitForFunction(
    (p) => {
      for (const row of (globalThis as any).document.querySelectorAll("#traffic tbody tr")) {
        const cell = (name: string) => row.querySelector(`.${name}`)?.textContent ?? "";
        if (cell("path") === p) return { id: (row as any).dataset.id!, proto: cell("proto"), method: cell("method"), path: cell("path"), status: cell("status").trim(), grpc: cell("grpc"), mark: cell("mark"), via: cell("via") };
      }
      return false;
    },
    { timeout: timeoutMs, polling: "mutation" },
    path,
  );
  const row = (await handle.jsonValue()) as Record<string, string>;
  row.appearedAfterMs = String(Math.round(performance.now() - started));
  return row;
}

async function screenshot(page: Page, name: string): Promise<void> {
  if (!SCREENSHOTS) return;
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, name) as `${string}.png`, fullPage: true });
}

/** Console errors and uncaught exceptions of each open page, from before it loaded. */
const pageErrors = new WeakMap<Page, string[]>();

async function openPage(): Promise<Page> {
  const page = await browser.newPage();
  const errors: string[] = [];
  pageErrors.set(page, errors);
  // From before navigation: a browser's own requests (the favicon, which has no token) count too.
  page.on("console", (message) => message.type() === "error" && errors.push(message.text()));
  page.on("pageerror", (error) => errors.push(String(error)));
  await page.goto(url);
  await page.waitForFunction(() => (globalThis as any).document.querySelector("#banner")?.textContent === "live", { timeout: 10_000 });
  return page;
}

describe("ktctl ui", () => {
  beforeAll(async () => {
    await requireCluster();
    await deployMeshWorkload();
    [exchangeServer, meshServer] = await Promise.all([startExchangeServer(EXCHANGE_PORT), startLaptopService("laptop-ui", MESH_PORT)]);
    before = await snapshot();
    meshBefore = await serviceState();
    ui = startKtctl(["ui", "--no-open"], home);
    url = (await ui.waitFor(/http:\/\/127\.0\.0\.1:\d+\/\?token=\S+/))[0];
    base = url.slice(0, url.indexOf("/?"));
    browser = await launchBrowser();
  }, TEST_TIMEOUT_MS);

  afterAll(async () => {
    await browser?.close();
    await stopAllKtctl();
    await Promise.all([exchangeServer?.stop(), meshServer?.stop()]);
    await removeMeshWorkload();
    remove();
    otherHome.remove();
  }, TEST_TIMEOUT_MS);

  test("the page needs its token: refused without it, with a wrong one, and under another Host name", async () => {
    const page = await browser.newPage();
    for (const refused of [`${base}/`, `${base}/?token=wrong`, `${base}/events`, `${base}/api/state?token=${"x".repeat(32)}`]) {
      const response = await page.goto(refused);
      expect(response!.status()).toBe(403);
      expect(await page.content()).toContain("refused");
    }
    const rebound = await runInLaptop(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: attacker.example", url]);
    expect(rebound.stdout).toBe("403");
    const response = await page.goto(url);
    expect(response!.status()).toBe(200);
    await page.waitForFunction(() => (globalThis as any).document.querySelector("#banner")?.textContent === "live", { timeout: 10_000 });
    await page.close();
  });

  test("a second ui on the same home is refused; a taken port is refused", async () => {
    const second = await runKtctl(["ui", "--no-open"], home);
    expect(second.code).toBe(10);
    expect(second.output).toContain("a ktctl ui is already open");
    const port = base.slice(base.lastIndexOf(":") + 1);
    const taken = await runKtctl(["ui", "--no-open", "--port", port], otherHome.home);
    expect(taken.code).toBe(7);
    expect(taken.output).toContain(`127.0.0.1:${port} is already in use`);
    // The refused one left no endpoint behind that sessions would try.
    expect(await Bun.file(join(otherHome.home, "ui", "endpoint.json")).exists()).toBe(false);
  }, TEST_TIMEOUT_MS);

  test(
    "exchange and mesh traffic shows within a second with method, path, status and mark; End on the page restores the cluster",
    async () => {
      const page = await openPage();
      const dialogs: string[] = [];
      page.on("dialog", (dialog) => {
        dialogs.push(dialog.message());
        void dialog.accept();
      });

      const exchange = startKtctl(["exchange", "echo", "--expose", `${EXCHANGE_PORT}:80`], home);
      const [, exchangeId] = await exchange.waitFor(EXCHANGED, 120_000);
      await expectLaptopAnswers();
      const mesh = startKtctl(["mesh", MESH_SERVICE, "--expose", `${MESH_PORT}:80`, "--versionMark", MARK], home);
      const meshId = (await mesh.waitFor(/\(session ([a-z][a-z0-9]+)\)/, 120_000))[1]!;
      await mesh.waitFor(/\bMARK \S/, 120_000);
      await eventually(async () => {
        if ((await ask("http", { VERSION: MARK }, { path: "/settle" })) !== "laptop-ui") throw new Error("mesh not routing to the laptop yet");
      }, 20_000);

      // Both sessions are listed, with their mode, target and a connected tunnel.
      for (const [id, mode, target] of [
        [exchangeId!, "exchange", "svc/echo"],
        [meshId, "mesh", `svc/${MESH_SERVICE}`],
      ]) {
        await page.waitForFunction(
          (i, m, t) => {
            const cells = [...((globalThis as any).document.querySelector(`#sessions tr[data-session="${i}"]`)?.children ?? [])].map((c: any) => c.textContent as string);
            return cells[1] === m && cells[2] === t && cells[3] === "demo" && cells[7] === "connected";
          },
          { timeout: 10_000 },
          id,
          mode,
          target,
        );
      }

      // exchange: HTTP/1.1 from the toolbox pod, a 200 and a 404.
      const ok = await runInPod(["wget", "-qO-", `http://echo.${DEMO_NS}/ui/hello?x=1`], "toolbox", DEMO_NS, { timeoutMs: 10_000 });
      expect(ok.stdout).toContain("laptop");
      const hello = await waitForRow(page, "/ui/hello?x=1");
      expect(hello).toMatchObject({ proto: "http1", method: "GET", status: "200", mark: "" });
      expect(hello.via).toContain("exchange svc/echo");
      await runInPod(["wget", "-qO-", `http://echo.${DEMO_NS}/missing`], "toolbox", DEMO_NS, { timeoutMs: 10_000 });
      expect(await waitForRow(page, "/missing")).toMatchObject({ method: "GET", status: "404" });

      // mesh: the marked request, over HTTP/1.1, h2c and gRPC.
      expect(await ask("http", { VERSION: MARK }, { path: "/ui/marked" })).toBe("laptop-ui");
      const marked = await waitForRow(page, "/ui/marked");
      expect(marked).toMatchObject({ proto: "http1", method: "GET", status: "200", mark: MARK });
      expect(marked.via).toContain(`mesh svc/${MESH_SERVICE}`);
      expect(await ask("h2c", { VERSION: MARK }, { path: "/ui/h2" })).toBe("laptop-ui");
      expect(await waitForRow(page, "/ui/h2")).toMatchObject({ proto: "h2", method: "GET", status: "200", mark: MARK });
      expect(await ask("grpc", { VERSION: MARK })).toBe("laptop-ui");
      expect(await waitForRow(page, "/grpc.health.v1.Health/Check")).toMatchObject({ proto: "grpc", method: "POST", status: "200", grpc: "0", mark: MARK });

      // The mesh's own panel: its routes, with the mark and who holds it.
      await page.waitForFunction((mark) => (globalThis as any).document.querySelector('[data-panel="mesh-routes"]')?.textContent?.toLowerCase().includes(`version: ${mark}`), { timeout: 10_000 }, MARK);

      // Filter by text and by status.
      await page.type("#filter-text", "/ui/");
      await page.waitForFunction(() => [...(globalThis as any).document.querySelectorAll("#traffic tbody .path")].every((c: any) => c.textContent.includes("/ui/")), { timeout: 2000 });
      await page.$eval("#filter-text", (input) => ((input as any).value = ""));
      await page.select("#filter-status", "4xx");
      await page.waitForFunction(() => {
        const statuses = [...(globalThis as any).document.querySelectorAll("#traffic tbody .status")].map((c: any) => c.textContent as string);
        return statuses.length > 0 && statuses.every((s) => s === "404");
      }, { timeout: 2000 });
      await page.select("#filter-status", "");

      // Open the marked request: its headers, then replay it against the local process.
      await page.click(`#traffic tbody tr[data-id="${marked.id}"]`);
      await page.waitForFunction((mark) => (globalThis as any).document.querySelector("#detail")?.textContent?.toLowerCase().includes(`version: ${mark}`), { timeout: 2000 }, MARK);
      await screenshot(page, "ui-traffic.png");
      await page.click("#replay");
      await page.waitForFunction(() => (globalThis as any).document.querySelector("#replay-result")?.textContent?.includes("Replay answered 200"), { timeout: 10_000 });
      await screenshot(page, "ui-replay.png");

      // End both sessions from the page: the same undo as Ctrl-C, and the cluster is as before.
      await page.click(`#sessions tr[data-session="${exchangeId}"] button.end`);
      expect(await exchange.exited).toBe(143);
      expect(dialogs[0]).toContain(exchangeId!);
      await expectRestored(before, exchangeId!);
      await page.click(`#sessions tr[data-session="${meshId}"] button.end`);
      expect(await mesh.exited).toBe(143);
      await eventually(async () => {
        if (JSON.stringify(await serviceState()) !== JSON.stringify(meshBefore)) throw new Error("mesh service not restored yet");
        const left = await meshLeftovers();
        if (left.length) throw new Error(`left behind: ${left.join(", ")}`);
      }, 60_000);
      await page.waitForFunction(() => !(globalThis as any).document.querySelector("#sessions tbody tr"), { timeout: 10_000 });
      await page.close();
    },
    TEST_TIMEOUT_MS * 2,
  );

  test("the open page asks for nothing it is refused: the browser's own requests (its icon) included", async () => {
    const page = await openPage();
    const refused: string[] = [];
    page.on("response", (response) => response.status() >= 400 && refused.push(`${response.status()} ${new URL(response.url()).pathname}`));
    // Time for the browser's requests after the load, had the page left it any to make (a tokenless
    // /favicon.ico came about a second after the load and was refused).
    await Bun.sleep(2000);
    expect(refused).toEqual([]);
    expect(pageErrors.get(page)).toEqual([]);
    await page.close();
  }, TEST_TIMEOUT_MS);

  test("the page open when ktctl ui exits says so once, with no error spam", async () => {
    const page = await openPage();
    const errors = pageErrors.get(page)!;
    let retries = 0;
    page.on("request", (request) => request.url().includes("/events") && retries++);
    ui.proc.kill("SIGINT");
    expect(await ui.exited).toBe(0);
    expect(ui.output()).toContain("ktctl ui stopped");
    await page.waitForFunction(() => (globalThis as any).document.querySelector("#banner")?.textContent?.includes("ktctl ui has ended"), { timeout: 5000 });
    await screenshot(page, "ui-ended.png");
    // Time for a browser's EventSource to have retried a few times, had the page let it.
    await Bun.sleep(4000);
    expect(retries).toBe(0);
    expect(errors).toEqual([]);
    expect(await Bun.file(join(home, "ui", "endpoint.json")).exists()).toBe(false);
    await page.close();
  }, TEST_TIMEOUT_MS);
});
