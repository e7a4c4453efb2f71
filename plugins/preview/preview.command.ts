// `ktctl preview NAME --expose LOCAL[:REMOTE][,...]`: a new Service NAME in the namespace, backed by
// the session's shadow and served by this machine. `--external` makes it a LoadBalancer, or a
// NodePort where no load balancer answers. The Service is a journaled step: it goes with the session.

import type { CommandFactory, Kube, PluginApi, ServingShadow } from "../../core/plugin-api.ts";
import { formatAddress, nodeAddresses, previewService } from "./service.ts";

const ENDPOINTS_WAIT_MS = 30_000;
const DNS_LABEL = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;

const servicesPath = (kube: Kube) => `/api/v1/namespaces/${encodeURIComponent(kube.namespace)}/services`;
const servicePath = (kube: Kube, name: string) => `${servicesPath(kube)}/${encodeURIComponent(name)}`;

/** Refuses a name taken by a service ktctl did not make; a dead session's preview is cleaned first. */
async function claimName(api: PluginApi, kube: Kube, name: string): Promise<void> {
  const { KtctlError, ExitCode } = api.errors;
  const namespace = kube.namespace;
  const existing = await kube.get(servicePath(kube, name));
  if (!existing) return;
  if (!api.scheme.isCreatedByKtctl(existing)) {
    throw new KtctlError(`service ${namespace}/${name} already exists and was not created by ktctl; preview will not replace it`, ExitCode.conflict, "choose another name, or use exchange to take that service over");
  }
  await api.ownership.ensureNotHeld(kube, [existing]);
  if (await kube.get(servicePath(kube, name))) {
    throw new KtctlError(`service ${namespace}/${name} is still there after cleaning the session that made it`, ExitCode.conflict, "run ktctl clean and try again");
  }
}

/** LoadBalancer address, or a switch to NodePort and the nodes' addresses when none appears in time. */
async function externalAddresses(api: PluginApi, kube: Kube, name: string, waitMs: number): Promise<string[]> {
  const path = servicePath(kube, name);
  const ingress = await api.waits.forLoadBalancer(kube, name, { timeoutMs: waitMs });
  const service = await kube.request<any>("GET", path);
  const ports: any[] = service.spec?.ports ?? [];
  if (ingress) return ports.map((p) => formatAddress(ingress, p.port));
  api.logger.info(`no load balancer answered within ${Math.round(waitMs / 1000)}s; switching service ${name} to NodePort`);
  // Ours (created by this session, deleted by its undo): a plain patch, no step of its own.
  const patched = await kube.mergePatch(path, { spec: { type: "NodePort" } });
  let hosts: string[] = [];
  try {
    hosts = nodeAddresses((await kube.request<any>("GET", "/api/v1/nodes")).items ?? []);
  } catch (error) {
    api.logger.debug(`cannot list nodes: ${api.errors.text(error)}`);
  }
  const nodePorts = (patched.spec?.ports ?? []).map((p: any) => p.nodePort as number);
  if (!hosts.length) return nodePorts.map((p: number) => `<any node>:${p}`);
  return hosts.flatMap((h) => nodePorts.map((p: number) => formatAddress(h, p)));
}

