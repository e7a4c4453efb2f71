import type { CommandFactory, Shadow, Tunnel } from "../../core/plugin-api.ts";
import { createResolver } from "./targets.ts";

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
      const resolver = await createResolver(kube, kube.namespace, target, mappings.map((m) => m.remote), api, { servicesToPods: via === "pod" });
      // Connections to a pod need no shadow: they answer while it starts, and their bytes skip its hop.
      const pods = via === "pod" ? kube.podStreams() : undefined;

      // Listen before the shadow exists: a taken port fails before anything changes in the
      // cluster, and clients that connect early simply wait for the tunnel.
      let shadowReady!: (shadow: Shadow) => void;
      let shadowFailed!: (error: unknown) => void;
      const shadowPromise = new Promise<Shadow>((resolve, reject) => {
        shadowReady = resolve;
        shadowFailed = reject;
      });
      shadowPromise.catch(() => {});
      const lazyTunnel = {
        openStream: async (host: string, port: number) => (await shadowPromise).tunnel.openStream(host, port),
      } as Tunnel;
      const listeners = [];
      try {
        for (const mapping of mappings)
          listeners.push(
            await api.forwardLocal({
              tunnel: lazyTunnel,
              pods,
              localPort: mapping.local,
              localHost: String(args.address),
              target: () => resolver.resolve(mapping.remote),
              onError: (error: any) => api.logger.warn(`connection to ${resolver.describe(mapping.remote)} failed: ${error?.message ?? error}`),
              onStream: (path, to) =>
                api.logger.debug(
                  path === "pod" ? `connection to ${to.pod!.name}:${to.port}, straight to the pod` : `connection to ${to.host}:${to.port}, through the shadow`,
                ),
            }),
          );
      } catch (error) {
        await Promise.all(listeners.map((l) => l.close()));
        pods?.close();
        resolver.close();
        throw error;
      }

      const session = await api.startSession({ kube, mode: "forward", target: `${target.kind}/${target.name}`, global });
      try {
        shadowReady(await api.startShadow(session, { role: "forward" }));
      } catch (error) {
        shadowFailed(error);
        await Promise.all(listeners.map((l) => l.close()));
        pods?.close();
        resolver.close();
        await session.close("shadow failed to start");
        throw error;
      }
      for (const [i, listener] of listeners.entries())
        api.logger.success(`Forwarding ${listener.host}:${listener.port} -> ${resolver.describe(mappings[i]!.remote)}`);
      api.logger.info("Press Ctrl-C to stop; everything ktctl created is removed on exit.");

      const reason = await session.ended;
      api.logger.debug(`forward ending: ${reason}`);
      await Promise.all(listeners.map((l) => l.close()));
      pods?.close();
      resolver.close();
      await session.close(reason);
    },
  });

export default forward;
