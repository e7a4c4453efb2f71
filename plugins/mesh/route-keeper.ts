// Keeps this developer's route on the router for as long as the session lives: the router holds
// routes in memory, so a router pod that is replaced (deleted, evicted, rescheduled) starts empty
// and every live developer puts their route back as soon as the new pod is ready. A developer
// who is gone does not, and so leaves nothing behind on the new pod.

import type { Kube, Route } from "../../core/plugin-api.ts";
import type { MeshLog } from "./membership.ts";
import { labelSelectorText } from "./names.ts";
import { isRouterPodReady, putRoute, readyRouterPods, RouteConflictError } from "./router-admin.ts";

/**
 * The router process a pod runs now: a container restart (a crash, the OOM killer) keeps the pod
 * but empties the router's memory, so it counts as a new router.
 */
function processKey(pod: any): string {
  const restarts = (pod?.status?.containerStatuses ?? []).reduce((sum: number, c: any) => sum + (c.restartCount ?? 0), 0);
  return `${pod?.metadata?.uid}/${restarts}`;
}

/** Tries per router pod before giving up until its next change (its admin port opens just after it turns ready). */
const PUSH_ATTEMPTS = 4;
const PUSH_BACKOFF_MS = 500;

export class RouteKeeper {
  /** Router process (pod uid and container restarts) -> the route JSON it was given. */
  private readonly given = new Map<string, string>();
  private readonly inFlight = new Set<string>();
  private readonly stop = new AbortController();

  constructor(
    private readonly kube: Kube,
    private readonly namespace: string,
    /** The router pods' labels (routerSelector of the service). */
    private readonly routerPods: Record<string, string>,
    private readonly adminPort: number,
    private readonly route: () => Route,
    private readonly log: MeshLog,
    /** Another session took this mark meanwhile (only possible after a router restart race). */
    private readonly onConflict: (error: RouteConflictError) => void,
  ) {}

  /** Puts the route on every ready router pod now; a conflict (mark taken) is thrown. */
  async pushAll(): Promise<number> {
    const pods = await readyRouterPods(this.kube, this.namespace, this.routerPods);
    for (const pod of pods) await this.pushTo(pod, true);
    return pods.length;
  }

  /** Follows the router pods and gives each new (or changed) ready pod the route. */
  follow(): void {
    void this.kube
      .watch(
        `/api/v1/namespaces/${this.namespace}/pods`,
        { labelSelector: labelSelectorText(this.routerPods) },
        (type, pod) => {
          if (type === "DELETED") {
            for (const key of [...this.given.keys()]) if (key.startsWith(`${pod?.metadata?.uid}/`)) this.given.delete(key);
            return;
          }
          if (isRouterPodReady(pod) && this.given.get(processKey(pod)) !== JSON.stringify(this.route())) void this.pushTo(pod, false);
        },
        this.stop.signal,
      )
      .catch((error: Error) => this.log.warn(`stopped following the mesh router pods: ${error.message}`));
  }

  /** The route changed (e.g. this developer's shadow has a new address): give it to every router pod again. */
  async refresh(): Promise<void> {
    this.given.clear();
    await this.pushAll().catch((error: Error) => {
      if (error instanceof RouteConflictError) this.onConflict(error);
      else this.log.warn(`could not update the route on the mesh router: ${error.message}`);
    });
  }

  close(): void {
    this.stop.abort();
  }

  private async pushTo(pod: any, strict: boolean): Promise<void> {
    const uid = processKey(pod);
    if (this.inFlight.has(uid)) return;
    this.inFlight.add(uid);
    try {
      for (let attempt = 1; ; attempt++) {
        const route = this.route();
        try {
          await putRoute(this.kube, this.namespace, pod.metadata.name, this.adminPort, route);
          this.given.set(uid, JSON.stringify(route));
          this.log.debug(`route ${route.header}=${route.value} set on router pod ${pod.metadata.name}`);
          return;
        } catch (error) {
          if (error instanceof RouteConflictError) {
            if (strict) throw error;
            return this.onConflict(error);
          }
          if (attempt >= PUSH_ATTEMPTS || this.stop.signal.aborted) {
            if (strict) throw error;
            this.log.warn(`could not give router pod ${pod.metadata.name} this route: ${(error as Error).message}`);
            return;
          }
          // The pod is ready by its probe, its admin endpoint may lag by a moment: try again shortly.
          await new Promise((resolve) => setTimeout(resolve, PUSH_BACKOFF_MS * attempt));
        }
      }
    } finally {
      this.inFlight.delete(uid);
    }
  }
}