const preview: CommandFactory = (api) =>
  api.defineCommand({
    meta: { name: "preview", description: "Publish a local process as a new service NAME in the namespace" },
    args: {
      ...api.globalArgs,
      name: { type: "positional", description: "Name of the new service", required: true },
      expose: { type: "string", valueHint: "LOCAL[:REMOTE],...", description: "LOCAL[:REMOTE],... : REMOTE becomes a port of the service, LOCAL is a port on this machine", required: true },
      external: { type: "boolean", default: false, description: "Reachable from outside the cluster: LoadBalancer, else NodePort" },
      lbWaitTime: { type: "string", valueHint: "seconds", default: "5", description: "With --external: seconds to wait for a load balancer before switching to NodePort" },
      localHost: { type: "string", valueHint: "address", default: "127.0.0.1", description: "Address of the local process" },
      waitLocal: { type: "boolean", default: false, description: "Wait until something listens on the LOCAL ports instead of failing" },
      waitLocalTime: { type: "string", valueHint: "seconds", default: "0", description: "With --waitLocal: give up after this many seconds (0: never)" },
      connect: { type: "boolean", default: false, description: "Let the local process reach the cluster too: a SOCKS5/HTTP proxy through this session" },
      proxyPort: { type: "string", valueHint: "port", default: "0", description: "With --connect: the proxy's loopback port (0: a free one)" },
    },
    async run({ args }) {
      const { KtctlError, ExitCode } = api.errors;
      const global = api.globalOptions(args);
      const name = String(args.name);
      if (!DNS_LABEL.test(name)) throw new KtctlError(`invalid service name "${name}": lowercase letters, digits and "-", starting with a letter (at most 63)`, ExitCode.usage);
      const lbWaitSeconds = Number(args.lbWaitTime);
      const waitLocalSeconds = Number(args.waitLocalTime);
      if (!Number.isFinite(lbWaitSeconds) || lbWaitSeconds < 0) throw new KtctlError(`invalid lbWaitTime "${args.lbWaitTime}": expected seconds`, ExitCode.usage);
      if (!Number.isFinite(waitLocalSeconds) || waitLocalSeconds < 0) throw new KtctlError(`invalid waitLocalTime "${args.waitLocalTime}": expected seconds`, ExitCode.usage);
      const localHost = String(args.localHost);
      const mappings = api.parsePorts(String(args.expose));
      const remotes = new Set<number>();
      for (const m of mappings) {
        if (remotes.has(m.remote)) throw new KtctlError(`service port ${m.remote} given twice`, ExitCode.usage);
        remotes.add(m.remote);
      }

      const proxyPort = Number(args.proxyPort);
      if (!Number.isInteger(proxyPort) || proxyPort < 0 || proxyPort > 65535) throw new KtctlError(`invalid proxyPort "${args.proxyPort}"`, ExitCode.usage);

      const kube = await api.kube(global);
      const namespace = kube.namespace;
      const connectBack = args.connect ? await api.serving.connectBack(proxyPort) : undefined;
      const abandon = async (error: unknown) => {
        connectBack?.fail(error);
        await connectBack?.close();
        throw error;
      };
      const session = await (async () => {
        await api.serving.requireLocalListeners(localHost, mappings.map((m) => m.local), { enabled: Boolean(args.waitLocal), seconds: waitLocalSeconds, flag: "--waitLocal" });
        await claimName(api, kube, name);
        return api.startSession({ kube, mode: "preview", target: `svc/${name}`, global, handleSignals: false });
      })().catch(abandon);
      const stop = api.serving.stopSignals();
      const role = `preview-${name}`;
      let serving: ServingShadow | undefined;
      const { shadow, external } = await api.serving.setUp(session, stop, async () => {
        serving = await api.serving.startShadow(session, {
          role,
          ports: mappings.map((m) => ({ shadowPort: m.remote, localPort: m.local })),
          localHost,
          describe: `preview svc/${name}`,
        });
        const shadow = serving.shadow;
        const service = previewService({
          name,
          namespace,
          labels: session.labels,
          selector: api.scheme.shadowSelector(session.id, role),
          ports: mappings.map((m) => m.remote),
          external: Boolean(args.external),
        });
        await session.step(api.steps.deleteObject({ apiVersion: "v1", kind: "Service", namespace, name }, `create preview service ${namespace}/${name}`), () =>
          kube.request("POST", servicesPath(kube), service).catch((error) => {
            if (api.errors.httpStatus(error) === 409) throw new KtctlError(`service ${namespace}/${name} was created by someone else meanwhile`, ExitCode.conflict);
            throw error;
          }),
        );
        const external = args.external ? await externalAddresses(api, kube, name, lbWaitSeconds * 1000) : [];
        return { shadow, external };
      }).catch(async (error) => {
        await serving?.close();
        return abandon(error);
      });
      connectBack?.attach(shadow);

      const endpointsReady = api.waits.forEndpoints(kube, name, api.waits.exactly(() => [shadow.podIP]), { timeoutMs: ENDPOINTS_WAIT_MS });
      if (!(await Promise.race([endpointsReady, stop.received.then(() => true)]))) {
        api.logger.warn(`the endpoints of ${name} do not show the shadow yet`);
      }
      for (const m of mappings) api.logger.success(`${name}.${namespace}:${m.remote} in the cluster -> ${localHost}:${m.local} on this machine`);
      if (external.length) api.logger.success(`from outside the cluster: ${external.join(", ")}`);
      if (connectBack) {
        api.logger.success(`the local process reaches the cluster through the proxy on ${connectBack.proxy.host}:${connectBack.proxy.port}:`);
        for (const line of connectBack.instructions) api.logger.log(`  ${line}`);
      }
      api.logger.info(`preview ${namespace}/${name} is up (session ${session.id}); Ctrl-C removes it`);

      const reason = await Promise.race([session.ended, stop.received.then((s) => `signal ${s}`), api.serving.tunnelClosed(shadow)]);
      await connectBack?.close();
      await session.close(reason);
      await serving!.close();
      api.logger.success(`preview service ${namespace}/${name} removed (${reason}); the laptop served ${serving!.connections()} connection(s) from the cluster`);
      api.serving.exitForSignal(stop);
    },
  });

export default preview;
