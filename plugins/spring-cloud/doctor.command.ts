// `ktctl spring doctor [--app NAME] [--mode M] [--proxy HOST:PORT]`: checks each piece a Spring Cloud
// Kubernetes app on this machine needs and prints every missing one with its fix. Exit code non-zero
// when something is missing (forbidden: RBAC; notFound: the app's configuration; unreachable: the API
// server, names or pod IPs).

import { lookup } from "node:dns/promises";
import { connect } from "node:net";
import type { CommandFactory, Kube, PluginApi } from "../../core/plugin-api.ts";
import { describeLookup, foundAny, readClusterSources } from "./cluster-sources.ts";
import { SPRING_MODES, type SpringMode } from "./spring-env.ts";

/** What discovery (services, endpoints or slices, pods) and config (ConfigMaps, Secrets) read. */
export const SPRING_ACCESS: { group: string; resource: string; verbs: string[]; why: string }[] = [
  { group: "", resource: "services", verbs: ["get", "list", "watch"], why: "DiscoveryClient" },
  { group: "", resource: "endpoints", verbs: ["get", "list", "watch"], why: "DiscoveryClient (pod IPs)" },
  { group: "discovery.k8s.io", resource: "endpointslices", verbs: ["get", "list", "watch"], why: "DiscoveryClient with endpoint slices" },
  { group: "", resource: "pods", verbs: ["get", "list"], why: "DiscoveryClient (instance metadata)" },
  { group: "", resource: "configmaps", verbs: ["get", "list"], why: "config from ConfigMaps" },
  { group: "", resource: "secrets", verbs: ["get", "list"], why: "config from Secrets" },
];

interface Finding {
  ok: boolean;
  what: string;
  fix?: string;
  exit?: number;
}

const doctor: CommandFactory = (api) =>
  api.defineCommand({
    meta: { name: "doctor", description: "Check what a Spring Cloud Kubernetes app needs here: API, RBAC, its config, names and pod IPs" },
    args: {
      ...api.globalArgs,
      app: { type: "string", valueHint: "name", description: "Also check the app's ConfigMaps/Secrets" },
      profile: { type: "string", valueHint: "p1,p2", description: "With --app: the active profiles" },
      mode: { type: "string", valueHint: SPRING_MODES.join("|"), description: "How the app will reach the cluster (default: as spring run)" },
      proxy: { type: "string", valueHint: "host:port", description: "Proxy mode: a running ktctl proxy to check names and pod IPs through" },
    },
    async run({ args }) {
      const { KtctlError, ExitCode } = api.errors;
      const mode = String(args.mode ?? (process.platform === "linux" && process.getuid?.() === 0 ? "system" : "proxy")) as SpringMode;
      if (!SPRING_MODES.includes(mode)) throw new KtctlError(`invalid --mode "${mode}": expected ${SPRING_MODES.join(", ")}`, ExitCode.usage);
      const global = api.globalOptions(args as Record<string, unknown>);
      const kube = await api.kube(global);
      const namespace = kube.namespace; // settled once, from -n or the context
      const findings: Finding[] = [];
      const report = (f: Finding) => {
        findings.push(f);
        process.stdout.write(`${f.ok ? "ok     " : "MISSING"} ${f.what}\n${f.fix ? `        fix: ${f.fix}\n` : ""}`);
      };

      const version = await kube.request<{ gitVersion?: string }>("GET", "/version").catch((error) => error as Error);
      if (version instanceof Error) {
        report({ ok: false, what: `API server ${kube.server} not reachable with context ${kube.context}: ${api.errors.text(version)}`, fix: "check --kubeconfig/--context, VPN and credentials (kubectl version answers when this does)", exit: ExitCode.unreachable });
      } else {
        report({ ok: true, what: `API server ${kube.server} reachable (${version.gitVersion ?? "?"}), context ${kube.context}, namespace ${namespace}` });
        const user = await whoAmI(kube);
        const missing: string[] = [];
        for (const access of SPRING_ACCESS) {
          const denied: string[] = [];
          for (const verb of access.verbs) if (!(await allowed(kube, namespace, access.group, access.resource, verb))) denied.push(verb);
          const what = `${access.verbs.join(",")} ${access.resource}${access.group ? `.${access.group}` : ""} in ${namespace} (${access.why})`;
          if (denied.length) missing.push(access.resource + (access.group ? `.${access.group}` : ""));
          report(denied.length ? { ok: false, what: `not allowed: ${denied.join(",")} ${access.resource}${access.group ? `.${access.group}` : ""} in ${namespace} (${access.why})`, exit: ExitCode.forbidden } : { ok: true, what: `allowed: ${what}` });
        }
        if (missing.length) {
          const subject = user ? `--user=${user}` : "--user=YOU (or --serviceaccount=NS:NAME)";
          findings.push({ ok: false, what: "rbac", exit: ExitCode.forbidden });
          process.stdout.write(
            `        fix: kubectl -n ${namespace} create role spring-cloud-kubernetes --verb=get,list,watch --resource=services,endpoints,endpointslices.discovery.k8s.io,pods,configmaps,secrets\n` +
              `             kubectl -n ${namespace} create rolebinding spring-cloud-kubernetes --role=spring-cloud-kubernetes ${subject}\n`,
          );
        }
        if (args.app) {
          const profiles = args.profile ? String(args.profile).split(",").map((p) => p.trim()).filter(Boolean) : [];
          const sources = await readClusterSources(api, kube, namespace, String(args.app), profiles).catch((error) => error as Error);
          if (sources instanceof Error) report({ ok: false, what: `cannot read the configuration of ${args.app}: ${api.errors.text(sources)}`, exit: ExitCode.forbidden });
          else if (!foundAny(sources)) report({ ok: false, what: `no configuration for app "${args.app}": looked for ${describeLookup(sources)}`, fix: "--app is spring.application.name; check the name and the namespace", exit: ExitCode.notFound });
          else report({ ok: true, what: `configuration of ${args.app}: ${sources.lookedFor.filter((l) => l.found).map((l) => `${l.kind} ${l.name}`).join(", ")}` });
        }
        for (const f of await reachability(api, kube, namespace, mode, args.proxy ? String(args.proxy) : undefined)) report(f);
      }
      const failed = findings.filter((f) => !f.ok);
      if (failed.length) {
        throw new KtctlError(`spring doctor: ${failed.filter((f) => f.what !== "rbac").length} missing piece(s) in namespace ${namespace}`, failed[0]!.exit ?? ExitCode.failure);
      }
      api.logger.success(`everything a Spring Cloud Kubernetes app needs is there (${mode} mode)`);
    },
  });

