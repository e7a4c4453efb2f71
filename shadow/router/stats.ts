// The router's counters: what `GET /stats` answers and what the periodic log line says, so the
// benchmark can read the router's memory and a developer can see that their route is hit.

export class RouterCounters {
  connections = 0;
  http1Connections = 0;
  http2Sessions = 0;
  rawConnections = 0;
  requests = 0;
  /** Requests that went to a developer's shadow. */
  routed = 0;
  /** Requests that matched a route but went to the original pods because the developer's upstream failed. */
  fallbacks = 0;
  upgrades = 0;
  badRequests = 0;
  upstreamErrors = 0;

  snapshot(): Record<string, number> {
    return { ...this } as unknown as Record<string, number>;
  }
}

export function memoryFields(): { rssBytes: number; heapUsedBytes: number } {
  const usage = process.memoryUsage();
  return { rssBytes: usage.rss, heapUsedBytes: usage.heapUsed };
}
