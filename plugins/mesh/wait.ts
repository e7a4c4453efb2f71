// Waiting on cluster state through a watch (list, then events), bounded by a timeout: the wait
// ends with the event that makes the condition true, never on a polling interval.

import type { Kube, PluginApi } from "../../core/plugin-api.ts";

/**
 * Watches a collection and resolves with the first non-undefined value `check` returns for the
 * objects seen so far (keyed by name). `check` may throw to end the wait early with its error.
 */
export function watchUntil<T>(
  kube: Kube,
  api: Pick<PluginApi, "errors">,
  path: string,
  query: Record<string, string>,
  check: (objects: Map<string, any>) => T | undefined,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const { KtctlError, ExitCode } = api.errors;
  const objects = new Map<string, any>();
  const stop = new AbortController();
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const finish = (error: unknown, value?: T) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      stop.abort();
      if (error) reject(error);
      else resolve(value as T);
    };
    const timer = setTimeout(
      () => finish(new KtctlError(`timed out after ${Math.round(timeoutMs / 1000)}s waiting for ${what}`, ExitCode.timeout)),
      timeoutMs,
    );
    kube
      .watch(
        path,
        query,
        (type, obj) => {
          if (settled) return;
          const name = obj?.metadata?.name;
          if (type === "DELETED") objects.delete(name);
          else if (type === "ADDED" || type === "MODIFIED") objects.set(name, obj);
          else return;
          try {
            const value = check(objects);
            if (value !== undefined) finish(undefined, value);
          } catch (error) {
            finish(error);
          }
        },
        stop.signal,
      )
      .then(
        () => finish(new KtctlError(`stopped watching ${what}`, ExitCode.failure)),
        (error) => finish(error),
      );
  });
}
