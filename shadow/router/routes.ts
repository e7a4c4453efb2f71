// The router's route table: which developer's shadow a request goes to, by header and path.
// Lookups happen once per request on the hot path, so the table keeps an index per listener port
// (header name -> value -> routes, longest path prefix first) rebuilt on every change, which is rare.

import { sameMatch, type Route, type Upstream } from "../../core/protocol/router.ts";

export interface RouteMatch {
  route: Route;
  upstream: Upstream;
}

/** How a request shows its headers; HTTP/1 and HTTP/2 each pass their own cheap accessor. */
export type HeaderLookup = (lowercaseName: string) => string | undefined;

interface ListenerIndex {
  /** Distinct header names the routes of this port look at. */
  headers: string[];
  /** `${header}\n${value}` -> routes, longest path prefix first. */
  byMark: Map<string, Route[]>;
}

/** A path under a prefix, on segment boundaries. */
export function underPrefix(path: string, prefix: string | undefined): boolean {
  if (!prefix || prefix === "/") return true;
  if (!path.startsWith(prefix)) return false;
  const next = path.charCodeAt(prefix.length);
  // end of path, "/", "?" or "#": the prefix ends on a segment boundary
  return Number.isNaN(next) || next === 47 || next === 63 || next === 35;
}

export class RouteTable {
  private readonly routes = new Map<string, Route>();
  private index = new Map<number, ListenerIndex>();
  private changes = 0;

  /** Adds or replaces the route of `route.id`; refuses one that would take another route's requests. */
  put(route: Route): { conflict?: Route } {
    for (const other of this.routes.values()) {
      if (other.id !== route.id && sameMatch(other, route)) return { conflict: other };
    }
    this.routes.set(route.id, route);
    this.rebuild();
    return {};
  }

  delete(id: string): boolean {
    const removed = this.routes.delete(id);
    if (removed) this.rebuild();
    return removed;
  }

  list(): Route[] {
    return [...this.routes.values()];
  }

  get size(): number {
    return this.routes.size;
  }

  /** Bumped on every change (for logs and tests). */
  get generation(): number {
    return this.changes;
  }

  /** The route a request on `port` belongs to, if any. */
  match(port: number, header: HeaderLookup, path: string): RouteMatch | undefined {
    const index = this.index.get(port);
    if (!index) return undefined;
    for (const name of index.headers) {
      const value = header(name);
      if (value === undefined) continue;
      const candidates = index.byMark.get(`${name}\n${value.trim()}`);
      if (!candidates) continue;
      for (const route of candidates) {
        if (underPrefix(path, route.pathPrefix)) return { route, upstream: route.upstreams[port]! };
      }
    }
    return undefined;
  }

  private rebuild(): void {
    const index = new Map<number, ListenerIndex>();
    for (const route of this.routes.values()) {
      for (const portText of Object.keys(route.upstreams)) {
        const port = Number(portText);
        let entry = index.get(port);
        if (!entry) index.set(port, (entry = { headers: [], byMark: new Map() }));
        if (!entry.headers.includes(route.header)) entry.headers.push(route.header);
        const key = `${route.header}\n${route.value}`;
        const list = entry.byMark.get(key) ?? [];
        list.push(route);
        list.sort((a, b) => (b.pathPrefix?.length ?? 0) - (a.pathPrefix?.length ?? 0));
        entry.byMark.set(key, list);
      }
    }
    this.index = index;
    this.changes++;
  }
}
