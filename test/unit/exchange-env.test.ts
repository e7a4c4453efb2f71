import { describe, expect, test } from "bun:test";
import { buildEnvironment, dotenvValue, expandReferences, formatEnvFile, parseQuantity, pickContainer, serviceLinkVariables, serviceVariables } from "../../plugins/exchange/env.ts";

const b64 = (text: string) => Buffer.from(text).toString("base64");

const service = (namespace: string, name: string, clusterIP: string, ports: any[]) => ({ metadata: { name, namespace }, spec: { clusterIP, ports } });
const kubernetes = service("default", "kubernetes", "10.96.0.1", [{ name: "https", port: 443, protocol: "TCP" }]);
const echo = service("demo", "echo", "10.96.1.2", [
  { name: "http", port: 80, protocol: "TCP" },
  { name: "tcp", port: 9090, protocol: "TCP" },
]);

describe("service links", () => {
  test("the variables the kubelet injects for a service", () => {
    expect(Object.fromEntries(serviceVariables(echo))).toEqual({
      ECHO_SERVICE_HOST: "10.96.1.2",
      ECHO_SERVICE_PORT: "80",
      ECHO_SERVICE_PORT_HTTP: "80",
      ECHO_SERVICE_PORT_TCP: "9090",
      ECHO_PORT: "tcp://10.96.1.2:80",
      ECHO_PORT_80_TCP: "tcp://10.96.1.2:80",
      ECHO_PORT_80_TCP_PROTO: "tcp",
      ECHO_PORT_80_TCP_PORT: "80",
      ECHO_PORT_80_TCP_ADDR: "10.96.1.2",
      ECHO_PORT_9090_TCP: "tcp://10.96.1.2:9090",
      ECHO_PORT_9090_TCP_PROTO: "tcp",
      ECHO_PORT_9090_TCP_PORT: "9090",
      ECHO_PORT_9090_TCP_ADDR: "10.96.1.2",
    });
  });

  test("dashes become underscores; headless and other namespaces' services are left out; kubernetes always in", () => {
    const headless = service("demo", "echo-headless", "None", [{ port: 8080 }]);
    const other = service("demo2", "other", "10.96.9.9", [{ port: 80 }]);
    const dashed = service("demo", "my-db", "10.96.3.3", [{ port: 5432, protocol: "TCP" }]);
    const names = serviceLinkVariables([kubernetes, echo, headless, other, dashed], "demo").map(([k]) => k);
    expect(names).toContain("MY_DB_SERVICE_HOST");
    expect(names).toContain("KUBERNETES_SERVICE_HOST");
    expect(names.some((n) => n.startsWith("ECHO_HEADLESS") || n.startsWith("OTHER_"))).toBe(false);
    // enableServiceLinks: false keeps only the master service.
    const off = serviceLinkVariables([kubernetes, echo], "demo", false).map(([k]) => k);
    expect(off.every((n) => n.startsWith("KUBERNETES_"))).toBe(true);
    expect(off.length).toBeGreaterThan(0);
  });
});

