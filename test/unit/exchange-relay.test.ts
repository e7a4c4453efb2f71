import { describe, expect, test } from "bun:test";
import { createArrivalCounter } from "../../core/serving/relay.ts";

describe("arrival counter (when the cluster's connections to the laptop stop)", () => {
  test("counts arrivals", () => {
    const arrivals = createArrivalCounter();
    expect(arrivals.connections()).toBe(0);
    arrivals.arrived();
    arrivals.arrived();
    expect(arrivals.connections()).toBe(2);
  });

  test("quiet: resolves after a silence, later when connections keep coming, false at the bound", async () => {
    const arrivals = createArrivalCounter();
    let started = performance.now();
    expect(await arrivals.quiet(0, 1000)).toBe(true);
    expect(performance.now() - started).toBeLessThan(500);

    // An arrival during the wait pushes the end of the silence back.
    started = performance.now();
    const waiting = arrivals.quiet(300, 5000);
    await Bun.sleep(200);
    arrivals.arrived();
    expect(await waiting).toBe(true);
    expect(performance.now() - started).toBeGreaterThanOrEqual(480);

    // Arrivals that never stop: the bound ends the wait.
    arrivals.arrived();
    const flow = setInterval(() => arrivals.arrived(), 50);
    started = performance.now();
    expect(await arrivals.quiet(300, 800)).toBe(false);
    expect(performance.now() - started).toBeLessThan(1500);
    clearInterval(flow);
  });
});
