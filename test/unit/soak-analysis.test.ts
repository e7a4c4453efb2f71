import { describe, expect, test } from "bun:test";
import { change, failuresOutside, healWindows, medianSample, percentile, splitByControl, type RequestRecord } from "../soak/soak-analysis.ts";

const ok = (t: number, ms = 5): RequestRecord => ({ t, ms, ok: 1, ka: 0 });
const failed = (t: number, ms = 5): RequestRecord => ({ t, ms, ok: 0, ka: 1, e: "reset" });

describe("soak heal windows", () => {
  const deletion = { pod: "shadow-1", deletedAt: 1_000, stoppedAt: 2_000, goneAt: 6_000 };

  test("a window runs from the deletion to the end of the first success started once the pod stopped serving", () => {
    // A success while the old pod still serves does not end the window; its lingering until gone does not stretch it.
    const requests = [ok(900), ok(1_100), failed(1_500), failed(2_100, 50), ok(2_500, 20), ok(2_600)];
    const [window] = healWindows(requests, [deletion]);
    expect(window).toMatchObject({ healedAt: 2_520, healMs: 1_520, failures: 2 });
    expect(failuresOutside(requests, [window!])).toEqual([]);
  });

  test("a request in flight at the deletion and failing after it belongs to the window", () => {
    const requests = [failed(800, 400), ok(2_100)];
    const windows = healWindows(requests, [deletion]);
    expect(windows[0]!.failures).toBe(1);
    expect(failuresOutside(requests, windows)).toEqual([]);
  });

  test("failures before the deletion or after the heal are outside", () => {
    const early = failed(500);
    const late = failed(3_000);
    const requests = [early, ok(2_100), late];
    expect(failuresOutside(requests, healWindows(requests, [deletion]))).toEqual([early, late]);
  });

  test("no success after the pod stopped serving: the window never closes and the heal is unbounded", () => {
    const requests = [ok(1_500), failed(2_100), failed(9_000)];
    const [window] = healWindows(requests, [deletion]);
    expect(window!.healedAt).toBeUndefined();
    expect(window!.healMs).toBe(Number.POSITIVE_INFINITY);
    expect(failuresOutside(requests, [window!])).toEqual([]);
  });
});

describe("soak readings", () => {
  test("percentile by nearest rank", () => {
    expect(percentile([5, 1, 3, 2, 4], 50)).toBe(3);
    expect(percentile([5, 1, 3, 2, 4], 100)).toBe(5);
    expect(percentile([], 50)).toBeNaN();
  });

  test("the median of the samples inside a span, and the relative change", () => {
    const samples = [10, 20, 30, 40].map((at, i) => ({ at, rssKiB: 100 + i * 10, fds: 20 + i }));
    expect(medianSample(samples, 15, 40)).toEqual({ rssKiB: 120, fds: 22, count: 3 });
    expect(change(100, 110)).toBeCloseTo(0.1);
    expect(change(50, 45)).toBeCloseTo(-0.1);
  });
});

describe("soak control load", () => {
  test("a failure the control load shares (overlapping, within the slack) is the cluster's; the rest stay unexplained", () => {
    const shared = failed(10_000, 3_000);
    const alone = failed(60_000, 5_000);
    const control = [ok(9_000), failed(12_500, 3_000), ok(60_000), failed(70_000)];
    expect(splitByControl([shared, alone], control)).toEqual({ cluster: [shared], unexplained: [alone] });
    expect(splitByControl([failed(20_000)], [failed(14_000, 5_000)], 1_000)).toEqual({ cluster: [failed(20_000)], unexplained: [] });
    expect(splitByControl([failed(20_100)], [failed(14_000, 5_000)], 1_000).unexplained).toHaveLength(1);
  });
});
