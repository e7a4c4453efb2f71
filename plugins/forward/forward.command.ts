import type { CommandFactory, LocalForward, Session, Shadow, Tunnel } from "../../core/plugin-api.ts";
import { createResolver } from "./targets.ts";

/** Pods whose port-forward connection opens at the start (a deployment of 20 does not get 20). */
const WARM_PODS = 3;

const forward: CommandFactory = (api) =>
  api.defineCommand({
    meta: {
      name: "forward",
      description: "Forward local ports to svc/NAME, pod/NAME or deployment/NAME (PORT or LOCAL:REMOTE, several allowed)",
    },
    args: {
      ...api.globalArgs,
      target: { type: "positional", description: "svc/NAME, pod/NAME, deployment/NAME (a bare NAME is a service)", required: true },
      ports: { type: "positional", valueHint: "[LOCAL:]REMOTE...", description: "[LOCAL:]REMOTE, comma-separated or repeated", required: true },
      address: { type: "string", description: "Local address to listen on", default: "127.0.0.1" },
      via: {
        type: "string",
        valueHint: "pod|shadow",
        description:
          "How connections reach the target: pod (straight through the pod's port-forward, as kubectl does; a service's ready pods in turn) or shadow (through the session's shadow: a service by its ClusterIP, spread by the cluster)",
        default: "pod",
      },
    },
    async run({ args }) {
      const global = api.globalOptions(args);
      const target = api.parseTarget(String(args.target));
      // Every port argument after the target: `forward svc/x 8080:80 9090`.
      const portSpecs = [String(args.ports), ...((args._ as string[]) ?? []).slice(2)];
      const mappings = api.parsePorts(portSpecs.join(","));
      const via = String(args.via);
      if (via !== "pod" && via !== "shadow") throw new api.errors.KtctlError(`--via must be pod or shadow, not "${via}"`, api.errors.ExitCode.usage);
      const kube = await api.kube(global);
      // The session (its journal, watchdog and Lease) starts while the target is resolved and the
      // ports are taken; a refusal of either closes it again before the forward exits.
      const sessionStart = api.beginSession({ kube, mode: "forward", target: `${target.kind}/${target.name}`, global });
      let resolver: Awaited<ReturnType<typeof createResolver>>;
      try {
        resolver = await createResolver(kube, kube.namespace, target, mappings.map((m) => m.remote), api, { servicesToPods: via === "pod" });
      } catch (error) {
        await sessionStart.abandon(error);
        throw error;
      }
      // Connections to a pod need no shadow: they go through the pod's own port-forward, as
      // kubectl's do. The shadow starts up front only when every connection needs it (--via shadow,
      // a service reached by its ClusterIP, an API server whose port-forward cannot carry TCP's
      // half-close); otherwise only if a connection turns out to need it, so a plain forward
      // creates no pod and is ready as soon as its session is recorded.
      const pods = via === "pod" ? kube.podStreams() : undefined;
      // The first connections take turns over the pods: their port-forward connections open now,
      // while the listeners and the session start, instead of on each one's first connection. It
      // also tells whether the API server can carry streams straight to the pods (SPDY) at all.
      const warmed = pods ? Promise.all(resolver.nextPods(WARM_PODS).map((pod) => pods.warm(pod, mappings[0]!.remote))) : undefined;

      // Listen before the session is used: a taken port fails before anything changes in the
      // cluster but the session's own records, and clients that connect early wait for their path.
      let sessionStarted!: (session: Session) => void;
      const sessionPromise = new Promise<Session>((resolve) => (sessionStarted = resolve));
      let shadowError: { error: unknown } | undefined;
      let shadowFailed!: (error: unknown) => void;
      const shadowFailure = new Promise<never>((_, reject) => (shadowFailed = reject));
      shadowFailure.catch(() => {});
      let shadowStart: Promise<Shadow> | undefined;
      const shadow = (why: string) =>
        (shadowStart ??= sessionPromise.then((session) => {
          api.logger.info(`Starting a shadow pod: ${why}`);
          return api.startShadow(session, { role: "forward" });
        })).catch((error) => {
          shadowError = { error };
          shadowFailed(error);
          throw error;
        });
      const lazyTunnel = {
        openStream: async (host: string, port: number) =>
          (await shadow("the API server's port-forward cannot carry these connections straight to the pod")).tunnel.openStream(host, port),
      } as Tunnel;
      const listeners: LocalForward[] = [];
      const closeLocal = async () => {
        await Promise.all(listeners.map((l) => l.close()));
        pods?.close();
        resolver.close();
      };
      try {
        for (const mapping of mappings)
          listeners.push(
            await api.forwardLocal({
              tunnel: lazyTunnel,
              pods,
              localPort: mapping.local,
              localHost: String(args.address),
              target: () => resolver.resolve(mapping.remote),
              onError: (error: any) => {
                // A shadow that could not start ends the forward with its own one-line error.
                if (shadowError && error === shadowError.error) return;
                api.logger.warn(`connection to ${resolver.describe(mapping.remote)} failed: ${error?.message ?? error}`);
              },
              onStream: (path, to) =>
                api.logger.debug(
                  path === "pod" ? `connection to ${to.pod!.name}:${to.port}, straight to the pod` : `connection to ${to.host}:${to.port}, through the shadow`,
                ),
            }),
          );
      } catch (error) {
        await closeLocal();
        await sessionStart.abandon(error);
        throw error;
      }

      let session: Session;
      try {
        session = await sessionStart.session;
      } catch (error) {
        await closeLocal();
        throw error;
      }
      sessionStarted(session);
      let endedEarly = false;
      void session.ended.then(() => (endedEarly = true));
      // Bounded by warm() itself: a warm-up that hangs leaves the choice to the first connection.
      if (warmed) await warmed;
      const why =
        via === "shadow"
          ? "--via shadow"
          : !resolver.toPods
            ? `${resolver.describe(mappings[0]!.remote)} is reached by its ClusterIP`
            : pods && !pods.usable
              ? "the API server's port-forward cannot carry TCP's half-close to the pod (v4 only)"
              : undefined;
      try {
        // A Ctrl-C during the warm-up's wait: nothing more to start, the session is ending.
        if (why && !endedEarly) await shadow(why);
      } catch (error) {
        await closeLocal();
        await session.close("shadow failed to start");
        throw error;
      }
      if (!endedEarly) {
        for (const [i, listener] of listeners.entries())
          api.logger.success(`Forwarding ${listener.host}:${listener.port} -> ${resolver.describe(mappings[i]!.remote)}`);
        api.logger.info("Press Ctrl-C to stop; everything ktctl created is removed on exit.");
      }

      let reason: string;
      try {
        // A shadow started on demand that fails ends the forward: its connections have no other path.
        reason = await Promise.race([session.ended, shadowFailure]);
      } catch (error) {
        await closeLocal();
        await session.close("shadow failed to start");
        throw error;
      }
      api.logger.debug(`forward ending: ${reason}`);
      await closeLocal();
      await session.close(reason);
    },
  });

export default forward;
