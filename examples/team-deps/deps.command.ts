import type { CommandFactory, LocalForward } from "../../core/plugin-api.ts";

interface Dependency {
  name: string;
  /** svc/NAME (a service of the namespace). */
  target: string;
  /** LOCAL:REMOTE, comma-separated. */
  ports: string;
  /** KEY=VALUE printed for the developer's shell, e.g. a connection URL on the local port. */
  env?: string;
}

interface TeamDepsConfig {
  namespace?: string;
  services?: Dependency[];
}

const deps: CommandFactory = (api) =>
  api.defineCommand({
    meta: { name: "deps", description: "Forward the team's dependencies (from the team-deps config) and print their env" },
    args: {
      ...api.globalArgs,
      only: { type: "string", description: "Comma-separated dependency names to forward (default: all)" },
    },
    async run({ args }) {
      const { KtctlError, ExitCode } = api.errors;
      const config = api.config.get<TeamDepsConfig>("team-deps") ?? {};
      const wanted = args.only ? new Set(String(args.only).split(",").map((s) => s.trim())) : undefined;
      const services = (config.services ?? []).filter((d) => !wanted || wanted.has(d.name));
      if (services.length === 0)
        throw new KtctlError("no dependencies to forward", ExitCode.config, 'list them under "team-deps.services" in .ktctl.yaml');

      const global = api.globalOptions(args);
      if (!global.namespace && config.namespace) global.namespace = config.namespace;
      const kube = await api.kube(global);

      // Check everything before touching the cluster: each target exists and serves the port.
      const plan: { dep: Dependency; host: string; local: number; remote: number }[] = [];
      for (const dep of services) {
        const [kind, name] = dep.target.split("/");
        if (kind !== "svc" || !name) throw new KtctlError(`team-deps: "${dep.target}" of ${dep.name} is not svc/NAME`, ExitCode.config);
        const svc = await kube.request<any>("GET", `/api/v1/namespaces/${kube.namespace}/services/${name}`);
        for (const { local, remote } of api.parsePorts(dep.ports)) {
          if (!svc.spec.ports.some((p: any) => p.port === remote))
            throw new KtctlError(`team-deps: service ${name} has no port ${remote} (for ${dep.name})`, ExitCode.config);
          plan.push({ dep, host: `${name}.${kube.namespace}.svc`, local, remote });
        }
      }

      const session = await api.startSession({ kube, mode: "team-deps", target: services.map((d) => d.name).join(","), global });
      const listeners: LocalForward[] = [];
      try {
        const shadow = await api.startShadow(session, { role: "deps" });
        for (const entry of plan)
          listeners.push(
            await api.forwardLocal({
              tunnel: shadow.tunnel,
              localPort: entry.local,
              // By name: the shadow resolves it with the cluster's DNS, as the service would.
              target: async () => ({ host: entry.host, port: entry.remote }),
            }),
          );
      } catch (error) {
        await Promise.all(listeners.map((l) => l.close()));
        await session.close("team-deps failed to start");
        throw error;
      }
      for (const entry of plan) api.logger.success(`${entry.dep.name}: 127.0.0.1:${entry.local} -> ${entry.host}:${entry.remote}`);
      const env = services.filter((d) => d.env).map((d) => `export ${d.env}`);
      if (env.length) api.logger.log(["", "Run your service with:", ...env, ""].join("\n"));

      // Its own panel in `ktctl ui`: built only while a ui is open (api.ui.watching), so it costs
      // a timer otherwise; the latest content reaches a ui that opens later.
      const showPanel = () => {
        if (!api.ui.watching) return;
        api.ui.panel({
          id: "team-deps",
          sessionId: session.id,
          title: "team dependencies",
          columns: ["dependency", "local", "in the cluster", "open connections"],
          rows: plan.map((entry, i) => [entry.dep.name, `127.0.0.1:${entry.local}`, `${entry.host}:${entry.remote}`, String(listeners[i]?.connections() ?? 0)]),
          note: env.length ? env.join("  ") : undefined,
        });
      };
      const panelTimer = setInterval(showPanel, 2000);
      panelTimer.unref();
      api.ui.publish({ source: "team-deps", sessionId: session.id, text: `forwarding ${plan.map((e) => e.dep.name).join(", ")}` });

      const reason = await session.ended;
      clearInterval(panelTimer);
      await Promise.all(listeners.map((l) => l.close()));
      await session.close(reason);
    },
  });

export default deps;
