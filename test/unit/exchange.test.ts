import { describe, expect, test } from "bun:test";
import { ExitCode, KtctlError } from "../../core/errors.ts";
import { replaceSelectorPatch } from "../../plugins/exchange/exchange.command.ts";
import { describeHolder, formatAge } from "../../core/serving/ownership.ts";
import { PortPlanError, planShadowPorts, resolveTargetPort, shadowContainerPorts, type ServiceSpec } from "../../plugins/exchange/ports.ts";
import { originalSelector } from "../../plugins/exchange/recover.command.ts";
import { SCHEME } from "../../core/plugins/scheme-api.ts";
import { LABEL_ROLE, LABEL_SESSION, shadowSelector } from "../../core/session/labels.ts";
import { patchObjectStep } from "../../core/session/steps.ts";
import { podTemplateLabels, selects } from "../../plugins/exchange/target.ts";
import { readyEndpoints, rolloutProgress } from "../../core/kube/collection-waits.ts";
import { nodeAddresses, previewService } from "../../plugins/preview/service.ts";

const errors = { KtctlError, ExitCode };

// The demo service of the test cluster: a named targetPort, a numeric one, another named one.
const echo: ServiceSpec = {
  name: "echo",
  ports: [
    { name: "http", port: 80, targetPort: "http" },
    { name: "http-alt", port: 8081, targetPort: 8081 },
    { name: "tcp", port: 9090, targetPort: "tcp" },
  ],
};
const echoPods = [
  { name: "http", containerPort: 8080 },
  { name: "http-alt", containerPort: 8081 },
  { name: "tcp", containerPort: 9090 },
];

describe("shadow port plan", () => {
  test("a named targetPort becomes a shadow container port of the same name and number", () => {
    const plan = planShadowPorts([echo], [{ local: 18080, remote: 80 }], echoPods);
    expect(plan.listeners).toEqual([{ shadowPort: 8080, name: "http", localPort: 18080, serves: ["echo:80"] }]);
    expect(shadowContainerPorts(plan)).toEqual([{ name: "http", port: 8080 }]);
    expect(plan.unexposed).toEqual(["echo:8081", "echo:9090"]);
  });

  test("several ports at once, numeric and named", () => {
    const plan = planShadowPorts([echo], [{ local: 18080, remote: 80 }, { local: 18081, remote: 8081 }, { local: 19090, remote: 9090 }], echoPods);
    expect(plan.listeners.map((l) => [l.shadowPort, l.name, l.localPort])).toEqual([
      [8080, "http", 18080],
      [8081, undefined, 18081],
      [9090, "tcp", 19090],
    ]);
    expect(plan.unexposed).toEqual([]);
  });

  test("a named targetPort no pod declares keeps its name on the service port's number", () => {
    const plan = planShadowPorts([echo], [{ local: 3000, remote: 80 }], []);
    expect(plan.listeners).toEqual([{ shadowPort: 80, name: "http", localPort: 3000, serves: ["echo:80"] }]);
  });

  test("a REMOTE the service does not serve is refused, listing the ports it serves", () => {
    let error: PortPlanError | undefined;
    try {
      planShadowPorts([echo], [{ local: 8080, remote: 8080 }], echoPods);
    } catch (e) {
      error = e as PortPlanError;
    }
    expect(error).toBeInstanceOf(PortPlanError);
    expect(error!.message).toBe("service echo has no port 8080");
    expect(error!.hint).toBe("ports served: echo: 80 (http -> http), 8081 (http-alt), 9090 (tcp -> tcp)");
  });

  test("UDP ports are refused: the tunnel carries TCP", () => {
    const dns: ServiceSpec = { name: "dns", ports: [{ name: "dns", port: 53, protocol: "UDP", targetPort: 53 }] };
    expect(() => planShadowPorts([dns], [{ local: 5353, remote: 53 }], [])).toThrow("port 53 of dns is UDP: exchange carries TCP only");
  });

  test("two services reaching one pod port share its listener; different locals for it are refused", () => {
    const alt: ServiceSpec = { name: "echo-alt", ports: [{ port: 8080, targetPort: 8080 }] };
    const shared = planShadowPorts([echo, alt], [{ local: 18080, remote: 80 }, { local: 18080, remote: 8080 }], echoPods);
    expect(shared.listeners).toEqual([{ shadowPort: 8080, name: "http", localPort: 18080, serves: ["echo:80", "echo-alt:8080"] }]);
    expect(() => planShadowPorts([echo, alt], [{ local: 18080, remote: 80 }, { local: 28080, remote: 8080 }], echoPods)).toThrow(
      "service ports echo:80 and echo-alt:8080 reach the same pod port 8080; they cannot go to different local ports (18080 and 28080)",
    );
  });

  test("targetPort resolution follows the service port's protocol and numeric strings", () => {
    expect(resolveTargetPort({ port: 80, targetPort: "8080" }, [])).toEqual({ number: 8080 });
    expect(resolveTargetPort({ port: 80 }, [])).toEqual({ number: 80 });
    expect(resolveTargetPort({ port: 53, protocol: "UDP", targetPort: "dns" }, [{ name: "dns", containerPort: 5353, protocol: "TCP" }])).toEqual({ unresolved: "dns" });
  });
});

