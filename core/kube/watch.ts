// List-then-watch over Bun fetch, as client-go's reflector does: a list gives the starting state and
// resourceVersion; the watch resumes from the last version seen when the stream drops; a 410 Gone
// (history compacted) triggers a relist whose differences are delivered as ordinary events, so a
// caller never misses a deletion that happened while it was disconnected.

import { ExitCode, KtctlError, isKtctlError } from "../errors.ts";
import { KubeApiError, apiErrorFrom } from "./errors.ts";
import type { Transport } from "./transport.ts";

export type WatchHandler = (type: string, obj: any) => void;

/** Server-side stream length; the server ends the watch after this and we resume. */
const WATCH_SECONDS = 290;
/** With bookmarks on, silence longer than this means the connection died without telling us. */
const IDLE_LIMIT_MS = (WATCH_SECONDS + 60) * 1000;
const BACKOFF_START_MS = 250;
const BACKOFF_MAX_MS = 5000;
const LIST_PAGE = "500";

const keyOf = (obj: any) => `${obj?.metadata?.namespace ?? ""}/${obj?.metadata?.name ?? ""}`;
const versionOf = (obj: any): string | undefined => obj?.metadata?.resourceVersion;

/** Resolves when `signal` aborts; rejects on a permanent refusal (403, 404, ...) or when `onEvent` throws. */
export async function watchCollection(
  transport: Transport,
  path: string,
  query: Record<string, string>,
  onEvent: WatchHandler,
  signal: AbortSignal,
): Promise<void> {
  const known = new Map<string, any>();
  const { resourceVersion: startVersion, watch: _w, ...selectors } = query;
  let version: string | undefined = startVersion;
  let backoff = BACKOFF_START_MS;
  // Failing to start is reported at once; a watch that was running heals its drops.
  let established = false;

  const deliver = (type: string, obj: any) => {
    if (type === "DELETED") known.delete(keyOf(obj));
    else known.set(keyOf(obj), obj);
    const v = versionOf(obj);
    if (v) version = v;
    onEvent(type, obj);
  };

  /** Lists everything and reports what changed since the objects we knew. */
  const relist = async () => {
    const { items, listVersion } = await listAll(transport, path, selectors, signal);
    const present = new Set<string>();
    for (const item of items) {
      const key = keyOf(item);
      present.add(key);
      const before = known.get(key);
      if (!before) deliver("ADDED", item);
      else if (versionOf(before) !== versionOf(item)) deliver("MODIFIED", item);
    }
    for (const [key, obj] of [...known]) if (!present.has(key)) deliver("DELETED", obj);
    version = listVersion;
  };

  while (!signal.aborted) {
    try {
      if (!version) {
        await relist();
        established = true;
      }
      let heard = false;
      const query = { ...selectors, resourceVersion: version! };
      const onConnected = () => (established = true);
      const gone = await streamOnce(transport, path, query, signal, onConnected, (type, obj) => {
        heard = true;
        backoff = BACKOFF_START_MS;
        if (type === "BOOKMARK") {
          version = versionOf(obj) ?? version;
          return;
        }
        deliver(type, obj);
      });
      if (gone) version = undefined;
      // A stream that ends without a word (not even a bookmark) is not a healthy one: pace the retries.
      if (gone || heard) continue;
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof KubeApiError && e.status === 410) {
        version = undefined;
        continue;
      }
      if (!established || !isRetryable(e)) throw e;
    }
    await delay(backoff, signal);
    backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
  }
}

/** Connection trouble and server overload heal; refusals (403, 404, bad selector) do not. */
function isRetryable(e: unknown): boolean {
  if (e instanceof KubeApiError) return e.status === 429 || e.status >= 500;
  if (isKtctlError(e)) return e.exitCode === ExitCode.unreachable;
  return false; // an exception thrown by the caller's handler ends the watch with it
}

async function listAll(transport: Transport, path: string, selectors: Record<string, string>, signal: AbortSignal) {
  const items: any[] = [];
  let listVersion = "";
  let cont: string | undefined;
  do {
    const params = new URLSearchParams({ ...selectors, limit: LIST_PAGE, ...(cont ? { continue: cont } : {}) });
    const response = await transport.fetch(`${path}?${params}`, { headers: { Accept: "application/json" }, signal });
    const list = (await response.json()) as any;
    // List items carry no kind; watch events do. Give both the same shape.
    const kind = typeof list.kind === "string" ? list.kind.replace(/List$/, "") : undefined;
    for (const item of list.items ?? []) items.push({ apiVersion: list.apiVersion, kind, ...item });
    listVersion ||= list.metadata?.resourceVersion ?? "";
    cont = list.metadata?.continue || undefined;
  } while (cont);
  return { items, listVersion };
}

/** One watch connection. Returns true when the server said the version is gone (relist needed). */
async function streamOnce(
  transport: Transport,
  path: string,
  query: Record<string, string>,
  signal: AbortSignal,
  onConnected: () => void,
  onEvent: WatchHandler,
): Promise<boolean> {
  const connection = new AbortController();
  const abort = () => connection.abort();
  signal.addEventListener("abort", abort, { once: true });
  let idle = setTimeout(abort, IDLE_LIMIT_MS);
  try {
    const params = new URLSearchParams({
      ...query,
      watch: "1",
      allowWatchBookmarks: "true",
      timeoutSeconds: String(WATCH_SECONDS),
    });
    const response = await transport.fetch(`${path}?${params}`, { headers: { Accept: "application/json" }, signal: connection.signal });
    onConnected();
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let pending = "";
    for (;;) {
      // The connection breaking mid-stream (a reset after the API server restarted, a lost network)
      // is a drop to resume from, like one at connect time, not the end of the watch.
      const { value, done } = await reader.read().catch((error: Error) => {
        if (connection.signal.aborted) throw error;
        throw new KtctlError(`watch on ${path} broke: ${error?.message ?? error}`, ExitCode.unreachable);
      });
      if (done) return false;
      clearTimeout(idle);
      idle = setTimeout(abort, IDLE_LIMIT_MS);
      pending += decoder.decode(value, { stream: true });
      let newline: number;
      while ((newline = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, newline).trim();
        pending = pending.slice(newline + 1);
        if (!line) continue;
        const event = JSON.parse(line) as { type: string; object: any };
        if (event.type === "ERROR") {
          const status = event.object ?? {};
          if (status.code === 410) {
            await reader.cancel().catch(() => {});
            return true;
          }
          throw apiErrorFrom(status.code ?? 500, JSON.stringify(status), "GET", `${path}?watch=1`, transport.server);
        }
        onEvent(event.type, event.object);
      }
    }
  } catch (e) {
    // Our idle watchdog aborted a silent connection: treat it as a drop and resume.
    if (connection.signal.aborted && !signal.aborted) throw new KtctlError(`watch on ${path} went silent`, ExitCode.unreachable);
    throw e;
  } finally {
    clearTimeout(idle);
    signal.removeEventListener("abort", abort);
  }
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
