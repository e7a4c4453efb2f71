// The spring-cloud plugin's pure parts: the property sources as Spring Cloud Kubernetes builds them,
// the environment spring run gives the app, the session kubeconfig, and its flags.

import { describe, expect, test } from "bun:test";
import { KubeConfig } from "@kubernetes/client-node";
import { formatApplicationYaml, parseProperties, parseYamlProperties, processEntries, profilesAccept, resolveSources } from "../../plugins/spring-cloud/property-sources.ts";
import { globalFlags, parseRunOptions } from "../../plugins/spring-cloud/run-options.ts";
import { sessionKubeconfig } from "../../plugins/spring-cloud/session-kubeconfig.ts";
import { nonProxyHosts, springEnvironment, workloadEnvironment } from "../../plugins/spring-cloud/spring-env.ts";
import { ExitCode, KtctlError } from "../../core/errors.ts";
import { parsePorts } from "../../core/ports.ts";
import type { PluginApi } from "../../core/plugin-api.ts";

const api = { errors: { KtctlError, ExitCode }, parsePorts } as unknown as PluginApi;

describe("property sources (Spring Cloud Kubernetes rules)", () => {
  test("APP then APP-PROFILE; a ConfigMap wins over a Secret; profile documents count when active", () => {
    const resolved = resolveSources({
      app: "orders",
      profiles: ["dev"],
      configMaps: {
        orders: { "application.yaml": "a: base\nb: base\nlist: [x, y]\n---\nspring.config.activate.on-profile: dev\nb: dev-doc\n---\nspring.config.activate.on-profile: prod\nc: prod\n" },
        "orders-dev": { a: "from-dev-map", shared: "map" },
      },
      secrets: { orders: { password: "p", shared: "secret" } },
    });
    const values = Object.fromEntries([...resolved.properties].map(([k, v]) => [k, v.value]));
    expect(values).toMatchObject({ a: "from-dev-map", b: "dev-doc", "list[0]": "x", "list[1]": "y", password: "p", shared: "map" });
    expect(values.c).toBeUndefined();
    expect(resolved.properties.get("password")!.origin).toEqual({ kind: "secret", name: "orders", entry: "password" });
    expect(resolved.lookedFor).toEqual([
      { kind: "configmap", name: "orders", found: true },
      { kind: "configmap", name: "orders-dev", found: true },
      { kind: "secret", name: "orders", found: true },
      { kind: "secret", name: "orders-dev", found: false },
    ]);
  });

  test("several entries: only APP.ext and APP-PROFILE.ext files count, in that order, then plain keys", () => {
    const skipped: string[] = [];
    const entries = processEntries(
      { "orders-dev.properties": "k=dev", "orders.yaml": "k: base\nm: base", "other.yaml": "k: other", plain: "p" },
      "orders",
      ["dev"],
      (e) => skipped.push(e),
    );
    expect(Object.fromEntries(entries.map(([k, v]) => [k, v]))).toEqual({ k: "dev", m: "base", plain: "p" });
    expect(skipped).toEqual(["other.yaml"]);
    // one entry: a file whatever its name
    expect(processEntries({ "anything.properties": "x=1" }, "orders", [])).toEqual([["x", "1", "anything.properties"]]);
  });

  test("YAML values stay as written; properties files with escapes and continuations", () => {
    expect(Object.fromEntries(parseYamlProperties("v: 1.0\nt: true\ne:\nm: { a: 1 }", []))).toEqual({ v: "1.0", t: "true", e: "", "m.a": "1" });
    expect(Object.fromEntries(parseProperties("# c\n! c\na=1\nb : two\nc three\nlong=x\\\n  y\nu=\\u0041\\t"))).toEqual({ a: "1", b: "two", c: "three", long: "xy", u: "A\t" });
  });

  test("profile expressions", () => {
    expect(profilesAccept("dev", ["dev"])).toBe(true);
    expect(profilesAccept("!prod", ["dev"])).toBe(true);
    expect(profilesAccept("prod, dev", ["dev"])).toBe(true);
    expect(profilesAccept("(dev | test) & eu", ["dev"])).toBe(false);
    expect(profilesAccept("(dev | test) & eu", ["test", "eu"])).toBe(true);
  });

  test("application-ktctl.yaml: secrets left out and named unless asked for", () => {
    const resolved = resolveSources({ app: "a", profiles: [], configMaps: { a: { x: "1" } }, secrets: { a: { pw: "s" } } });
    const text = formatApplicationYaml(resolved, ["header"], { secrets: false });
    expect(text).toContain('"x": "1"');
    expect(text).not.toContain('"s"');
    expect(text).toContain("#   pw: from secret a (left out; --secrets writes it)");
    expect(formatApplicationYaml(resolved, [], { secrets: true })).toContain('"pw": "s"');
  });
});

