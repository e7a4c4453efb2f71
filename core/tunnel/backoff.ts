export interface BackoffPolicy {
  minMs: number;
  maxMs: number;
}

/** Delay before retry number `attempt` (0-based): doubling from minMs, capped at maxMs, ±20% jitter
 *  so many laptops do not hammer a restarted API server in step. */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const base = Math.min(policy.maxMs, policy.minMs * 2 ** Math.min(attempt, 30));
  const jittered = base * (0.8 + 0.4 * random());
  return Math.round(Math.max(policy.minMs, Math.min(policy.maxMs, jittered)));
}
