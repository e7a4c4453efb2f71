import { describe, expect, test } from "bun:test";
import { ExitCode, KtctlError } from "../../core/errors.ts";
import { readyEndpoints, waitForEndpoints, watchUntil } from "../../core/kube/collection-waits.ts";
import type { Kube } from "../../core/plugin-api.ts";

/** A Kube whose watch replays `events` and then stays open until aborted; its list has `items`. */
function fakeKube(events: [string, any][], items: any[] = events.map(([, o]) => o)): Kube {
  return {
    namespace: "demo",
    request: async () => ({ items }),
    watch: (_path: string, _query: Record<string, string>, onEvent: (type: string, obj: any) => void, signal: AbortSignal) =>
      new Promise<void>((resolve) => {
        queueMicrotask(() => events.forEach(([type, obj]) => onEvent(type, obj)));
        signal.addEventListener("abort", () => resolve());
      }),
  } as unknown as Kube;
}

const slice = (name: string, endpoints: any[]) => ({ metadata: { name }, endpoints });

describe("collection waits (api.waits)", () => {
  test("ready endpoints by pod name skip endpoints that are not ready or name no pod", () => {
    const slices = [
      slice("a", [
        { addresses: ["10.0.0.1"], targetRef: { name: "router-1" } },
        { addresses: ["10.0.0.2"], targetRef: { name: "router-2" }, conditions: { ready: false } },
      ]),
      slice("b", [{ addresses: ["10.0.0.3"] }]),
    ];
    expect([...readyEndpoints(slices, "pod")]).toEqual(["router-1"]);
    expect([...readyEndpoints(slices)].sort()).toEqual(["10.0.0.1", "10.0.0.3"]);
  });

  test("answers with the event that makes the check true", async () => {
    const kube = fakeKube([["ADDED", slice("s", [{ addresses: ["10.0.0.9"] }])]]);
    expect(await waitForEndpoints(kube, "echo", (ready) => ready.has("10.0.0.9"), { timeoutMs: 5_000 })).toBe(true);
  });

  test("an empty collection is judged without any event", async () => {
    expect(await waitForEndpoints(fakeKube([]), "echo", (ready) => ready.size === 0, { timeoutMs: 5_000 })).toBe(true);
  });

  test("at the timeout: false without `what`, a timeout KtctlError naming it with `what`", async () => {
    const kube = fakeKube([]);
    expect(await waitForEndpoints(kube, "echo", () => false, { timeoutMs: 20 })).toBe(false);
    const failure = await watchUntil(kube, "/x", {}, () => undefined, { timeoutMs: 20, what: "the router" }).catch((e) => e);
    expect(failure).toBeInstanceOf(KtctlError);
    expect(failure.message).toBe("timed out after 0s waiting for the router");
    expect(failure.exitCode).toBe(ExitCode.timeout);
  });

  test("a collection is judged whole: a later item of the first list is not taken for absent", async () => {
    const items = [{ metadata: { name: "echo" } }, { metadata: { name: "echo-ktctl-mesh" } }];
    const kube = fakeKube(items.map((item) => ["ADDED", item]), items);
    const companionGone = (objects: Map<string, any>) => (objects.has("echo-ktctl-mesh") ? undefined : true);
    expect(await watchUntil(kube, "/x", {}, companionGone, { timeoutMs: 50 })).toBeUndefined();
  });

  test("the watch goes on from the list's resourceVersion, and its deletions count", async () => {
    let watchedFrom: string | undefined;
    const kube = {
      namespace: "demo",
      request: async () => ({ metadata: { resourceVersion: "41" }, items: [{ metadata: { name: "a" } }, { metadata: { name: "b" } }] }),
      watch: (_p: string, query: Record<string, string>, onEvent: (type: string, obj: any) => void, signal: AbortSignal) =>
        new Promise<void>((resolve) => {
          watchedFrom = query.resourceVersion;
          queueMicrotask(() => onEvent("DELETED", { metadata: { name: "b" } }));
          signal.addEventListener("abort", () => resolve());
        }),
    } as unknown as Kube;
    expect(await watchUntil(kube, "/x", {}, (objects) => (objects.has("b") ? undefined : [...objects.keys()]), { timeoutMs: 5_000 })).toEqual(["a"]);
    expect(watchedFrom).toBe("41");
  });

  test("a check that throws ends the wait with its error", async () => {
    const kube = fakeKube([["ADDED", { metadata: { name: "p" } }]]);
    await expect(watchUntil(kube, "/x", {}, () => { throw new Error("hopeless"); }, { timeoutMs: 5_000 })).rejects.toThrow("hopeless");
  });
});
