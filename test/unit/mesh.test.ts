// The mesh plugin's pure parts: marks, the port plan, the objects it creates, and the patches
// that attach a service to its router and give it back exactly.

import { describe, expect, test } from "bun:test";
import { parseAuthorizedKey } from "../../core/protocol/keys.ts";
import { ContractError, validateRouterConfig } from "../../core/protocol/router.ts";
import { curlLine, generateMarkValue, parseMark } from "../../plugins/mesh/mark.ts";
import { meshPatch, meshRecordOf, participantsOf, restorePatch, type MeshRecord } from "../../plugins/mesh/membership.ts";
import { companionName, routerName, routerRole, routerSelector } from "../../plugins/mesh/names.ts";
import { companionService, configOfRouter, routerConfig, routerDeployment, unusableAuthorizedKey } from "../../plugins/mesh/objects.ts";
import { PortPlanError, planExposedPorts, planFromRouterConfig, planMeshPorts, routerOwnPorts } from "../../plugins/mesh/ports.ts";
import { SCHEME } from "../../core/plugins/scheme-api.ts";
import { ROUTER_API, SHADOW_PODS_API } from "../../core/plugins/router-api.ts";
import { shadowPodSpec } from "../../core/shadow/pod-spec.ts";

/** The parts of the plugin API mesh's pure functions take, exactly as the host hands them over. */
const api = { scheme: SCHEME, router: ROUTER_API, shadowPods: SHADOW_PODS_API };

const fixedRandom = (n: number) => new Uint8Array(n).map((_, i) => i * 7);

const service = {
  apiVersion: "v1",
  kind: "Service",
  metadata: { name: "echo", namespace: "demo", resourceVersion: "42", labels: { app: "echo" }, annotations: { team: "a" } },
  spec: {
    selector: { app: "echo", tier: "backend" },
    ports: [
      { name: "http", port: 80, targetPort: "http", protocol: "TCP" },
      { name: "http-alt", port: 8081, targetPort: 8081, protocol: "TCP" },
      { name: "tcp", port: 9090, targetPort: "tcp", protocol: "TCP", appProtocol: "raw" },
    ],
  },
};
const pods = [
  {
    spec: {
      containers: [
        {
          ports: [
            { name: "http", containerPort: 8080 },
            { name: "tcp", containerPort: 9090 },
          ],
        },
      ],
    },
  },
];

describe("marks", () => {
  test("VALUE, KEY: and KEY:VALUE", () => {
    expect(parseMark(api.router, "alice", "alice@laptop")).toEqual({ header: "VERSION", value: "alice", generated: false });
    expect(parseMark(api.router, "x-dev:bob", "bob@laptop")).toEqual({ header: "x-dev", value: "bob", generated: false });
    const keyOnly = parseMark(api.router, "x-dev:", "Carol Smith@box", fixedRandom);
    expect(keyOnly.header).toBe("x-dev");
    expect(keyOnly.generated).toBe(true);
    expect(keyOnly.value).toBe("carol-smith-ahov");
    expect(parseMark(api.router, undefined, "dave@x", fixedRandom)).toEqual({ header: "VERSION", value: "dave-ahov", generated: true });
  });

  test("marks that cannot travel are refused", () => {
    expect(() => parseMark(api.router, ":v", "a@b")).toThrow(ContractError);
    expect(() => parseMark(api.router, "content-length:1", "a@b")).toThrow(ContractError);
    expect(() => parseMark(api.router, "bad header:v", "a@b")).toThrow(ContractError);
  });

  test("generated values are label- and header-safe, and differ", () => {
    const a = generateMarkValue("root@host");
    const b = generateMarkValue("root@host");
    expect(a).toMatch(/^root-[a-z0-9]{4}$/);
    expect(a === b && a === generateMarkValue("root@host")).toBe(false);
    expect(generateMarkValue("@@@")).toMatch(/^dev-/);
  });

  test("the curl line is ready to paste", () => {
    const mark = { header: "VERSION", value: "alice", generated: false };
    expect(curlLine(mark, "echo", "demo", 80)).toBe("curl -H 'VERSION: alice' http://echo.demo/");
    expect(curlLine(mark, "echo", "demo", 8081, "/api")).toBe("curl -H 'VERSION: alice' http://echo.demo:8081/api");
    expect(curlLine({ ...mark, value: "it's" }, "echo", "demo", 80)).toContain(`'VERSION: it'\\''s'`);
  });
});

