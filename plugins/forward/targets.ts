// What `ktctl forward` forwards to: a service, a pod or a workload's pods, resolved to an address
// inside the cluster for EACH new connection, so the forward follows pods that are replaced.

import type { ForwardTarget, Kube, PluginApi, PodRef, TargetRef } from "../../core/plugin-api.ts";

/** Gives the in-cluster address for one remote port; called once per accepted connection. */
export interface TargetResolver {
  describe(remotePort: number): string;
  /** Every address it gives names its pod (so the pod's own port-forward can reach it without a shadow). */
  readonly toPods: boolean;
  /** The pods the next connections would go to (at most `count`), without taking them; none for a ClusterIP. */
  nextPods(count: number): PodRef[];
  /** The address, and the pod behind it when there is one (a service's ClusterIP has none). */
  resolve(remotePort: number): Promise<ForwardTarget>;
  close(): void;
}

export interface ResolverOptions {
  /**
   * Resolve a service with a selector to its ready pods, as kubectl port-forward does, instead of
   * to its ClusterIP (which only a path through the cluster, the shadow's, can reach).
   */
  servicesToPods: boolean;
}

const isReady = (pod: any) =>
  pod?.status?.podIP &&
  !pod.metadata?.deletionTimestamp &&
  (pod.status.conditions ?? []).some((c: any) => c.type === "Ready" && c.status === "True");

/** Live set of a selector's ready pods, kept by a watch; connections take turns over them. */
class ReadyPods {
  private pods = new Map<string, any>();
  private next = 0;
  private abort = new AbortController();
  private changed: (() => void)[] = [];

  constructor(
    private kube: Kube,
    private namespace: string,
    private query: Record<string, string>,
    private what: string,
    private api: Pick<PluginApi, "errors" | "logger">,
  ) {}

  async start(): Promise<void> {
    const list = await this.kube.request<any>("GET", `/api/v1/namespaces/${this.namespace}/pods?${new URLSearchParams(this.query)}`);
    for (const pod of list.items ?? []) this.apply("ADDED", pod);
    void this.kube
      .watch(`/api/v1/namespaces/${this.namespace}/pods`, this.query, (type, pod) => this.apply(type, pod), this.abort.signal)
      .catch((error) => this.api.logger.warn(`stopped following ${this.what}: ${error?.message ?? error}`));
  }

  private apply(type: string, pod: any): void {
    const name = pod.metadata.name;
    if (type === "DELETED" || !isReady(pod)) this.pods.delete(name);
    else this.pods.set(name, pod);
    if (this.pods.size > 0) for (const wake of this.changed.splice(0)) wake();
  }

  /** A ready pod; while there is none (a rollout in progress) waits for one, up to `timeoutMs`. */
  async pick(timeoutMs: number): Promise<any> {
    if (this.pods.size === 0) {
      const { KtctlError, ExitCode } = this.api.errors;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new KtctlError(`no ready pod for ${this.what}`, ExitCode.timeout)), timeoutMs);
        this.changed.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    const pods = [...this.pods.values()];
    return pods[this.next++ % pods.length];
  }

  /** What the next `count` picks would give now, without taking them. */
  upcoming(count: number): PodRef[] {
    const pods = [...this.pods.values()];
    return pods.slice(0, Math.min(count, pods.length)).map((_, i) => podRef(pods[(this.next + i) % pods.length]));
  }

  close(): void {
    this.abort.abort();
  }
}

/** Named container ports resolve per pod: the same name may be a different number after a rollout. */
function containerPort(pod: any, port: number | string): number | undefined {
  if (typeof port === "number") return port;
  for (const container of pod.spec?.containers ?? [])
    for (const p of container.ports ?? []) if (p.name === port) return p.containerPort;
  return undefined;
}

const WAIT_FOR_POD_MS = 30_000;

const podRef = (pod: any): PodRef => ({ namespace: pod.metadata.namespace, name: pod.metadata.name, uid: pod.metadata.uid });

