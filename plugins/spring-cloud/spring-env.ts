// What a Spring Cloud Kubernetes app needs in its environment to behave on this machine as in its
// namespace (pure, so every setting is unit-tested). Environment variables, not command-line
// arguments: they reach the JVM whatever COMMAND is (java -jar, mvnw spring-boot:run, gradlew bootRun
// all pass their environment on to the application's JVM).

export type SpringMode = "system" | "proxy" | "hosts";
export const SPRING_MODES: readonly SpringMode[] = ["system", "proxy", "hosts"];

export interface SpringEnvInput {
  namespace: string;
  /** The session kubeconfig (current-context and namespace = ktctl's). */
  kubeconfigPath: string;
  mode: SpringMode;
  app?: string;
  profile?: string;
  /** Proxy mode: ktctl's SOCKS5/HTTP proxy. */
  proxy?: { host: string; port: number; env: Record<string, string>; jvmFlags: string[] };
  /** Host names and addresses the JVM reaches directly, never through the proxy (the API server). */
  direct: string[];
  /** JAVA_TOOL_OPTIONS already set by the user: kept, ours appended. */
  javaToolOptions?: string;
}

/** Java's nonProxyHosts list: loopback (Java's own default, which setting the property replaces) and `direct`. */
export function nonProxyHosts(direct: readonly string[]): string {
  return [...new Set(["localhost", "127.*", "[::1]", ...direct])].join("|");
}

export function springEnvironment(input: SpringEnvInput): Record<string, string> {
  const env: Record<string, string> = {
    // The official Java client and fabric8 both read KUBECONFIG; there is no service-account file
    // outside a pod, so this is where they find the cluster, the credentials and the namespace.
    KUBECONFIG: input.kubeconfigPath,
    // Outside a pod Spring Boot does not detect Kubernetes, and Spring Cloud Kubernetes stays off.
    SPRING_MAIN_CLOUDPLATFORM: "KUBERNETES",
    SPRING_CLOUD_KUBERNETES_ENABLED: "true",
    // Config and discovery read their namespace from here (in a pod: the service-account file).
    SPRING_CLOUD_KUBERNETES_CLIENT_NAMESPACE: input.namespace,
    KUBERNETES_NAMESPACE: input.namespace,
  };
  if (input.app) env.SPRING_APPLICATION_NAME = input.app;
  if (input.profile) env.SPRING_PROFILES_ACTIVE = input.profile;
  // Pod IPs are not reachable from this machine in hosts mode: the load balancer uses the service's
  // name (service.namespace.svc.cluster.local, in the hosts file) instead of each pod.
  if (input.mode === "hosts") env.SPRING_CLOUD_KUBERNETES_LOADBALANCER_MODE = "SERVICE";
  if (input.mode === "proxy" && input.proxy) {
    const direct = nonProxyHosts(input.direct);
    Object.assign(env, input.proxy.env);
    env.NO_PROXY = [...new Set([...(input.proxy.env.NO_PROXY ?? "").split(","), ...input.direct].filter(Boolean))].join(",");
    env.no_proxy = env.NO_PROXY;
    // The JVM ignores *_PROXY variables: system properties send it through the proxy, which carries
    // cluster names and addresses into the cluster and everything else straight out. The API server
    // is reached directly (its client must not depend on the tunnel it helps to build).
    const flags = [...input.proxy.jvmFlags, `-Dhttp.nonProxyHosts=${direct}`, `-DsocksNonProxyHosts=${direct}`];
    env.JAVA_TOOL_OPTIONS = [input.javaToolOptions, ...flags].filter(Boolean).join(" ");
  }
  return env;
}

/** Variables of a pod's environment that describe the pod, not the app: wrong on this machine. */
const POD_ONLY = /^(KUBERNETES_SERVICE_|KUBERNETES_PORT)/;

/** The workload's environment (exchange/mesh) without what only makes sense inside the pod. */
export function workloadEnvironment(vars: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(vars).filter(([key]) => !POD_ONLY.test(key)));
}