describe("port plan", () => {
  test("every service port, named target ports resolved on the original pods", () => {
    expect(planMeshPorts(api, service, pods)).toEqual([
      { servicePort: 80, name: "http", targetPort: "http", routerPort: 8080, protocol: "http" },
      { servicePort: 8081, name: "http-alt", targetPort: 8081, routerPort: 8081, protocol: "http" },
      // appProtocol wins over the name; "raw" says nothing, so the router sniffs
      { servicePort: 9090, name: "tcp", targetPort: "tcp", routerPort: 9090 },
    ]);
  });

  test("UDP ports and unresolvable names are refused with a reason", () => {
    const udp = { ...service, spec: { ...service.spec, ports: [{ port: 53, protocol: "UDP" }] } };
    expect(() => planMeshPorts(api, udp, pods)).toThrow(/TCP only/);
    expect(() => planMeshPorts(api, service, [])).toThrow(PortPlanError);
  });

  test("--expose names a service port or a target port; shadows avoid low and reserved ports", () => {
    const plan = planMeshPorts(api, service, pods);
    const exposed = planExposedPorts(api, plan, [{ local: 3000, remote: 80 }, { local: 3001, remote: 9090 }], "demo/echo");
    expect(exposed.map((e) => [e.port.servicePort, e.local, e.shadowPort])).toEqual([
      [80, 3000, 8080],
      [9090, 3001, 9090],
    ]);
    expect(planExposedPorts(api, plan, [{ local: 3000, remote: 8080 }], "demo/echo")[0]!.port.servicePort).toBe(80);
    expect(() => planExposedPorts(api, plan, [{ local: 1, remote: 7 }], "demo/echo")).toThrow(/has no port 7/);
    expect(() => planExposedPorts(api, plan, [{ local: 1, remote: 80 }, { local: 2, remote: 8080 }], "demo/echo")).toThrow(/twice/);

    const low = [{ servicePort: 80, targetPort: 80, routerPort: 80 }, { servicePort: 22, targetPort: 2222, routerPort: 2222 }];
    const shadows = planExposedPorts(api, low, [{ local: 8000, remote: 80 }, { local: 8001, remote: 22 }], "x");
    expect(shadows.map((e) => e.shadowPort)).toEqual([20000, 20001]);
  });

  test("the router's own ports step aside from the service's", () => {
    expect(routerOwnPorts(api, [{ servicePort: 1, targetPort: 1, routerPort: 8080 }])).toEqual({ tunnel: 2222, admin: 2224 });
    expect(routerOwnPorts(api, [{ servicePort: 1, targetPort: 1, routerPort: 2222 }, { servicePort: 2, targetPort: 2, routerPort: 2224 }])).toEqual({
      tunnel: 2223,
      admin: 2225,
    });
  });

  test("a joiner reads the plan back from the router's configuration", () => {
    const plan = planMeshPorts(api, service, pods);
    const config = routerConfig(plan, "10.96.0.9", "demo/echo", 2224);
    expect(planFromRouterConfig(config.listeners, service)).toEqual(plan);
  });
});

