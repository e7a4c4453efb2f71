import { describe, expect, test } from "bun:test";
import { SessionLease } from "../../core/session/lease.ts";
import type { SessionMeta } from "../../core/session/journal.ts";
import type { Kube } from "../../core/plugin-api.ts";

const meta: SessionMeta = {
  id: "abcd1234",
  owner: "dev",
  mode: "e2e",
  namespace: "demo",
  host: "laptop",
  pid: 1,
  started: new Date(0).toISOString(),
  leaseDurationSeconds: 30,
  kube: { context: "test", namespace: "demo", server: "https://127.0.0.1:6443" },
};

/** An API server whose answers to PATCH follow `answers`: a delay in ms, or "never" (a lost packet). */
function apiServer(answers: (number | "never")[]) {
  const seen: string[] = [];
  let version = 1;
  const kube = {
    namespace: "demo",
    request: (method: string) => {
      seen.push(method);
      const answer = method === "PATCH" ? (answers.shift() ?? 0) : 0;
      if (answer === "never") return new Promise(() => {});
      return Bun.sleep(answer).then(() => ({ metadata: { resourceVersion: String(++version) } }));
    },
  } as unknown as Kube;
  return { kube, seen };
}

describe("session lease renewal across a silent network", () => {
  test("a renewal that gets no answer is abandoned in time, and the next one goes out", async () => {
    const { kube, seen } = apiServer(["never", 0]);
    const lease = new SessionLease(kube, meta, () => {}, 100);
    const started = performance.now();
    await expect(lease.renew()).rejects.toThrow("no answer from the API server within 100 ms");
    expect(performance.now() - started).toBeLessThan(1_000);
    await lease.renew();
    expect(seen).toEqual(["PATCH", "PATCH"]);
  }, 3_000);

  test("journal writes are not abandoned: a slow API server still gets them", async () => {
    const { kube } = apiServer([300]);
    const lease = new SessionLease(kube, meta, () => {}, 100);
    await lease.writeSteps([]);
  });
});
