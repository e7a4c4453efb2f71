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
    },
    async run({ args }) {
      const global = api.globalOptions(args);
      const target = api.parseTarget(String(args.target));
      // Every port argument after the target: `forward svc/x 8080:80 9090`.
      const portSpecs = [String(args.ports), ...((args._ as string[]) ?? []).slice(2)];
      const mappings = api.parsePorts(portSpecs.join(","));
      const kube = await api.kube(global);
      const resolver = await createResolver(kube, kube.namespace, target, mappings.map((m) => m.remote), api);

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
              localPort: mapping.local,
              localHost: String(args.address),
              target: () => resolver.resolve(mapping.remote),
              onError: (error: any) => api.logger.warn(`connection to ${resolver.describe(mapping.remote)} failed: ${error?.message ?? error}`),
            }),
          );
      } catch (error) {
        await Promise.all(listeners.map((l) => l.close()));
        resolver.close();
        throw error;
      }

      const session = await api.startSession({ kube, mode: "forward", target: `${target.kind}/${target.name}`, global });
      try {
        shadowReady(await api.startShadow(session, { role: "forward" }));
      } catch (error) {
        shadowFailed(error);
        await Promise.all(listeners.map((l) => l.close()));
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
      resolver.close();
      await session.close(reason);
    },
  });

export default forward;
