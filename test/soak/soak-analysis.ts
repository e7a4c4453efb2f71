// How a soak's records are judged: heal windows around each shadow deletion, failures inside and
// outside them, latency percentiles, and the growth of a process's memory and descriptors between
// two moments. Pure functions of the records, so the rules are unit-tested on their own.

/** One request as the load generator reports it (test/soak/load-generator.ts). */
export interface RequestRecord {
  /** Start, epoch ms. */
  t: number;
  /** Latency (or time to failure), ms. */
  ms: number;
  ok: 0 | 1;
  /** 1: on a kept-alive connection; 0: a new connection for this request. */
  ka: 0 | 1;
  e?: string;
}

/**
 * A shadow pod deleted under a session: when it was asked, when it stopped serving (its readiness
 * failed, or it was gone, whichever came first) and when the pod was gone from the API.
 */
export interface Deletion {
  pod: string;
  deletedAt: number;
  stoppedAt: number;
  goneAt: number;
}

/**
 * From a deletion to the end of the first successful request that started once the deleted pod had
 * stopped serving: before that, requests may still pass through it, which says nothing about the
 * heal. A shadow deleted under its session keeps its address a few seconds after it stopped
 * listening (ENDPOINT_LINGER_MS), so "gone from the API" would stretch every window by that much.
 * `healedAt` is undefined when no request succeeded afterwards.
 */
export interface HealWindow extends Deletion {
  healedAt: number | undefined;
  healMs: number;
  failures: number;
}

const endOf = (r: RequestRecord) => r.t + r.ms;

export function healWindows(requests: RequestRecord[], deletions: Deletion[]): HealWindow[] {
  const byStart = [...requests].sort((a, b) => a.t - b.t);
  return deletions.map((d) => {
    const first = byStart.find((r) => r.ok && r.t >= d.stoppedAt);
    const healedAt = first ? endOf(first) : undefined;
    const window = { ...d, healedAt, healMs: healedAt === undefined ? Number.POSITIVE_INFINITY : healedAt - d.deletedAt, failures: 0 };
    window.failures = requests.filter((r) => !r.ok && overlaps(r, window)).length;
    return window;
  });
}

/** True when the request's span [start, end] meets the window [deletion, heal] (an open window runs on). */
function overlaps(r: RequestRecord, w: HealWindow): boolean {
  return endOf(r) >= w.deletedAt && r.t <= (w.healedAt ?? Number.POSITIVE_INFINITY);
}

/** Failed requests no heal window explains. */
export function failuresOutside(requests: RequestRecord[], windows: HealWindow[]): RequestRecord[] {
  return requests.filter((r) => !r.ok && !windows.some((w) => overlaps(r, w)));
}

/** The p-th percentile (0-100, nearest rank) of some values; NaN when there are none. */
export function percentile(values: number[], p: number): number {
  if (!values.length) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export interface Sample {
  /** Epoch ms. */
  at: number;
  rssKiB: number;
  /** RssAnon, where sampled (ktctl's own process). */
  anonKiB?: number;
  fds: number;
}

/** The median of the samples taken in [from, to] (a single reading catches a GC or a request mid-flight). */
export function medianSample(samples: Sample[], from: number, to: number): { rssKiB: number; fds: number; count: number } {
  const inside = samples.filter((s) => s.at >= from && s.at <= to);
  return { rssKiB: percentile(inside.map((s) => s.rssKiB), 50), fds: percentile(inside.map((s) => s.fds), 50), count: inside.length };
}

/** Relative change from `before` to `after` (0.05 = 5% more). */
export const change = (before: number, after: number): number => (after - before) / before;

/**
 * Splits failures by whether a request of the control load (same pod, same network, a service
 * ktctl has no part in) failed at an overlapping moment: those are the cluster network's, not the
 * session's. `slackMs` widens each control failure's span (the two loads' schedules interleave).
 */
export function splitByControl(failures: RequestRecord[], control: RequestRecord[], slackMs = 1_000): { cluster: RequestRecord[]; unexplained: RequestRecord[] } {
  const controlFailures = control.filter((c) => !c.ok);
  const cluster: RequestRecord[] = [];
  const unexplained: RequestRecord[] = [];
  for (const f of failures) {
    const shared = controlFailures.some((c) => c.t - slackMs <= endOf(f) && f.t <= endOf(c) + slackMs);
    (shared ? cluster : unexplained).push(f);
  }
  return { cluster, unexplained };
}
