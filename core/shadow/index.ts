// Starting a session's shadow: the pod (a journaled step, so it is always removed), the wait for
// it to run (image problems reported at once), and the tunnel over the API server's port-forward.
// When the pod disappears mid-session (deleted, evicted) the tunnel's reconnect makes a new one.
// A new pod is tried through the port-forward from the moment it has a node: the kubelet reports a
// running container up to a second after it runs (its status sync), the port answers at once.
// With `options.share` the pod is one several sessions of the owner share (see shared.ts): the step
// joins it, and its undo leaves it (deleting it when this session was the last sharer).

import type { Duplex } from "node:stream";
import { ExitCode, KtctlError, isKtctlError } from "../errors.ts";
import { answeredWithin } from "../kube/answer-bound.ts";
import { waitForPod } from "../kube/wait.ts";
import type { Kube, Session, Shadow, ShadowOptions } from "../plugin-api.ts";
import type { ConsolaInstance } from "consola";
import { ktctlHome } from "../session/journal.ts";
import { objectName } from "../session/labels.ts";
import { sharersOf } from "../session/shares.ts";
import { releaseShareStep } from "../session/steps.ts";
import { createSessionKeyPair } from "../protocol/keys.ts";
import { createTunnel } from "../tunnel/client.ts";
import { greetedPortForward, untilListening, type PodStart } from "./early-tunnel.ts";
import { SHADOW_TUNNEL_PORT } from "../protocol/tunnel.ts";
import { shadowPodSpec } from "./pod-spec.ts";
import { loadSharedKeyPair } from "./shared-keys.ts";
import { joinSharedShadow, sharedShadowPod } from "./shared.ts";

/** How long a tunnel attempt waits for the shadow pod's read (well inside the attempt's own bound). */
const POD_READ_ANSWER_MS = 4_000;

const isStarted = (pod: any) =>
  !pod.metadata?.deletionTimestamp &&
  Boolean(pod.status?.podIP) &&
  (pod.status?.containerStatuses ?? []).some((c: any) => c.name === "shadow" && c.state?.running);

export interface StartShadowContext {
  logger: ConsolaInstance;
  /** Where shared key pairs live; KTCTL_HOME or ~/.ktctl by default. */
  home?: string;
}

/** A start being watched; `settled` once the kubelet reported the pod running, or the wait failed. */
type Starting = PodStart & { settled: boolean };

/** The shadow pod a session uses; `start` while it is one this session made or joined. */
interface ShadowPodInUse {
  name: string;
  ip?: string;
  start?: Starting;
}

const stillStarting = (pod: ShadowPodInUse): boolean => pod.start !== undefined && !pod.start.settled;

