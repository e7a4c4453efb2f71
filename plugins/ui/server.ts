// The page's HTTP side, with hono: everything under one random token (in the URL for the page and
// its live stream, in a header for the page's own requests). No token, a wrong one, or a Host that
// is not this loopback address (DNS rebinding) is refused before any route runs.

import { timingSafeEqual } from "node:crypto";
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import type { CleanPlan, Kube, PluginApi } from "../../core/plugin-api.ts";
import { renderPage } from "./page.ts";
import { replayRequest } from "./replay.ts";
import type { UiState } from "./state.ts";

const KEEPALIVE_MS = 15_000;

function sameToken(given: string | undefined, token: string): boolean {
  if (!given || given.length !== token.length) return false;
  return timingSafeEqual(Buffer.from(given), Buffer.from(token));
}

export interface UiServerContext {
  api: Pick<PluginApi, "sessions" | "ui" | "errors" | "logger">;
  state: UiState;
  token: string;
  /** The port the server listens on (for the Host check), read per request. */
  port(): number;
  kube: Kube | undefined;
  /** Resolves when `ktctl ui` is ending: open live streams finish. */
  ending: Promise<void>;
}

export function createUiApp(ctx: UiServerContext): Hono {
  const { api, state, token } = ctx;
  const app = new Hono();
  const plans = new Map<string, CleanPlan>();
  let planCount = 0;

  app.use("*", async (c, next) => {
    const host = c.req.header("host") ?? "";
    if (host !== `127.0.0.1:${ctx.port()}` && host !== `localhost:${ctx.port()}`) return c.text("refused: wrong Host\n", 403);
    if (!sameToken(c.req.query("token") ?? c.req.header("x-ktctl-token"), token)) {
      return c.text("refused: this page needs the URL with its token, as `ktctl ui` printed it\n", 403);
    }
    await next();
    c.header("Cache-Control", "no-store");
    c.header("X-Frame-Options", "DENY");
    c.header("Referrer-Policy", "no-referrer");
  });

  app.get("/", (c) => c.html(renderPage()));

  app.get("/api/state", (c) => c.json(state.snapshot()));

  app.get("/api/records/:id", (c) => {
    const record = state.record(c.req.param("id"));
    return record ? c.json(record) : c.json({ error: "no such record (only the latest are kept)" }, 404);
  });

  app.get("/events", (c) =>
    streamSSE(c, async (stream) => {
      let send = Promise.resolve();
      const queue = (event: string, data: unknown) => {
        send = send.then(() => stream.writeSSE({ event, data: JSON.stringify(data) })).catch(() => undefined);
      };
      const unsubscribe = state.subscribe((message) => queue(message.type, message));
      queue("snapshot", state.snapshot());
      const keepalive = setInterval(() => queue("ping", {}), KEEPALIVE_MS);
      await Promise.race([new Promise<void>((resolve) => stream.onAbort(resolve)), ctx.ending]);
      clearInterval(keepalive);
      unsubscribe();
      await send;
    }),
  );

  app.post("/api/sessions/:id/end", async (c) => {
    try {
      await api.ui.endSession(c.req.param("id"));
      return c.json({ ok: true, message: `session ${c.req.param("id")} is ending (its undo runs now)` });
    } catch (error) {
      return c.json({ ok: false, message: api.errors.text(error) }, 409);
    }
  });

  app.post("/api/clean/plan", async (c) => {
    try {
      const plan = await api.sessions.planClean(ctx.kube, ctx.kube ? {} : { localOnly: true });
      const id = String(++planCount);
      plans.clear();
      plans.set(id, plan);
      return c.json({ id, entries: plan.entries.length, text: api.sessions.renderPlan(plan) });
    } catch (error) {
      return c.json({ error: api.errors.text(error) }, 500);
    }
  });

  app.post("/api/clean/:plan/execute", async (c) => {
    const plan = plans.get(c.req.param("plan"));
    if (!plan) return c.json({ error: "that plan is no longer current: plan again" }, 409);
    plans.delete(c.req.param("plan"));
    try {
      const result = await api.sessions.executePlan(plan, ctx.kube);
      void state.refreshSessions();
      return c.json(result);
    } catch (error) {
      return c.json({ error: api.errors.text(error) }, 500);
    }
  });

  app.post("/api/records/:id/replay", async (c) => {
    const record = state.record(c.req.param("id"));
    if (!record) return c.json({ error: "no such record (only the latest are kept)" }, 404);
    try {
      return c.json(await replayRequest(record));
    } catch (error) {
      return c.json({ error: api.errors.text(error) }, 502);
    }
  });

  return app;
}