describe("selector changes", () => {
  test("the new selector replaces the old one exactly (old keys set to null)", () => {
    const shadow = shadowSelector("abcd1234", "exchange-echo");
    expect(shadow).toEqual({ [LABEL_SESSION]: "abcd1234", [LABEL_ROLE]: "exchange-echo" });
    expect(replaceSelectorPatch({ app: "echo", tier: "backend" }, shadow)).toEqual({ app: null, tier: null, ...shadow });
    expect(replaceSelectorPatch(undefined, shadow)).toEqual(shadow);
  });

  test("the role label in the selector is what startShadow puts on the pod", () => {
    expect(shadowSelector("abcd1234", "Exchange My_Service")[LABEL_ROLE]).toBe("exchange-my-service");
  });

  test("the undo record of a selector change holds the original selector, and recover reads it back", () => {
    const before = { apiVersion: "v1", kind: "Service", metadata: { name: "echo", namespace: "demo" }, spec: { selector: { app: "echo" } } };
    const { spec, marks } = patchObjectStep("abcd1234", before, [["spec", "selector"]], "point echo at the shadow");
    const service = { ...before, metadata: { ...before.metadata, ...marks }, spec: { selector: shadowSelector("abcd1234", "exchange-echo") } };
    expect(spec.undo).toMatchObject({ kind: "Service", name: "echo", fields: [{ path: ["spec", "selector"], value: { app: "echo" } }] });
    expect(originalSelector(SCHEME, service)).toEqual({ app: "echo" });
    // Scale mode marks the service without changing its selector.
    const lock = patchObjectStep("abcd1234", before, [], "mark echo");
    expect(originalSelector(SCHEME, { ...before, metadata: { ...before.metadata, ...lock.marks } })).toEqual({ app: "echo" });
  });
});

describe("targets", () => {
  test("selects: every key must match, an empty selector selects nothing", () => {
    expect(selects({ app: "echo" }, { app: "echo", tier: "backend" })).toBe(true);
    expect(selects({ app: "echo", tier: "front" }, { app: "echo", tier: "backend" })).toBe(false);
    expect(selects({}, { app: "echo" })).toBe(false);
    expect(selects(undefined, { app: "echo" })).toBe(false);
  });

  test("scale mode's shadow labels leave out the controller's pod-template-hash", () => {
    const deployment = { spec: { template: { metadata: { labels: { app: "echo", "pod-template-hash": "abc" } } } } };
    expect(podTemplateLabels(deployment)).toEqual({ app: "echo" });
  });
});

describe("waits", () => {
  test("ready endpoint addresses skip endpoints that are not ready", () => {
    const slices = [
      { endpoints: [{ addresses: ["10.0.0.1"], conditions: { ready: true } }, { addresses: ["10.0.0.2"], conditions: { ready: false } }] },
      { endpoints: [{ addresses: ["10.0.0.3"] }] },
      {},
    ];
    expect([...readyEndpoints(slices)].sort()).toEqual(["10.0.0.1", "10.0.0.3"]);
  });

  test("a rollout is done only when the controller saw the latest generation and all replicas are ready", () => {
    const at = (status: any, generation = 2) => ({ metadata: { generation }, spec: { replicas: 2 }, status });
    expect(rolloutProgress(at({ observedGeneration: 2, readyReplicas: 2, updatedReplicas: 2 }), 2)).toEqual({ done: true, summary: "2/2 ready" });
    expect(rolloutProgress(at({ observedGeneration: 1, readyReplicas: 2, updatedReplicas: 2 }), 2).done).toBe(false);
    expect(rolloutProgress(at({ observedGeneration: 2, readyReplicas: 1, updatedReplicas: 2 }), 2)).toEqual({ done: false, summary: "1/2 ready" });
  });
});

describe("ownership messages", () => {
  test("owner, session and age", () => {
    expect(formatAge(42)).toBe("42s");
    expect(formatAge(600)).toBe("10m");
    expect(formatAge(3 * 3600)).toBe("3h");
    expect(describeHolder({ id: "abcd1234", owner: "alice@laptop", mode: "exchange", ageSeconds: 300, host: "laptop" })).toBe(
      "alice@laptop (session abcd1234, exchange, started 5m ago)",
    );
  });
});

describe("preview service", () => {
  test("selects the session's shadow only and carries the session's labels", () => {
    const labels = { "ktctl.io/managed-by": "ktctl", [LABEL_SESSION]: "abcd1234", "ktctl.io/owner": "alice" };
    const service = previewService({ name: "web", namespace: "demo", labels, selector: shadowSelector("abcd1234", "preview-web"), ports: [80, 8443], external: false });
    expect(service.metadata).toEqual({ name: "web", namespace: "demo", labels });
    expect(service.spec).toEqual({
      type: "ClusterIP",
      selector: { [LABEL_SESSION]: "abcd1234", [LABEL_ROLE]: "preview-web" },
      ports: [
        { name: "tcp-80", port: 80, targetPort: 80, protocol: "TCP" },
        { name: "tcp-8443", port: 8443, targetPort: 8443, protocol: "TCP" },
      ],
    });
    expect(previewService({ name: "web", namespace: "demo", labels, selector: {}, ports: [80], external: true }).spec.type).toBe("LoadBalancer");
  });

  test("node addresses prefer the external IP", () => {
    const nodes = [
      { status: { addresses: [{ type: "InternalIP", address: "10.0.0.5" }, { type: "ExternalIP", address: "203.0.113.5" }] } },
      { status: { addresses: [{ type: "Hostname", address: "n2" }, { type: "InternalIP", address: "10.0.0.6" }] } },
    ];
    expect(nodeAddresses(nodes)).toEqual(["203.0.113.5", "10.0.0.6"]);
  });
});