export default doctor;

async function allowed(kube: Kube, namespace: string, group: string, resource: string, verb: string): Promise<boolean> {
  const review = await kube.request<any>("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
    apiVersion: "authorization.k8s.io/v1",
    kind: "SelfSubjectAccessReview",
    spec: { resourceAttributes: { namespace, group, resource, verb } },
  });
  return Boolean(review?.status?.allowed);
}

async function whoAmI(kube: Kube): Promise<string | undefined> {
  try {
    const review = await kube.request<any>("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" });
    return review?.status?.userInfo?.username;
  } catch {
    return undefined;
  }
}

/** One service with a ready pod: its name must resolve and its pod IP answer, as the app will ask. */
async function reachability(api: PluginApi, kube: Kube, namespace: string, mode: SpringMode, proxy: string | undefined): Promise<Finding[]> {
  const slices = await kube.request<any>("GET", `/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/endpointslices`).catch(() => undefined);
  const slice = (slices?.items ?? []).find((s: any) => s.metadata?.labels?.["kubernetes.io/service-name"] && s.ports?.[0]?.port && s.endpoints?.some((e: any) => e.conditions?.ready !== false));
  if (!slice) return [{ ok: true, what: `no service with a ready pod in ${namespace}: names and pod IPs not checked` }];
  const service = slice.metadata.labels["kubernetes.io/service-name"] as string;
  const podIp = slice.endpoints.find((e: any) => e.conditions?.ready !== false).addresses[0] as string;
  const port = slice.ports[0].port as number;
  const connectFix = `ktctl spring run connects for you; or keep "ktctl connect --mode ${mode}" running`;
  const findings: Finding[] = [];
  const name = mode === "hosts" ? `${service}.${namespace}.svc.cluster.local` : `${service}.${namespace}`;
  if (mode === "proxy") {
    if (!proxy) return [{ ok: true, what: `proxy mode: names and pod IPs go through ktctl's proxy, which spring run starts (--proxy HOST:PORT checks a running one)` }];
    for (const target of [`${name}:${port}`, `${podIp}:${port}`]) {
      const ok = await throughProxy(proxy, target);
      findings.push(ok ? { ok: true, what: `${target} reachable through the proxy ${proxy}` } : { ok: false, what: `${target} not reachable through the proxy ${proxy}`, fix: connectFix, exit: api.errors.ExitCode.unreachable });
    }
    return findings;
  }
  const resolved = await lookup(name).then((r) => r.address, () => undefined);
  findings.push(resolved ? { ok: true, what: `name ${name} resolves (${resolved})` } : { ok: false, what: `name ${name} does not resolve on this machine`, fix: connectFix, exit: api.errors.ExitCode.unreachable });
  if (mode === "system") {
    const ok = await tcpAnswers(podIp, port);
    findings.push(ok ? { ok: true, what: `pod IP ${podIp}:${port} (service ${service}) answers` } : { ok: false, what: `pod IP ${podIp}:${port} (service ${service}) does not answer from this machine`, fix: connectFix, exit: api.errors.ExitCode.unreachable });
  } else {
    findings.push({ ok: true, what: "hosts mode: pod IPs are not used (the load balancer is set to service names)" });
  }
  return findings;
}

function tcpAnswers(host: string, port: number, timeoutMs = 3000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: timeoutMs });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once("connect", () => done(true));
    socket.once("timeout", () => done(false));
    socket.once("error", () => done(false));
  });
}

/** An HTTP CONNECT through the proxy: a 200 means the proxy reached the target. */
function throughProxy(proxy: string, target: string, timeoutMs = 5000): Promise<boolean> {
  const [host, port] = [proxy.slice(0, proxy.lastIndexOf(":")), Number(proxy.slice(proxy.lastIndexOf(":") + 1))];
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: timeoutMs });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once("connect", () => socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
    socket.once("data", (data) => done(/^HTTP\/1\.[01] 200/.test(data.toString("latin1"))));
    socket.once("timeout", () => done(false));
    socket.once("error", () => done(false));
  });
}
