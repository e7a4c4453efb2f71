// The cluster copy of the journal: a coordination.k8s.io/v1 Lease `ktctl-<id>` in the session
// namespace, renewed while the session lives; its annotations hold the session meta and the cluster
// steps, so `clean` on any machine can read them. Liveness is judged only by the API server's clock.

import type { Kube } from "../plugin-api.ts";
import { answeredWithin } from "../kube/answer-bound.ts";
import { httpStatus } from "../kube/objects.ts";
import {
  ANNOTATION_HOST,
  ANNOTATION_JOURNAL,
  ANNOTATION_MODE,
  ANNOTATION_OWNER,
  ANNOTATION_PID,
  ANNOTATION_STARTED,
  ANNOTATION_TARGET,
  LABEL_SESSION,
  ROLE_SESSION,
  leaseName,
  sessionLabels,
} from "./labels.ts";
import type { JournalStep, SessionMeta } from "./journal.ts";
import { microTime, parseTime, serverTimeOf, skewFrom } from "./server-clock.ts";

/** How long a lease stays valid without renewal. */
export const LEASE_DURATION_SECONDS = 30;
/** How often a live session renews its lease; several renewals fit in one duration. */
export const LEASE_RENEW_SECONDS = 5;
/** Slack for the 1-second precision of server timestamps. */
export const EXPIRY_GRACE_SECONDS = 2;

const leasesPath = (namespace: string) => `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/leases`;
const leasePath = (namespace: string, name: string) => `${leasesPath(namespace)}/${encodeURIComponent(name)}`;

/**
 * The API server's current time: a dry-run create returns the creationTimestamp the server would
 * set, by its clock, and stores nothing. Needs the `create leases` right a session needs anyway.
 */
export async function serverNow(kube: Kube, namespace: string): Promise<number> {
  const probe = await kube.request<any>("POST", `${leasesPath(namespace)}?dryRun=All`, {
    apiVersion: "coordination.k8s.io/v1",
    kind: "Lease",
    metadata: { generateName: "ktctl-clock-" },
  });
  const now = parseTime(probe?.metadata?.creationTimestamp);
  if (now === undefined) throw new Error("the API server returned no creationTimestamp for a dry-run create");
  return now;
}

// ---------------------------------------------------------------------------------------------
// The Lease

/** The Lease copy of the steps: laptop steps without their data (it stays on the laptop). */
export function leaseSteps(steps: JournalStep[]): JournalStep[] {
  return steps.map((s) => (s.where === "laptop" ? { ...s, undo: {} } : s));
}

export const holderOf = (meta: Pick<SessionMeta, "id" | "host" | "pid">): string => `ktctl-${meta.id}@${meta.host}/${meta.pid}`;

export function leaseObject(meta: SessionMeta, steps: JournalStep[], nowMs: number) {
  const annotations: Record<string, string> = {
    [ANNOTATION_OWNER]: meta.owner,
    [ANNOTATION_MODE]: meta.mode,
    [ANNOTATION_PID]: String(meta.pid),
    [ANNOTATION_HOST]: meta.host,
    [ANNOTATION_STARTED]: meta.started,
    [ANNOTATION_JOURNAL]: JSON.stringify(leaseSteps(steps)),
  };
  if (meta.target) annotations[ANNOTATION_TARGET] = meta.target;
  return {
    apiVersion: "coordination.k8s.io/v1",
    kind: "Lease",
    metadata: {
      name: leaseName(meta.id),
      namespace: meta.namespace,
      labels: sessionLabels(meta.id, meta.owner, ROLE_SESSION),
      annotations,
    },
    spec: {
      holderIdentity: holderOf(meta),
      leaseDurationSeconds: meta.leaseDurationSeconds,
      acquireTime: microTime(nowMs),
      renewTime: microTime(nowMs),
    },
  };
}

/** A session as the cluster sees it, read from its Lease. */
export interface LeaseRecord {
  id: string;
  namespace: string;
  name: string;
  owner: string;
  mode: string;
  target?: string;
  host: string;
  pid?: number;
  started?: string;
  /** Server-clock creation time (ms). */
  created?: number;
  holder: string;
  durationSeconds: number;
  /** Server-clock time of the last renewal (ms). */
  lastRenewal?: number;
  resourceVersion: string;
  steps: JournalStep[];
  /** Set when the journal annotation could not be read. */
  journalError?: string;
}

