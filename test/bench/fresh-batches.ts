// New connections measured side by side: every path up at once, batches of requests (a new
// connection each) on each path in turn, so a busy moment of the machine falls on all of them alike
// (100 requests per path and round, one path after the other, swung by 1-2 ms between rounds).

/** One batch of `count` fresh requests on `target` (the load client's "fresh" mode): its percentiles. */
export type FreshBatch = (target: string, count: number) => Promise<{ p50ms: number; p99ms: number }>;

/** A warm-up batch of 30 on each path, then `batches` rounds of 50 per path, the order rotating: each batch's p50 and p99 recorded. */
export async function freshInBatches(
  paths: readonly (readonly [name: string, target: string])[],
  batches: number,
  fresh: FreshBatch,
  record: (name: string, metric: string, value: number) => void,
): Promise<void> {
  for (const [, target] of paths) await fresh(target, 30);
  for (let batch = 0; batch < batches; batch++) {
    for (let i = 0; i < paths.length; i++) {
      const [name, target] = paths[(i + batch) % paths.length]!;
      const result = await fresh(target, 50);
      record(name, "freshP50ms", result.p50ms);
      record(name, "freshP99ms", result.p99ms);
    }
  }
}
