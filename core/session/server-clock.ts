// Time as the API server tells it. Liveness is judged only by the server's clock, never a laptop's.

/** Parses an RFC 3339 time (with or without fraction); undefined for anything else. */
export function parseTime(value: unknown): number | undefined {
  if (typeof value !== "string" || !value) return undefined;
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? ms : undefined;
}

/**
 * When the API server last wrote this object, by the server's own clock: the latest managedFields
 * time (set by the server on every change a manager makes). Falls back to the client-written
 * renewTime/acquireTime and creationTimestamp when the server keeps no managedFields.
 */
export function serverTimeOf(object: any): number | undefined {
  const times = ((object?.metadata?.managedFields ?? []) as { time?: string }[])
    .map((f) => parseTime(f.time))
    .filter((t): t is number => t !== undefined);
  if (times.length) return Math.max(...times);
  return parseTime(object?.spec?.renewTime) ?? parseTime(object?.spec?.acquireTime) ?? parseTime(object?.metadata?.creationTimestamp);
}

/**
 * Server clock minus local clock, from a server timestamp written while a request was in flight.
 * Server timestamps are whole seconds (cut, not rounded), so the true server time lies in
 * [stamp, stamp + 1 s): a difference that fits in that second, widened by the round trip, is no skew.
 */
export function skewFrom(serverStampMs: number, sentAtMs: number, receivedAtMs: number): number {
  const low = serverStampMs - receivedAtMs;
  const high = serverStampMs + 1000 - sentAtMs;
  if (low <= 0 && high >= 0) return 0;
  return Math.round((low + high) / 2);
}

/** Kubernetes MicroTime: RFC 3339 with microseconds. */
export const microTime = (ms: number): string => new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