export function readLease(lease: any): LeaseRecord {
  const annotations: Record<string, string> = lease?.metadata?.annotations ?? {};
  let steps: JournalStep[] = [];
  let journalError: string | undefined;
  try {
    const parsed = JSON.parse(annotations[ANNOTATION_JOURNAL] ?? "[]");
    if (!Array.isArray(parsed)) throw new Error("not a list");
    steps = parsed;
  } catch (error) {
    journalError = `journal annotation unreadable: ${(error as Error).message}`;
  }
  const pid = Number(annotations[ANNOTATION_PID]);
  return {
    id: lease?.metadata?.labels?.[LABEL_SESSION] ?? String(lease?.metadata?.name ?? "").replace(/^ktctl-/, ""),
    namespace: lease?.metadata?.namespace ?? "",
    name: lease?.metadata?.name ?? "",
    owner: annotations[ANNOTATION_OWNER] ?? "",
    mode: annotations[ANNOTATION_MODE] ?? "",
    target: annotations[ANNOTATION_TARGET],
    host: annotations[ANNOTATION_HOST] ?? "",
    pid: Number.isFinite(pid) && pid > 0 ? pid : undefined,
    started: annotations[ANNOTATION_STARTED],
    created: parseTime(lease?.metadata?.creationTimestamp),
    holder: lease?.spec?.holderIdentity ?? "",
    durationSeconds: Number(lease?.spec?.leaseDurationSeconds) || LEASE_DURATION_SECONDS,
    lastRenewal: serverTimeOf(lease),
    resourceVersion: lease?.metadata?.resourceVersion ?? "",
    steps,
    journalError,
  };
}

/** Expired by the server's clock: no renewal for a whole duration (plus the timestamp slack). */
export function isLeaseExpired(record: Pick<LeaseRecord, "lastRenewal" | "durationSeconds">, serverNowMs: number): boolean {
  if (record.lastRenewal === undefined) return true;
  return serverNowMs - record.lastRenewal > (record.durationSeconds + EXPIRY_GRACE_SECONDS) * 1000;
}

export type LeaseLostHandler = (reason: string) => void;

/**
 * The session's Lease, written by one queue so renewals and journal updates never race each other.
 * Every write carries the last resourceVersion: if `clean` claimed the Lease meanwhile (after judging
 * it expired), the write fails with a conflict and the session learns it was taken over.
 */
export class SessionLease {
  private resourceVersion = "";
  /** serverTime - localTime, learned from server-set timestamps, so renewTime is in server terms. */
  private skewMs = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private lostReason: string | undefined;

  /**
   * @param renewalAnswerMs how long one renewal may go unanswered before the queue moves on. A laptop
   *   whose packets are silently lost (Wi-Fi gone, VPN down) gets no error, only a request that hangs
   *   until TCP gives up; behind it every later renewal would wait, and once the link is back the
   *   retransmission could come so late that the Lease expired meanwhile. The abandoned write may
   *   still land: the next one then meets a conflict, sees the Lease is still ours, and goes again.
   */
  constructor(
    private readonly kube: Kube,
    private readonly meta: SessionMeta,
    private readonly onLost: LeaseLostHandler,
    private readonly renewalAnswerMs = LEASE_RENEW_SECONDS * 1000,
  ) {}

  /** A request, abandoned after `withinMs` when given (journal writes wait as long as it takes). */
  private request<T>(withinMs: number | undefined, method: string, path: string, body?: unknown, contentType?: string): Promise<T> {
    const sent = this.kube.request<T>(method, path, body, contentType);
    return withinMs === undefined ? sent : answeredWithin(sent, withinMs);
  }

  get lost(): string | undefined {
    return this.lostReason;
  }

  get name(): string {
    return leaseName(this.meta.id);
  }

  /** Server time now, as well as this session knows it. */
  serverNow(): number {
    return Date.now() + this.skewMs;
  }

  private learn(object: any, sentAt: number, receivedAt: number) {
    this.resourceVersion = object?.metadata?.resourceVersion ?? this.resourceVersion;
    const server = serverTimeOf(object);
    if (server !== undefined && object?.metadata?.managedFields?.length) this.skewMs = skewFrom(server, sentAt, receivedAt);
  }

  private enqueue<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Creates the Lease; a conflict means the id is taken (the caller picks another). */
  create(steps: JournalStep[]): Promise<any> {
    return this.enqueue(async () => {
      const sentAt = Date.now();
      const created = await this.kube.request<any>("POST", leasesPath(this.meta.namespace), leaseObject(this.meta, steps, sentAt));
      const receivedAt = Date.now();
      this.resourceVersion = created?.metadata?.resourceVersion ?? "";
      const serverCreated = parseTime(created?.metadata?.creationTimestamp);
      if (serverCreated !== undefined) this.skewMs = skewFrom(serverCreated, sentAt, receivedAt);
      return created;
    });
  }

