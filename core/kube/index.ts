// Kube access for ktctl: kubeconfig resolved as kubectl resolves it, client-node's typed APIs and raw
// requests over Bun's fetch (the only HTTPS path that honours the kubeconfig's TLS under Bun and in a
// compiled binary), watches, and port-forward streams.

import type { RequestContext, ResponseContext } from "@kubernetes/client-node";
import type { Kube } from "../plugin-api.ts";
import { clientNode, loadKubeconfig, type KubeconfigOptions } from "./kubeconfig.ts";
import { getOrUndefined, mergePatch, objectPath } from "./objects.ts";
import { createPodStreams } from "./pod-streams.ts";
import { openPortForward } from "./portforward.ts";
import { createTransport, requestJson, type Transport } from "./transport.ts";
import { watchCollection } from "./watch.ts";

export { KubeApiError, describeRequest, toKtctlError } from "./errors.ts";
export { loadKubeconfig, type KubeconfigOptions, type ResolvedKubeconfig } from "./kubeconfig.ts";
export { waitForObject, waitForPod, imageFailure, isPodReady, podSummary, type WaitOptions, type ObjectWaitOptions } from "./wait.ts";

/** Resolves kubeconfig, context and namespace like kubectl and returns a client bound to them. */
export async function connectKube(opts: KubeconfigOptions): Promise<Kube> {
  const resolved = loadKubeconfig(opts);
  const { context, namespace, server } = resolved;
  const transport = createTransport(resolved);
  const request: Kube["request"] = (method, path, body, contentType) => requestJson(transport, method, path, body, contentType);
  // client-node's typed APIs, for plugins that want them: client-node loads on first use.
  let typed: Pick<Kube, "core" | "apps" | "coordination"> | undefined;
  const typedApis = () => {
    if (typed) return typed;
    const client = clientNode();
    const configuration = client.createConfiguration({
      baseServer: new client.ServerConfiguration(server, {}),
      httpApi: client.wrapHttpLibrary({ send: (request) => sendTyped(client, transport, request) }),
      authMethods: {},
    });
    return (typed = { core: new client.CoreV1Api(configuration), apps: new client.AppsV1Api(configuration), coordination: new client.CoordinationV1Api(configuration) });
  };
  return {
    get kc() {
      return resolved.kc;
    },
    context,
    namespace,
    server,
    get core() {
      return typedApis().core;
    },
    get apps() {
      return typedApis().apps;
    },
    get coordination() {
      return typedApis().coordination;
    },
    request,
    watch: (path, query, onEvent, signal) => watchCollection(transport, path, query, onEvent, signal),
    portForward: (ns, pod, port) => openPortForward(transport, ns, pod, port),
    podStreams: () => createPodStreams(transport),
    get: (path) => getOrUndefined({ request }, path),
    mergePatch: (path, patch) => mergePatch({ request }, path, patch),
    pathOf: (ref) => objectPath({ request }, ref),
  };
}

/** client-node's typed APIs call this instead of undici; failures arrive as KtctlErrors. */
async function sendTyped(client: typeof import("@kubernetes/client-node"), transport: Transport, request: RequestContext): Promise<ResponseContext> {
  const response = await transport.fetch(request.getUrl(), {
    method: request.getHttpMethod(),
    headers: request.getHeaders(),
    body: request.getBody() as RequestInit["body"],
    signal: request.getSignal(),
  });
  const data = Buffer.from(await response.arrayBuffer());
  const headers: Record<string, string> = {};
  response.headers.forEach((value, name) => (headers[name] = value));
  return new client.ResponseContext(response.status, headers, {
    text: async () => data.toString("utf8"),
    binary: async () => data,
    stream: () => null,
  });
}