describe("environment", () => {
  const pod = {
    metadata: { name: "echo-abc", uid: "u-1", labels: { app: "echo", tier: "backend" }, annotations: { note: 'say "hi"' } },
    spec: { nodeName: "node-1", serviceAccountName: "echo-sa" },
    status: { podIP: "10.244.0.7", podIPs: [{ ip: "10.244.0.7" }], hostIP: "10.200.0.1" },
  };
  const container = {
    name: "echo",
    envFrom: [{ configMapRef: { name: "echo-config" } }, { secretRef: { name: "echo-secret" }, prefix: "S_" }, { configMapRef: { name: "absent", optional: true } }],
    env: [
      { name: "GREETING", value: "hello" },
      { name: "URL", value: "http://$(ECHO_SERVICE_HOST):$(PORT)/$(UNKNOWN)/$$(ESCAPED)" },
      { name: "DB", valueFrom: { configMapKeyRef: { name: "echo-config", key: "DATABASE_URL" } } },
      { name: "PASSWORD", valueFrom: { secretKeyRef: { name: "echo-secret", key: "password" } } },
      { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
      { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
      { name: "POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
      { name: "TIER", valueFrom: { fieldRef: { fieldPath: "metadata.labels['tier']" } } },
      { name: "CPU", valueFrom: { resourceFieldRef: { resource: "limits.cpu" } } },
      { name: "MEM_MI", valueFrom: { resourceFieldRef: { resource: "requests.memory", divisor: "1Mi" } } },
      { name: "MISSING", valueFrom: { configMapKeyRef: { name: "echo-config", key: "nope" } } },
      { name: "OPTIONAL", valueFrom: { secretKeyRef: { name: "gone", key: "x", optional: true } } },
    ],
    resources: { limits: { cpu: "250m" }, requests: { memory: "64Mi" } },
  };
  const input = {
    container,
    pod,
    namespace: "demo",
    configMaps: { "echo-config": { DATABASE_URL: "postgres://db.demo:5432/app", PORT: "8080", "bad key": "x" } },
    secrets: { "echo-secret": { password: b64("s3cr3t\n"), token: b64("t") } },
    services: [kubernetes, echo],
  };

  test("envFrom, env, valueFrom and fieldRefs as the kubelet builds them", () => {
    const { vars, notes } = buildEnvironment(input);
    const env = Object.fromEntries(vars);
    expect(env.DATABASE_URL).toBe("postgres://db.demo:5432/app");
    expect(env.S_password).toBe("s3cr3t\n");
    expect(env.S_token).toBe("t");
    expect(env.GREETING).toBe("hello");
    expect(env.URL).toBe("http://10.96.1.2:8080/$(UNKNOWN)/$(ESCAPED)");
    expect(env.DB).toBe("postgres://db.demo:5432/app");
    expect(env.PASSWORD).toBe("s3cr3t\n");
    expect(env.POD_NAME).toBe("echo-abc");
    expect(env.POD_NAMESPACE).toBe("demo");
    expect(env.POD_IP).toBe("10.244.0.7");
    expect(env.TIER).toBe("backend");
    expect(env.CPU).toBe("1");
    expect(env.MEM_MI).toBe("64");
    expect(env.ECHO_SERVICE_PORT).toBe("80");
    expect(env.KUBERNETES_SERVICE_HOST).toBe("10.96.0.1");
    expect("MISSING" in env).toBe(false);
    expect("OPTIONAL" in env).toBe(false);
    expect("bad key" in env).toBe(false);
    expect(notes).toEqual([
      "bad key from configmap echo-config is not a valid variable name; skipped (as the kubelet does)",
      "MISSING: key nope of configmap echo-config is missing or unreadable",
    ]);
  });

  test("env overrides envFrom and service links; a later definition wins", () => {
    const { vars } = buildEnvironment({
      ...input,
      container: { envFrom: [{ configMapRef: { name: "echo-config" } }], env: [{ name: "PORT", value: "1" }, { name: "ECHO_SERVICE_PORT", value: "2" }, { name: "PORT", value: "3" }] },
    });
    expect(vars.filter(([k]) => k === "PORT")).toEqual([["PORT", "3"]]);
    expect(vars.filter(([k]) => k === "ECHO_SERVICE_PORT")).toEqual([["ECHO_SERVICE_PORT", "2"]]);
  });

  test("without a running pod, pod-only fields are noted, template labels still work", () => {
    const { vars, notes } = buildEnvironment({
      ...input,
      pod: undefined,
      templateMetadata: { labels: { tier: "backend" } },
      container: { env: [{ name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } }, { name: "TIER", valueFrom: { fieldRef: { fieldPath: "metadata.labels['tier']" } } }] },
    });
    expect(Object.fromEntries(vars).TIER).toBe("backend");
    expect(notes).toEqual(["POD_NAME: metadata.name is only known for a running pod (none found)"]);
  });

  test("a missing non-optional envFrom source is noted", () => {
    const { notes } = buildEnvironment({ ...input, container: { envFrom: [{ secretRef: { name: "nope" } }] } });
    expect(notes).toEqual(["secret nope (envFrom) is missing or unreadable: its keys are not set"]);
  });
});

describe("$(VAR) expansion", () => {
  const lookup = (name: string) => ({ A: "1", B: "two" })[name];
  test.each([
    ["$(A)-$(B)", "1-two"],
    ["$$(A)", "$(A)"],
    ["$(C)", "$(C)"],
    ["$(A", "$(A"],
    ["cost $5", "cost $5"],
    ["end$", "end$"],
    ["$$$(A)", "$1"],
  ])("%p -> %p", (input, output) => expect(expandReferences(input, lookup)).toBe(output));
});

describe("quantities", () => {
  test.each([
    ["250m", 0.25],
    ["2", 2],
    ["1Gi", 2 ** 30],
    ["64Mi", 64 * 2 ** 20],
    ["1k", 1000],
    ["1e3", 1000],
    ["abc", undefined],
  ])("%p", (text, value) => expect(parseQuantity(text)).toBe(value as number | undefined));
});

describe("the file", () => {
  test("dotenv: plain values bare, others double-quoted with escapes; notes as comments", () => {
    expect(dotenvValue("postgres://db:5432/app?x=1")).toBe('"postgres://db:5432/app?x=1"');
    expect(dotenvValue("abc-1.2_x:/@")).toBe("abc-1.2_x:/@");
    expect(dotenvValue('a "b"\n$c\\')).toBe('"a \\"b\\"\\n\\$c\\\\"');
    const text = formatEnvFile({ vars: [["A", "1"], ["B", "x y"]], notes: ["X: not known"] }, "dotenv", "env of svc/echo");
    expect(text).toBe('# env of svc/echo\n# not set: X: not known\nA=1\nB="x y"\n');
  });

  test("json", () => {
    expect(JSON.parse(formatEnvFile({ vars: [["A", "1"], ["B", "x\ny"]], notes: [] }, "json", "h"))).toEqual({ A: "1", B: "x\ny" });
  });

  test("the container: by name, else the one serving the exposed ports, else the first", () => {
    const containers = [{ name: "sidecar", ports: [{ containerPort: 15000 }] }, { name: "app", ports: [{ containerPort: 8080 }] }];
    expect(pickContainer(containers, "sidecar", [8080])!.name).toBe("sidecar");
    expect(pickContainer(containers, undefined, [8080])!.name).toBe("app");
    expect(pickContainer(containers, undefined, [1])!.name).toBe("sidecar");
    expect(pickContainer(containers, "nope", [8080])).toBeUndefined();
  });
});