export async function startShadow(session: Session, options: ShadowOptions, context: StartShadowContext): Promise<Shadow> {
  const { kube, namespace } = session;
  const { logger } = context;
  const global = session.global;
  const keys = options.share
    ? await loadSharedKeyPair(context.home ?? ktctlHome(), options.share.key)
    : createSessionKeyPair(`ktctl-${session.id}`);
  const creationTimeoutMs = (global.podCreationTimeout ?? 60) * 1000;
  let generation = 0;
  /** The pod in use; its IP is learnt from the status or from the shadow's welcome, whichever comes first. */
  let current: ShadowPodInUse | undefined;
  const shared = options.share
    ? sharedShadowPod({ namespace, owner: session.owner, key: options.share.key, publicKey: keys.publicKey, global, options })
    : undefined;
  let joined = false;

  /**
   * Joins the shared pod and waits until its process runs. The first join is the journaled step;
   * a later one (the pod was deleted under us) re-enters the same name, which that step's undo covers.
   */
  const joinPod = async (): Promise<ShadowPodInUse> => {
    const { name, spec } = shared!;
    const join = () => joinSharedShadow(kube, { namespace, name, spec, sessionId: session.id, timeoutMs: creationTimeoutMs, logger });
    const result = joined
      ? await join()
      : await session.step(releaseShareStep({ apiVersion: "v1", kind: "Pod", namespace, name }, `share shadow pod ${namespace}/${name}`), join);
    joined = true;
    const others = result.sharers.filter((id) => id !== session.id);
    if (others.length) logger.info(`sharing shadow pod ${name} with session${others.length > 1 ? "s" : ""} ${others.join(", ")}`);
    else logger.debug(`shared shadow pod ${name} ${result.created ? "created" : "joined"}`);
    return { name, start: await watchStart(name) };
  };

  /** Creates the shadow pod as a journaled step; returns once it is bound to a node. */
  const createPod = async (): Promise<ShadowPodInUse> => {
    const name = objectName(session.id, generation === 0 ? options.role : `${options.role}-${generation}`);
    generation++;
    const spec = shadowPodSpec({
      name,
      namespace,
      sessionId: session.id,
      sessionLabels: session.labels,
      publicKey: keys.publicKey,
      global,
      options,
    });
    await session.step(
      {
        kind: "delete-object",
        describe: `delete shadow pod ${namespace}/${name}`,
        undo: { apiVersion: "v1", kind: "Pod", namespace, name },
      },
      () => kube.request("POST", `/api/v1/namespaces/${namespace}/pods`, spec),
    );
    return { name, start: await watchStart(name) };
  };

  /**
   * Watches a pod until the kubelet reports its shadow running (image problems fail it at once);
   * returns as soon as the pod is bound to a node, from when its port may be tried.
   */
  const watchStart = async (name: string): Promise<Starting> => {
    let bound!: () => void;
    const scheduled = new Promise<void>((resolve) => (bound = resolve));
    const running = waitForPod(kube, namespace, name, isStarted, {
      timeoutMs: creationTimeoutMs,
      onProgress: (summary, pod) => {
        logger.debug(`shadow ${name}: ${summary}`);
        if (pod?.spec?.nodeName) bound();
      },
    });
    // The outcome is kept on the start itself: a pod already running when joined settles before
    // the caller has even made it `current`, so marking `current` here would miss it, and the pod
    // would pass for one still starting for the rest of the session (its heals never re-joined).
    const start: Starting = { running, settled: false };
    running.then(
      (pod) => {
        // Reported running: from now on the pod is checked as any other (findOrMakePod's first branch).
        start.settled = true;
        if (current?.name === name) current.ip ??= pod.status!.podIP!;
      },
      () => {
        // Whoever waits on `running` reports the failure; a later reconnect looks at the pod afresh.
        start.settled = true;
      },
    );
    await Promise.race([scheduled, running]);
    return start;
  };

  /** The current shadow pod if it is still there and running, else a new one. */
  const findOrMakePod = async (): Promise<ShadowPodInUse> => {
    if (current && !stillStarting(current)) {
      // Bounded: the link is usually lost because the network is, and a read sent into a silent
      // network is answered only at TCP's next retransmission, seconds after the network is back;
      // every attempt meanwhile would wait on this one read (one findOrMakePod at a time).
      const pod = await answeredWithin(kube.request<any>("GET", `/api/v1/namespaces/${namespace}/pods/${current.name}`), POD_READ_ANSWER_MS)
        .catch((error) => {
          if (isKtctlError(error) && error.exitCode === ExitCode.notFound) return undefined;
          throw error;
        });
      // A shared pod replaced under the same name (by another sharer's heal) does not list us yet.
      const listsUs = !shared || sharersOf(pod).includes(session.id);
      if (pod && isStarted(pod) && listsUs) return (current = { name: current.name, ip: pod.status!.podIP! });
      if (pod && listsUs && !pod.metadata?.deletionTimestamp && pod.status?.phase !== "Failed" && pod.status?.phase !== "Succeeded") {
        // Still there but restarting its container: wait for it rather than doubling up.
        const again = await waitForPod(kube, namespace, current.name, isStarted, { timeoutMs: creationTimeoutMs });
        return (current = { name: current.name, ip: again.status!.podIP! });
      }
      if (!pod || !shared || listsUs) logger.warn(`shadow pod ${current.name} is gone; starting a new one`);
    }
    if (current && stillStarting(current)) {
      // A pod this very start made: its first connection is still being tried; a link lost that
      // early (before the kubelet even reported it) is simply tried again the same way.
      return current;
    }
    current = shared ? await joinPod() : await createPod();
    return current;
  };

  /**
   * One findOrMakePod at a time. The tunnel bounds each attempt (portForwardTimeout) and tries again
   * while a pod slow to start is still being made: that attempt must wait for it, not make a second
   * one (two shadows behind one exchanged service, one without a tunnel, refuse every other request).
   */
  let finding: Promise<ShadowPodInUse> | undefined;
  const ensurePod = () => (finding ??= findOrMakePod().finally(() => (finding = undefined)));

  /** A port-forward stream to a pod this start made, once its shadow answers on it. */
  const answeringStream = async (pod: { name: string; start: PodStart }): Promise<Duplex> => {
    const stream = await untilListening(pod.start, () => greetedPortForward(kube, namespace, pod.name, SHADOW_TUNNEL_PORT));
    logger.debug(`shadow ${pod.name} answers through the port-forward, ${Math.round(performance.now())} ms into the process`);
    return stream;
  };

  const first = await ensurePod();
  // The first stream is had here, before the tunnel's own time limits apply: the pod may still be
  // pulling its image (bounded by the pod creation timeout, like the wait for its status).
  let early = first.start ? await answeringStream({ name: first.name, start: first.start }) : undefined;
  const connect = async (): Promise<Duplex> => {
    if (early) {
      const stream = early;
      early = undefined;
      return stream;
    }
    const pod = await ensurePod();
    return pod.start && stillStarting(pod) ? answeringStream({ name: pod.name, start: pod.start }) : kube.portForward(namespace, pod.name, SHADOW_TUNNEL_PORT);
  };

  const tunnel = await createTunnel({
    connect,
    privateKey: keys.privateKey,
    logger,
    connectTimeoutMs: (global.portForwardTimeout ?? 10) * 1000,
  }).catch((error) => {
    early?.destroy();
    if (isKtctlError(error)) throw error;
    throw new KtctlError(`cannot open the tunnel to shadow pod ${namespace}/${first.name}: ${error?.message ?? error}`, ExitCode.unreachable);
  });
  // The pod's IP: the shadow's welcome says it (downward API), or the kubelet's report, whichever
  // comes first; a replacement pod's too, before the modes hear that the tunnel is back.
  const learnIP = () => {
    if (current && !current.ip && tunnel.shadow?.hostname === current.name && tunnel.shadow.podIP) current.ip = tunnel.shadow.podIP;
  };
  learnIP();
  if (!current!.ip && current!.start) current!.ip = (await current!.start.running).status!.podIP!;
  tunnel.onStateChange((state, detail) => {
    if (state === "reconnecting") logger.warn(`tunnel to the shadow lost${detail ? ` (${detail})` : ""}; reconnecting`);
    else if (state === "connected") {
      learnIP();
      logger.debug("tunnel connected");
    }
  });
  // The tunnel goes first when the session ends, so no stream races the pod's deletion.
  void session.ended.then(() => tunnel.close());

  return {
    get podName() {
      return current!.name;
    },
    get podIP() {
      return current!.ip!;
    },
    tunnel,
  };
}

export type { Kube };
