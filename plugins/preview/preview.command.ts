// `ktctl preview NAME --expose LOCAL[:REMOTE][,...]`: a new Service NAME in the namespace, backed by
// the session's shadow and served by this machine. `--external` makes it a LoadBalancer, or a
// NodePort where no load balancer answers. The Service is a journaled step: it goes with the session.

import type { CommandFactory, Kube, PluginApi } from "../../core/plugin-api.ts";
import { errorText, exitForSignal, listenForStop, setUp, startModeSession, startServingShadow, tunnelClosed, type ServingShadow } from "../exchange/lifecycle.ts";
import { startConnectBack } from "../exchange/connect-back.ts";
import { requireLocalListeners } from "../exchange/local.ts";
import { ensureNotHeld } from "../exchange/ownership.ts";
import { deleteObjectStep, isCreatedByKtctl, shadowSelector } from "../exchange/scheme.ts";
import { exactly, waitForEndpoints, waitForLoadBalancer } from "../exchange/waits.ts";
import { formatAddress, nodeAddresses, previewService } from "./service.ts";

const ENDPOINTS_WAIT_MS = 30_000;
const MERGE_PATCH = "application/merge-patch+json";
const DNS_LABEL = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;

const statusOf = (error: any): number | undefined => {
  for (const v of [error?.status, error?.statusCode, error?.response?.status]) if (typeof v === "number") return v;
  return undefined;
};

async function getService(kube: Kube, namespace: string, name: string): Promise<any | undefined> {
  try {
    return await kube.request<any>("GET", `/api/v1/namespaces/${encodeURIComponent(namespace)}/services/${encodeURIComponent(name)}`);
  } catch (error) {
    if (statusOf(error) === 404) return undefined;
    throw error;
  }
}

/** Refuses a name taken by a service ktctl did not make; a dead session's preview is cleaned first. */
async function claimName(api: PluginApi, kube: Kube, namespace: string, name: string): Promise<void> {
  const { KtctlError, ExitCode } = api.errors;
  const existing = await getService(kube, namespace, name);
  if (!existing) return;
  if (!isCreatedByKtctl(existing)) {
    throw new KtctlError(`service ${namespace}/${name} already exists and was not created by ktctl; preview will not replace it`, ExitCode.conflict, "choose another name, or use exchange to take that service over");
  }
  await ensureNotHeld(api, kube, namespace, [existing]);
  if (await getService(kube, namespace, name)) {
    throw new KtctlError(`service ${namespace}/${name} is still there after cleaning the session that made it`, ExitCode.conflict, "run ktctl clean and try again");
  }
}

/** LoadBalancer address, or a switch to NodePort and the nodes' addresses when none appears in time. */
async function externalAddresses(api: PluginApi, kube: Kube, namespace: string, name: string, waitMs: number): Promise<string[]> {
  const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/services/${encodeURIComponent(name)}`;
  const ingress = await waitForLoadBalancer(kube, namespace, name, waitMs);
  const service = await kube.request<any>("GET", path);
  const ports: any[] = service.spec?.ports ?? [];
  if (ingress) return ports.map((p) => formatAddress(ingress, p.port));
  api.logger.info(`no load balancer answered within ${Math.round(waitMs / 1000)}s; switching service ${name} to NodePort`);
  // Ours (created by this session, deleted by its undo): a plain patch, no step of its own.
  const patched = await kube.request<any>("PATCH", path, { spec: { type: "NodePort" } }, MERGE_PATCH);
  let hosts: string[] = [];
  try {
    hosts = nodeAddresses((await kube.request<any>("GET", "/api/v1/nodes")).items ?? []);
  } catch (error) {
    api.logger.debug(`cannot list nodes: ${errorText(error)}`);
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
      const namespace = global.namespace || kube.namespace;
      const connectBack = args.connect ? await startConnectBack(api, proxyPort) : undefined;
      const abandon = async (error: unknown) => {
        connectBack?.fail(error);
        await connectBack?.close();
        throw error;
      };
      const session = await (async () => {
        await requireLocalListeners(api, localHost, mappings.map((m) => m.local), { enabled: Boolean(args.waitLocal), seconds: waitLocalSeconds, flag: "--waitLocal" });
        await claimName(api, kube, namespace, name);
        return startModeSession(api, { kube, mode: "preview", target: `svc/${name}`, global });
      })().catch(abandon);
      const stop = listenForStop(api.logger);
      const role = `preview-${name}`;
      let serving: ServingShadow | undefined;
      const { shadow, external } = await setUp(session, stop, api.logger, async () => {
        serving = await startServingShadow(api, session, {
          role,
          ports: mappings.map((m) => ({ shadowPort: m.remote, localPort: m.local })),
          localHost,
        });
        const shadow = serving.shadow;
        const service = previewService({
          name,
          namespace,
          labels: session.labels,
          selector: shadowSelector(session.id, role),
          ports: mappings.map((m) => m.remote),
          external: Boolean(args.external),
        });
        await session.step(deleteObjectStep({ apiVersion: "v1", kind: "Service", namespace, name }, `create preview service ${namespace}/${name}`), () =>
          kube.request("POST", `/api/v1/namespaces/${encodeURIComponent(namespace)}/services`, service).catch((error) => {
            if (statusOf(error) === 409) throw new KtctlError(`service ${namespace}/${name} was created by someone else meanwhile`, ExitCode.conflict);
            throw error;
          }),
        );
        const external = args.external ? await externalAddresses(api, kube, namespace, name, lbWaitSeconds * 1000) : [];
        return { shadow, external };
      }).catch(async (error) => {
        await serving?.close();
        return abandon(error);
      });
      connectBack?.attach(shadow);

      const endpointsReady = waitForEndpoints(kube, namespace, name, exactly(() => [shadow.podIP]), ENDPOINTS_WAIT_MS);
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

      const reason = await Promise.race([session.ended, stop.received.then((s) => `signal ${s}`), tunnelClosed(shadow)]);
      await connectBack?.close();
      await session.close(reason);
      await serving!.close();
      api.logger.success(`preview service ${namespace}/${name} removed (${reason}); the laptop served ${serving!.connections()} connection(s) from the cluster`);
      exitForSignal(stop);
    },
  });

export default preview;