  private async patch(body: Record<string, unknown>, withinMs?: number): Promise<void> {
    if (this.lostReason) throw new Error(this.lostReason);
    const path = leasePath(this.meta.namespace, this.name);
    for (let attempt = 0; ; attempt++) {
      const sentAt = Date.now();
      try {
        const merged = { ...body, metadata: { ...(body.metadata as object), resourceVersion: this.resourceVersion } };
        const updated = await this.request<any>(withinMs, "PATCH", path, merged, "application/merge-patch+json");
        this.learn(updated, sentAt, Date.now());
        return;
      } catch (error) {
        const status = httpStatus(error);
        if (status === 404) return this.markLost("the session's lease was deleted (cleaned up from elsewhere)", error);
        if (status !== 409 || attempt > 0) throw error;
        const current = await this.request<any>(withinMs, "GET", path).catch((e) => {
          if (httpStatus(e) === 404) return undefined;
          throw e;
        });
        if (!current) return this.markLost("the session's lease was deleted (cleaned up from elsewhere)", error);
        if (current.spec?.holderIdentity !== holderOf(this.meta)) {
          return this.markLost(`the session was taken over by ${current.spec?.holderIdentity || "someone else"} (judged expired)`, error);
        }
        this.resourceVersion = current.metadata?.resourceVersion ?? "";
      }
    }
  }

  private markLost(reason: string, cause: unknown): never {
    if (!this.lostReason) {
      this.lostReason = reason;
      this.onLost(reason);
    }
    throw Object.assign(new Error(reason), { cause });
  }

  renew(): Promise<void> {
    return this.enqueue(() => this.patch({ spec: { renewTime: microTime(this.serverNow()) } }, this.renewalAnswerMs));
  }

  writeSteps(steps: JournalStep[]): Promise<void> {
    return this.enqueue(() =>
      this.patch({
        metadata: { annotations: { [ANNOTATION_JOURNAL]: JSON.stringify(leaseSteps(steps)) } },
        spec: { renewTime: microTime(this.serverNow()) },
      }),
    );
  }

  /** Deletes the Lease if it is still ours. */
  delete(): Promise<void> {
    return this.enqueue(async () => {
      if (this.lostReason) return;
      await deleteLease(this.kube, this.meta.namespace, this.name, this.resourceVersion || undefined);
    });
  }
}

/** Deletes a Lease; 404 counts as done. With a resourceVersion, only that exact version is deleted. */
export async function deleteLease(kube: Kube, namespace: string, name: string, resourceVersion?: string): Promise<void> {
  try {
    await kube.request("DELETE", leasePath(namespace, name), {
      apiVersion: "v1",
      kind: "DeleteOptions",
      ...(resourceVersion ? { preconditions: { resourceVersion } } : {}),
    });
  } catch (error) {
    if (httpStatus(error) !== 404) throw error;
  }
}

/**
 * Takes an expired Lease over for cleaning: only succeeds if nobody wrote it since it was read, so
 * a session that wakes up and renews in between keeps its Lease and `clean` backs off.
 * Returns the new resourceVersion, or undefined when the Lease changed or vanished.
 */
export async function claimLease(kube: Kube, record: Pick<LeaseRecord, "namespace" | "name" | "resourceVersion">, claimant: string): Promise<string | undefined> {
  try {
    const updated = await kube.request<any>(
      "PATCH",
      leasePath(record.namespace, record.name),
      { metadata: { resourceVersion: record.resourceVersion }, spec: { holderIdentity: claimant } },
      "application/merge-patch+json",
    );
    return updated?.metadata?.resourceVersion ?? "";
  } catch (error) {
    const status = httpStatus(error);
    if (status === 409 || status === 404) return undefined;
    throw error;
  }
}

/** Writes the steps back to a claimed Lease (after a partial clean), keeping the claim. */
export async function writeLeaseSteps(kube: Kube, namespace: string, name: string, steps: JournalStep[]): Promise<void> {
  await kube.request(
    "PATCH",
    leasePath(namespace, name),
    { metadata: { annotations: { [ANNOTATION_JOURNAL]: JSON.stringify(leaseSteps(steps)) } } },
    "application/merge-patch+json",
  );
}

export async function getLease(kube: Kube, namespace: string, id: string): Promise<any | undefined> {
  try {
    return await kube.request<any>("GET", leasePath(namespace, leaseName(id)));
  } catch (error) {
    if (httpStatus(error) === 404) return undefined;
    throw error;
  }
}

/** Session Leases in one namespace, or in all (namespace undefined). */
export async function listLeases(kube: Kube, namespace: string | undefined, labelSelector: string): Promise<any[]> {
  const base = namespace ? leasesPath(namespace) : "/apis/coordination.k8s.io/v1/leases";
  const list = await kube.request<{ items?: any[] }>("GET", `${base}?labelSelector=${encodeURIComponent(labelSelector)}`);
  return list.items ?? [];
}
