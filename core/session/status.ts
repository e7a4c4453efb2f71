// `ktctl status`: the sessions the cluster knows (their Leases) and the ones this laptop knows (its
// journals), alive or not, judged by the same rules `clean` uses.

import { hostname } from "node:os";
import type { Kube } from "../plugin-api.ts";
import { isLeaseExpired, listLeases, readLease, serverNow, type LeaseRecord } from "./lease.ts";
import { isProcessAlive } from "./processes.ts";
import { listLocalJournals, pendingSteps } from "./journal.ts";
import type { LocalJournalState } from "./clean.ts";
import { leaseSelector } from "./labels.ts";
import type { SessionInfo, StatusOptions } from "../plugin-api.ts";

export type { SessionInfo, StatusOptions };



/**
 * Where `status` and `clean` look: the kube's namespace (the one settled from -n, the context and the
 * kubeconfig), unless the caller names another; `scope` is undefined for all namespaces. The clock is
 * always read in one namespace, the one in view.
 */
export function namespaceInView(kube: Kube, options: { namespace?: string; allNamespaces?: boolean }): { scope: string | undefined; clock: string } {
  const inView = options.namespace || kube.namespace;
  return { scope: options.allNamespaces ? undefined : inView, clock: inView };
}

/** Merges Leases and local journals into one list. Pure: times come in as arguments. */
export function sessionInfos(leases: LeaseRecord[], serverNowMs: number | undefined, local: LocalJournalState[], localNowMs: number): SessionInfo[] {
  const byId = new Map<string, SessionInfo>();
  for (const lease of leases) {
    const now = serverNowMs ?? localNowMs;
    byId.set(lease.id, {
      id: lease.id,
      namespace: lease.namespace,
      owner: lease.owner,
      mode: lease.mode,
      target: lease.target,
      host: lease.host,
      pid: lease.pid,
      ageSeconds: lease.created !== undefined ? Math.max(0, Math.round((now - lease.created) / 1000)) : undefined,
      renewedSecondsAgo: lease.lastRenewal !== undefined ? Math.max(0, Math.round((now - lease.lastRenewal) / 1000)) : undefined,
      state: serverNowMs === undefined || !isLeaseExpired(lease, serverNowMs) ? "alive" : "expired",
      pendingSteps: pendingSteps(lease.steps).length,
      seenIn: ["cluster"],
    });
  }
  for (const { journal, alive } of local) {
    const meta = journal.meta;
    const known = byId.get(meta.id);
    const pending = pendingSteps(journal.steps).length;
    if (known) {
      known.seenIn.push("local");
      known.pendingSteps = Math.max(known.pendingSteps, pending);
      // The process is the stronger evidence on its own host.
      if (!alive) known.state = "dead";
      continue;
    }
    const started = Date.parse(meta.started);
    byId.set(meta.id, {
      id: meta.id,
      namespace: meta.namespace,
      owner: meta.owner,
      mode: meta.mode,
      target: meta.target,
      host: meta.host,
      pid: meta.pid,
      ageSeconds: Number.isFinite(started) ? Math.max(0, Math.round((localNowMs - started) / 1000)) : undefined,
      state: alive ? "alive" : "dead",
      pendingSteps: pending,
      seenIn: ["local"],
    });
  }
  return [...byId.values()].sort((a, b) => a.namespace.localeCompare(b.namespace) || (b.ageSeconds ?? 0) - (a.ageSeconds ?? 0));
}

/** Sessions in a namespace (the kube's by default) or all, plus this laptop's journals. */
export async function listSessions(kube: Kube | undefined, options: StatusOptions, ctx: { home: string }): Promise<SessionInfo[]> {
  const { journals } = await listLocalJournals(ctx.home);
  const here = hostname();
  const local: LocalJournalState[] = journals.map((journal) => ({
    journal,
    alive: journal.meta.host !== here || isProcessAlive(journal.meta.pid, journal.meta.pidStart),
    watchdogAlive: journal.meta.host === here && isProcessAlive(journal.meta.watchdogPid, journal.meta.watchdogPidStart),
  }));
  if (!kube) return sessionInfos([], undefined, local, Date.now());
  const { scope: namespace, clock } = namespaceInView(kube, options);
  const [now, leases] = await Promise.all([
    serverNow(kube, clock),
    listLeases(kube, namespace, leaseSelector()),
  ]);
  const inScope = local.filter((l) => !namespace || l.journal.meta.namespace === namespace);
  return sessionInfos(leases.map(readLease), now, inScope, Date.now());
}