describe("spring run's environment", () => {
  const base = { namespace: "shop", kubeconfigPath: "/tmp/k", direct: ["10.0.0.1"] };
  test("the platform forced on, the namespace for config and discovery, app and profiles", () => {
    expect(springEnvironment({ ...base, mode: "system", app: "orders", profile: "dev" })).toEqual({
      KUBECONFIG: "/tmp/k",
      SPRING_MAIN_CLOUDPLATFORM: "KUBERNETES",
      SPRING_CLOUD_KUBERNETES_ENABLED: "true",
      SPRING_CLOUD_KUBERNETES_CLIENT_NAMESPACE: "shop",
      KUBERNETES_NAMESPACE: "shop",
      SPRING_APPLICATION_NAME: "orders",
      SPRING_PROFILES_ACTIVE: "dev",
    });
  });
  test("hosts mode: the load balancer by service name", () => {
    expect(springEnvironment({ ...base, mode: "hosts" }).SPRING_CLOUD_KUBERNETES_LOADBALANCER_MODE).toBe("SERVICE");
  });
  test("proxy mode: the JVM through the proxy except loopback and the API server; the user's JAVA_TOOL_OPTIONS kept", () => {
    const env = springEnvironment({
      ...base,
      mode: "proxy",
      javaToolOptions: "-Xmx1g",
      proxy: { host: "127.0.0.1", port: 5000, env: { HTTP_PROXY: "http://127.0.0.1:5000", NO_PROXY: "localhost" }, jvmFlags: ["-DsocksProxyHost=127.0.0.1"] },
    });
    expect(env.JAVA_TOOL_OPTIONS).toBe("-Xmx1g -DsocksProxyHost=127.0.0.1 -Dhttp.nonProxyHosts=localhost|127.*|[::1]|10.0.0.1 -DsocksNonProxyHosts=localhost|127.*|[::1]|10.0.0.1");
    expect(env.NO_PROXY).toBe("localhost,10.0.0.1");
    expect(env.HTTP_PROXY).toBe("http://127.0.0.1:5000");
    expect(nonProxyHosts(["localhost"])).toBe("localhost|127.*|[::1]");
  });
  test("the workload's environment without the pod's own KUBERNETES_* service variables", () => {
    expect(workloadEnvironment({ KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_PORT: "tcp://x", DB: "db" })).toEqual({ DB: "db" });
  });
});

describe("spring run's flags", () => {
  const parse = (args: Record<string, unknown>, raw: string[], isRoot = true) => parseRunOptions(api, args, raw, { platform: "linux", isRoot });
  const usage = (fn: () => unknown, message: RegExp) => {
    try {
      fn();
    } catch (error) {
      expect((error as KtctlError).exitCode).toBe(ExitCode.usage);
      expect((error as Error).message).toMatch(message);
      return;
    }
    throw new Error("no error");
  };
  test("COMMAND after --; the mode by default as connect chooses", () => {
    expect(parse({}, ["--app", "a", "--", "java", "-jar", "x.jar"])).toMatchObject({ mode: "system", command: ["java", "-jar", "x.jar"] });
    expect(parse({}, ["--", "x"], false).mode).toBe("proxy");
    expect(parse({ expose: "8080:80", exchange: "orders" }, ["--", "x"])).toMatchObject({ expose: 8080, exposeRemote: 80 });
  });
  test("refusals", () => {
    usage(() => parse({}, []), /COMMAND missing/);
    usage(() => parse({ mode: "vpn" }, ["--", "x"]), /invalid --mode "vpn"/);
    usage(() => parse({ exchange: "a", mesh: "b" }, ["--", "x"]), /cannot be combined/);
    usage(() => parse({ versionMark: "v1" }, ["--", "x"]), /--versionMark goes with --mesh/);
    usage(() => parse({ app: "Bad_Name" }, ["--", "x"]), /invalid --app/);
  });
  test("global flags go to the child sessions", () => {
    expect(globalFlags({ namespace: "shop", kubeconfig: "/k", debug: false, podCreationTimeout: 60 })).toEqual(["--namespace", "shop", "--kubeconfig", "/k", "--podCreationTimeout", "60"]);
  });
});

test("the session kubeconfig: one context, current, with ktctl's namespace", () => {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "c1", server: "https://a:6443", skipTLSVerify: false }, { name: "c2", server: "https://b:6443" }],
    users: [{ name: "u1", token: "t" }, { name: "u2", token: "t2" }],
    contexts: [{ name: "one", cluster: "c1", user: "u1" }, { name: "two", cluster: "c2", user: "u2", namespace: "other" }],
    currentContext: "two",
  });
  const doc = sessionKubeconfig({ kc, context: "one" }, "shop") as any;
  expect(doc["current-context"]).toBe("one");
  expect(doc.contexts).toEqual([{ name: "one", context: { cluster: "c1", user: "u1", namespace: "shop" } }]);
  expect(doc.clusters.map((c: any) => c.name)).toEqual(["c1"]);
  expect(doc.users).toEqual([{ name: "u1", user: { token: "t" } }]);
});