describe("objects", () => {
  test("the companion selects the original pods on the same ports", () => {
    const companion = companionService(api, { name: companionName("echo"), original: service, labels: { "ktctl.io/session": "s1" } });
    expect(companion.metadata.name).toBe("echo-ktctl-original");
    expect(companion.spec.selector).toEqual(service.spec.selector);
    expect(companion.spec.ports).toEqual(service.spec.ports);
    expect(companion.metadata.labels["ktctl.io/session"]).toBe("s1");
  });

  test("router configuration: one listener per target port, fallback at the service port", () => {
    const plan = [...planMeshPorts(api, service, pods), { servicePort: 8080, targetPort: 8080, routerPort: 8080 }];
    const config = validateRouterConfig(routerConfig(plan, "10.96.0.9", "demo/echo", 2224));
    expect(config.listeners).toEqual([
      { port: 8080, fallback: { host: "10.96.0.9", port: 80 }, name: "http", protocol: "http" },
      { port: 8081, fallback: { host: "10.96.0.9", port: 8081 }, name: "http-alt", protocol: "http" },
      { port: 9090, fallback: { host: "10.96.0.9", port: 9090 }, name: "tcp" },
    ]);
  });

  test("the router Deployment is a shadow like the developer's and never carries a session in its template", () => {
    const global = { image: "registry.example/ktctl/shadow:1.2.3", imagePullSecret: "pull", debug: true };
    // The developer's own shadow, made from the same flags: the router must match it.
    const developer = shadowPodSpec({ name: "dev", namespace: "demo", sessionId: "s1", sessionLabels: {}, publicKey: "k", global, options: { role: "mesh-route-echo" } });
    const developerContainer = developer.spec.containers[0];
    const plan = planMeshPorts(api, service, pods);
    const config = routerConfig(plan, "10.96.0.9", "demo/echo", 2224);
    const labels = { "ktctl.io/managed-by": "ktctl", "ktctl.io/session": "s1", "ktctl.io/owner": "alice" };
    const deployment = routerDeployment(api, { name: routerName("echo"), namespace: "demo", service: "echo", labels, global, config, plan, tunnelPort: 2222 });
    const template = deployment.spec.template;
    expect(deployment.metadata.labels).toMatchObject({ ...labels, ...routerSelector(api, "echo") });
    expect(template.metadata.labels).toEqual(routerSelector(api, "echo"));
    expect(deployment.spec.selector.matchLabels).toEqual(routerSelector(api, "echo"));
    const container = template.spec.containers[0];
    expect(container.image).toBe("registry.example/ktctl/shadow:1.2.3");
    expect(container.imagePullPolicy).toBe(developerContainer.imagePullPolicy);
    expect(template.spec.imagePullSecrets).toEqual([{ name: "pull" }]);
    expect(container.resources).toEqual(developerContainer.resources);
    expect(container.securityContext).toEqual(developerContainer.securityContext);
    expect(container.volumeMounts).toEqual(developerContainer.volumeMounts);
    expect(template.spec.volumes).toEqual(developer.spec.volumes);
    expect(container.ports).toEqual([
      { name: "http", containerPort: 8080 },
      { containerPort: 8081 },
      { name: "tcp", containerPort: 9090 },
      { name: "tunnel", containerPort: 2222 },
    ]);
    expect(template.spec.securityContext).toEqual(developer.spec.securityContext);
    const env = Object.fromEntries(container.env.map((e: any) => [e.name, e.value]));
    expect(env.KTCTL_SHADOW_ROLES).toBe("tunnel,router");
    // The pod's IP reaches the shadow through the downward API, so its welcome can say it.
    expect(container.env.find((e: any) => e.name === "KTCTL_POD_IP")?.valueFrom).toEqual({ fieldRef: { fieldPath: "status.podIP" } });
    expect(env.KTCTL_LOG_LEVEL).toBe("debug");
    expect(env.KTCTL_TUNNEL_PORT).toBe("2222");
    expect(configOfRouter(api, deployment)).toEqual(config);
    expect(() => parseAuthorizedKey(env.KTCTL_AUTHORIZED_KEY)).not.toThrow();
    expect(template.spec.automountServiceAccountToken).toBe(false);
    const withAccount = routerDeployment(api, { name: "r", namespace: "demo", service: "echo", labels, global: { ...global, serviceAccount: "sa" }, config, plan, tunnelPort: 2222 });
    expect(withAccount.spec.template.spec.automountServiceAccountToken).toBe(false);
    expect(withAccount.spec.template.spec.serviceAccountName).toBeUndefined();

    const lowPlan = [{ servicePort: 80, targetPort: 80, routerPort: 80 }];
    const low = routerDeployment(api, { name: "r", namespace: "demo", service: "echo", labels, global, config: routerConfig(lowPlan, "10.96.0.9", "demo/echo", 2224), plan: lowPlan, tunnelPort: 2222 });
    expect(low.spec.template.spec.securityContext.sysctls).toEqual([{ name: "net.ipv4.ip_unprivileged_port_start", value: "0" }]);
  });

  test("every router gets a key nobody holds", () => {
    expect(unusableAuthorizedKey()).not.toBe(unusableAuthorizedKey());
    expect(unusableAuthorizedKey()).toMatch(/^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]+=* /);
  });

  test("names stay DNS labels for long services; role labels do not collide across services", () => {
    const long = "a".repeat(60);
    expect(routerName(long).length).toBeLessThanOrEqual(63);
    expect(companionName(long)).toMatch(/-ktctl-original$/);
    expect(routerName(long)).not.toBe(routerName(`${"a".repeat(59)}b`));
    expect(routerRole(api, "echo")).toBe("mesh-router-echo");
  });
});

describe("attaching and restoring the service", () => {
  const record: MeshRecord = { apiVersion: "v1", kind: "Service", namespace: "demo", name: "echo", router: "echo-ktctl-router", companion: "echo-ktctl-original", adminPort: 2224 };

  test("the mesh patch replaces the selector (merge patches merge maps) and records how to undo it", () => {
    const patch = meshPatch(api, service, { ...record, selector: service.spec.selector }, "s1");
    expect(patch.metadata.resourceVersion).toBe("42");
    expect(patch.spec.selector).toEqual({ app: null, tier: null, ...routerSelector(api, "echo") });
    expect(patch.metadata.labels).toEqual({ "ktctl.io/session": "s1" });
    const meshed = {
      ...service,
      metadata: { ...service.metadata, labels: { ...service.metadata.labels, ...patch.metadata.labels }, annotations: { ...service.metadata.annotations, ...patch.metadata.annotations } },
      spec: { ...service.spec, selector: routerSelector(api, "echo") },
    };
    expect(meshRecordOf(api, meshed)).toEqual({ ...record, selector: service.spec.selector });
    expect(participantsOf(api, meshed)).toEqual(["s1"]);

    const restore = restorePatch(api, meshed, meshRecordOf(api, meshed)!);
    expect(restore.spec.selector).toEqual({ "ktctl.io/managed-by": null, "ktctl.io/role": null, app: "echo", tier: "backend" });
    expect(restore.metadata.labels).toEqual({ "ktctl.io/session": null });
    expect(restore.metadata.annotations).toEqual({ "ktctl.io/undo": null, "ktctl.io/mesh-sessions": null });
    expect(restore.metadata.resourceVersion).toBe("42");
  });

  test("a service that is not meshed (or marked by another mode) has no mesh record", () => {
    expect(meshRecordOf(api, service)).toBeUndefined();
    const exchanged = { metadata: { annotations: { "ktctl.io/undo": JSON.stringify({ kind: "patch-object", undo: { name: "echo" } }) } } };
    expect(meshRecordOf(api, exchanged)).toBeUndefined();
    expect(participantsOf(api, { metadata: { annotations: { "ktctl.io/mesh-sessions": "not json" } } })).toEqual([]);
  });
});
