// Reaching a shadow pod the moment it listens. The kubelet tells the API server that a container
// runs only at its next status sync, up to a second or so after the process started (measured here:
// the port answered 0.8 s before the pod was reported running). A port-forward needs no such report:
// it reaches the pod's loopback as soon as the pod's sandbox exists. So a new pod's port is tried
// from the moment the pod has a node, and the try that counts is the one the shadow answers: an SSH
// server speaks first, so a stream that delivers bytes has the shadow at its other end.

import type { Duplex } from "node:stream";
import type { V1Pod } from "@kubernetes/client-node";
import type { Kube } from "../plugin-api.ts";

/** A pod being started: `running` settles when the kubelet reports it running, or fails (image, timeout). */
export interface PodStart {
  running: Promise<V1Pod>;
}

/** Between two tries of a port that does not answer yet (a try itself takes a round trip or two). */
export const EARLY_TRY_INTERVAL_MS = 100;
/** A stream that neither answers nor fails within this long is given up and tried again. */
export const GREETING_TIMEOUT_MS = 2_000;
/**
 * How long after the kubelet's report a port may still refuse: "running" means the process has
 * started, not that it listens yet (seen here once: `exchange` exited 12 with "nothing listens on
 * port 2222 in the pod" on its very first try).
 */
export const LISTEN_GRACE_MS = 3_000;

/**
 * Calls `open` until it gives a stream. The pod's own failure (its image cannot be used, the wait
 * timed out) ends it at once; once the kubelet has reported the pod running and `graceMs` more
 * have passed, a failing try is a real failure and is thrown (the tunnel's own retries take it
 * from there).
 */
export async function untilListening(start: PodStart, open: () => Promise<Duplex>, intervalMs = EARLY_TRY_INTERVAL_MS, graceMs = LISTEN_GRACE_MS): Promise<Duplex> {
  const pod: { reportedAt?: number; failure?: { error: unknown } } = {};
  const settled = start.running.then(
    () => void (pod.reportedAt = performance.now()),
    (error) => void (pod.failure = { error }),
  );
  const throwIfFailed = () => {
    if (pod.failure) throw pod.failure.error;
  };
  for (;;) {
    throwIfFailed();
    const graceOverBefore = pod.reportedAt !== undefined && performance.now() - pod.reportedAt >= graceMs;
    try {
      return await open();
    } catch (error) {
      throwIfFailed();
      if (graceOverBefore) throw error;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([new Promise((resolve) => (timer = setTimeout(resolve, intervalMs))), settled]);
      clearTimeout(timer);
    }
  }
}

/** A port-forward stream to the pod's port, returned once the other end has sent its first bytes. */
export async function greetedPortForward(kube: Pick<Kube, "portForward">, namespace: string, pod: string, port: number, timeoutMs = GREETING_TIMEOUT_MS): Promise<Duplex> {
  const stream = await kube.portForward(namespace, pod, port);
  try {
    await firstBytes(stream, timeoutMs);
  } catch (error) {
    stream.destroy();
    throw error;
  }
  return stream;
}

/**
 * Resolves once `stream` holds bytes, without consuming them: a 'readable' listener only looks, and
 * once it is removed the stream flows again for whoever reads it next (ssh2 here).
 */
export function firstBytes(stream: Duplex, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = (error?: Error) => {
      clearTimeout(timer);
      stream.off("readable", onReadable);
      stream.off("error", onError);
      stream.off("close", onClose);
      if (error) reject(error);
      else resolve();
    };
    const onReadable = () => {
      if (stream.readableLength > 0) done();
      else stream.read(); // nothing there: the stream ended; reading lets it say so (then 'close')
    };
    const onError = (error: Error) => done(error);
    const onClose = () => done(new Error("the port closed before anything answered"));
    const timer = setTimeout(() => done(new Error(`nothing answered within ${timeoutMs} ms`)), timeoutMs);
    stream.on("readable", onReadable);
    stream.once("error", onError);
    stream.once("close", onClose);
  });
}