const podTarget = (pod: any, port: number): ForwardTarget => ({ host: pod.status.podIP, port, pod: podRef(pod) });

export async function createResolver(
  kube: Kube,
  namespace: string,
  target: TargetRef,
  remotePorts: number[],
  api: Pick<PluginApi, "errors" | "logger">,
  options: ResolverOptions,
): Promise<TargetResolver> {
  const { KtctlError, ExitCode } = api.errors;
  const label = `${target.kind}/${target.name}`;

  if (target.kind === "service") {
    const svc = await kube.request<any>("GET", `/api/v1/namespaces/${namespace}/services/${encodeURIComponent(target.name)}`);
    const ports: any[] = svc.spec?.ports ?? [];
    for (const remote of remotePorts)
      if (!ports.some((p) => p.port === remote))
        throw new KtctlError(
          `service ${namespace}/${target.name} has no port ${remote}`,
          ExitCode.usage,
          `its ports: ${ports.map((p) => p.port).join(", ") || "none"}`,
        );
    const clusterIP: string | undefined = svc.spec?.clusterIP;
    const selector = Object.entries(svc.spec?.selector ?? {}).map(([k, v]) => `${k}=${v}`).join(",");
    if (clusterIP && clusterIP !== "None" && (!options.servicesToPods || !selector)) {
      // kube-proxy in the cluster spreads connections over the ready pods and follows rollouts.
      return { describe: (p) => `${label}:${p} (${clusterIP})`, toPods: false, nextPods: () => [], resolve: async (port) => ({ host: clusterIP, port }), close() {} };
    }
    // Headless, or straight to the pods: the selected ready pods in turn, with the port's targetPort.
    if (!selector) throw new KtctlError(`headless service ${namespace}/${target.name} has no selector to follow`, ExitCode.usage);
    const pods = new ReadyPods(kube, namespace, { labelSelector: selector }, label, api);
    await pods.start();
    return {
      describe: (p) => `${label}:${p}`,
      toPods: true,
      nextPods: (count) => pods.upcoming(count),
      resolve: async (port) => {
        const pod = await pods.pick(WAIT_FOR_POD_MS);
        // TCP only: a UDP port of the same number (53) may have another targetPort.
        const targetPort = ports.find((p) => p.port === port && (p.protocol ?? "TCP") === "TCP")?.targetPort ?? port;
        const number = containerPort(pod, targetPort);
        if (number === undefined) throw new KtctlError(`pod ${pod.metadata.name} has no port named ${targetPort}`, ExitCode.notFound);
        return podTarget(pod, number);
      },
      close: () => pods.close(),
    };
  }

  if (target.kind === "pod") {
    await kube.request("GET", `/api/v1/namespaces/${namespace}/pods/${encodeURIComponent(target.name)}`);
    const pods = new ReadyPods(kube, namespace, { fieldSelector: `metadata.name=${target.name}` }, label, api);
    await pods.start();
    return {
      describe: (p) => `${label}:${p}`,
      toPods: true,
      nextPods: (count) => pods.upcoming(count),
      resolve: async (port) => podTarget(await pods.pick(WAIT_FOR_POD_MS), port),
      close: () => pods.close(),
    };
  }

  const deployment = await kube.request<any>("GET", `/apis/apps/v1/namespaces/${namespace}/deployments/${encodeURIComponent(target.name)}`);
  const matchLabels: Record<string, string> = deployment.spec?.selector?.matchLabels ?? {};
  const selector = Object.entries(matchLabels).map(([k, v]) => `${k}=${v}`).join(",");
  if (!selector) throw new KtctlError(`deployment ${namespace}/${target.name} has no matchLabels selector`, ExitCode.usage);
  const pods = new ReadyPods(kube, namespace, { labelSelector: selector }, label, api);
  await pods.start();
  return {
    describe: (p) => `${label}:${p}`,
    toPods: true,
    nextPods: (count) => pods.upcoming(count),
    resolve: async (port) => podTarget(await pods.pick(WAIT_FOR_POD_MS), port),
    close: () => pods.close(),
  };
}
