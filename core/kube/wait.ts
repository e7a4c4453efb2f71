// Waiting on cluster state by watching it: the answer arrives with the event that makes it true, and
// a pod that can never start (its image cannot be pulled or run) fails the wait at once instead of
// at the timeout.

import type { V1ContainerStatus, V1Pod } from "@kubernetes/client-node";
import type { Kube } from "../plugin-api.ts";
import { ExitCode, KtctlError } from "../errors.ts";

export interface WaitOptions {
  /** Upper bound; the wait fails with a timeout KtctlError after it. */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Called with a short state summary (e.g. "Pending: ContainerCreating") on every change. */
  onProgress?: (summary: string, obj: any) => void;
}

export interface ObjectWaitOptions<T> extends WaitOptions {
  /** Throws to end the wait early when the object shows it can never satisfy the predicate. */
  inspect?: (obj: T) => void;
  /** Summary for progress and for the timeout message; defaults to "exists". */
  describe?: (obj: T) => string;
  /** Noun for messages, e.g. "pod"; defaults to the last segment of `path`. */
  kind?: string;
}

/**
 * Waits until `predicate` holds for the object `name` in the collection at `path`
 * (e.g. /api/v1/namespaces/demo/pods). The predicate also sees `undefined` while the object does
 * not exist, so `(o) => !o` waits for a deletion. Resolves with the object (or undefined).
 */
export async function waitForObject<T = any>(
  kube: Kube,
  path: string,
  name: string,
  predicate: (obj: T | undefined) => boolean,
  opts: ObjectWaitOptions<T>,
): Promise<T | undefined> {
  const kind = opts.kind ?? path.split("/").filter(Boolean).pop() ?? "object";
  const namespace = /\/namespaces\/([^/]+)\//.exec(path)?.[1];
  const what = namespace ? `${kind} ${namespace}/${name}` : `${kind} ${name}`;
  const describe = opts.describe ?? (() => "exists");
  const stop = new AbortController();
  let lastSummary = "not found yet";
  let settled = false;

  return new Promise<T | undefined>((resolve, reject) => {
    const finish = (error: unknown, value?: T) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
      stop.abort();
      if (error) reject(error);
      else resolve(value);
    };
    const onAbort = () => finish(new KtctlError(`interrupted while waiting for ${what}`, ExitCode.interrupted));
    const timer = setTimeout(
      () => finish(new KtctlError(`timed out after ${Math.round(opts.timeoutMs / 1000)}s waiting for ${what} (${lastSummary})`, ExitCode.timeout)),
      opts.timeoutMs,
    );
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener("abort", onAbort, { once: true });

    let seen = false;
    const consider = (type: string, obj: T) => {
      if (settled) return;
      const exists = type !== "DELETED";
      seen ||= exists;
      lastSummary = exists ? describe(obj) : "deleted";
      opts.onProgress?.(lastSummary, obj);
      if (exists) opts.inspect?.(obj);
      const current = exists ? obj : undefined;
      if (predicate(current)) finish(undefined, current);
    };

    kube
      .watch(path, { fieldSelector: `metadata.name=${name}` }, (type, obj) => {
        try {
          consider(type, obj);
        } catch (e) {
          finish(e);
        }
      }, stop.signal)
      .then(() => settled || finish(new KtctlError(`watch on ${what} ended`, ExitCode.failure)))
      .catch((e) => finish(e));

    // The watch starts with a list, and an absent object yields no event, yet absence may be the answer
    // (waiting for a deletion): then ask once whether it exists.
    let absenceAnswers = false;
    try {
      absenceAnswers = predicate(undefined);
    } catch {
      absenceAnswers = false;
    }
    if (absenceAnswers) {
      kube
        .request("GET", `${path}?${new URLSearchParams({ fieldSelector: `metadata.name=${name}`, limit: "1" })}`)
        .then((list: any) => {
          if (!seen && (list?.items?.length ?? 0) === 0) finish(undefined, undefined);
        })
        .catch(() => {}); // the watch reports refusals
    }
  });
}

const IMAGE_FAILURES = new Set([
  "ImagePullBackOff",
  "ErrImagePull",
  "ErrImageNeverPull",
  "InvalidImageName",
  "ImageInspectError",
  "RegistryUnavailable",
  "CreateContainerError",
  "CreateContainerConfigError",
  "RunContainerError",
]);

const allStatuses = (pod: V1Pod): V1ContainerStatus[] => [
  ...(pod.status?.initContainerStatuses ?? []),
  ...(pod.status?.containerStatuses ?? []),
  ...(pod.status?.ephemeralContainerStatuses ?? []),
];

/** The container of `pod` that cannot start because of its image or its creation, if any. */
export function imageFailure(pod: V1Pod): { container: string; image: string; reason: string; message: string } | undefined {
  for (const s of allStatuses(pod)) {
    const waiting = s.state?.waiting;
    if (waiting?.reason && IMAGE_FAILURES.has(waiting.reason)) {
      return { container: s.name, image: s.image, reason: waiting.reason, message: (waiting.message ?? "").split("\n")[0]!.trim() };
    }
  }
  return undefined;
}

/** One-line state of a pod for progress output: phase plus the most telling reason. */
export function podSummary(pod: V1Pod): string {
  const phase = pod.status?.phase ?? "Pending";
  const unscheduled = pod.status?.conditions?.find((c) => c.type === "PodScheduled" && c.status === "False");
  if (unscheduled) return `${phase}: ${unscheduled.reason ?? "Unschedulable"}${unscheduled.message ? ` (${unscheduled.message})` : ""}`;
  for (const s of allStatuses(pod)) {
    const reason = s.state?.waiting?.reason ?? s.state?.terminated?.reason;
    if (reason) return `${phase}: ${reason}`;
  }
  const ready = pod.status?.conditions?.find((c) => c.type === "Ready")?.status === "True";
  return ready ? `${phase}, ready` : phase;
}

export const isPodReady = (pod: V1Pod) => pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;

/**
 * Waits until `predicate(pod)` holds. Fails at once with KtctlError(image) when a container's image
 * cannot be pulled or started, with KtctlError(failure) when the pod ends or is deleted first.
 */
export async function waitForPod(
  kube: Kube,
  namespace: string,
  name: string,
  predicate: (pod: V1Pod) => boolean,
  opts: WaitOptions,
): Promise<V1Pod> {
  let seen = false;
  const pod = await waitForObject<V1Pod>(
    kube,
    `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods`,
    name,
    (p) => {
      if (p) return predicate(p);
      // Absent before it ever appeared: it may be about to be created. Gone after: it will not come back.
      if (seen) throw new KtctlError(`pod ${namespace}/${name} was deleted while waiting for it`, ExitCode.failure);
      return false;
    },
    {
      ...opts,
      kind: "pod",
      describe: podSummary,
      inspect: (p) => {
        seen = true;
        const failure = imageFailure(p);
        if (failure) {
          throw new KtctlError(
            `image ${failure.image} of pod ${namespace}/${name} cannot be used: ${failure.reason}${failure.message ? ` (${failure.message})` : ""}`,
            ExitCode.image,
          );
        }
        const phase = p.status?.phase;
        if ((phase === "Failed" || phase === "Succeeded") && !predicate(p)) {
          throw new KtctlError(`pod ${namespace}/${name} ended (${phase}${p.status?.reason ? `: ${p.status.reason}` : ""}) before it was ready`, ExitCode.failure);
        }
      },
    },
  );
  return pod!;
}
