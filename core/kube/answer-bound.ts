// A request sent while the network silently drops everything is not refused: it waits on TCP's
// retransmission backoff and may be answered long after the network is back. Whoever must move on
// (a lease renewal, a tunnel attempt) abandons it after a bound and asks afresh.

/** `sent`, or a rejection once `withinMs` passed without an answer (the request itself runs on). */
export function answeredWithin<T>(sent: Promise<T>, withinMs: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const unanswered = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from the API server within ${withinMs} ms`)), withinMs);
  });
  return Promise.race([sent, unanswered]).finally(() => clearTimeout(timer));
}
