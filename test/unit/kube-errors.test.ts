import { describe, expect, test } from "bun:test";
import { apiErrorFrom, assertSafePath, connectionErrorFrom, describeRequest, singular, KubeApiError } from "../../core/kube/errors.ts";
import { ExitCode, isKtctlError } from "../../core/errors.ts";

const SERVER = "https://10.0.0.1:6443";
const status = (code: number, reason: string, message: string, details?: object) =>
  JSON.stringify({ kind: "Status", apiVersion: "v1", status: "Failure", code, reason, message, details });

describe("describeRequest", () => {
  test.each([
    ["GET", "/api/v1/namespaces/demo/pods/web-1", { verb: "get", resource: "pods", namespace: "demo", name: "web-1" }],
    ["GET", "/api/v1/namespaces/demo/pods?labelSelector=a%3Db", { verb: "list", resource: "pods", namespace: "demo", name: undefined }],
    ["GET", "/api/v1/namespaces/demo/pods?watch=1", { verb: "watch", resource: "pods", namespace: "demo", name: undefined }],
    ["POST", "/apis/apps/v1/namespaces/demo/deployments", { verb: "create", resource: "deployments", namespace: "demo", name: undefined }],
    ["PATCH", "https://x:6443/apis/apps/v1/namespaces/demo/deployments/echo/scale", { verb: "patch", resource: "deployments/scale", namespace: "demo", name: "echo" }],
    ["DELETE", "/api/v1/namespaces/demo/configmaps", { verb: "deletecollection", resource: "configmaps", namespace: "demo", name: undefined }],
    ["GET", "/api/v1/namespaces/demo/pods/p/portforward?ports=22", { verb: "get", resource: "pods/portforward", namespace: "demo", name: "p" }],
    ["GET", "/api/v1/namespaces/demo", { verb: "get", resource: "namespaces", namespace: undefined, name: "demo" }],
    ["GET", "/api/v1/nodes", { verb: "list", resource: "nodes", namespace: undefined, name: undefined }],
    ["PUT", "https://rancher.example/k8s/clusters/c-1/api/v1/namespaces/a/services/b", { verb: "update", resource: "services", namespace: "a", name: "b" }],
  ])("%s %s", (method, path, expected) => {
    expect(describeRequest(method, path)).toEqual(expected);
  });

  test("singular", () => {
    expect(["pods", "services", "ingresses", "endpoints", "networkpolicies", "deployments/scale"].map(singular)).toEqual([
      "pod",
      "service",
      "ingress",
      "endpoints",
      "networkpolicy",
      "deployment",
    ]);
  });
});

describe("API refusals", () => {
  test("403 names verb, resource and namespace from the server's message", () => {
    const body = status(403, "Forbidden", 'pods "x" is forbidden: User "dev" cannot delete resource "pods" in API group "" in the namespace "demo"', {
      name: "x",
      kind: "pods",
    });
    const e = apiErrorFrom(403, body, "DELETE", "/api/v1/namespaces/demo/pods/x", SERVER);
    expect(e.message).toBe("forbidden: cannot delete pods in namespace demo (RBAC)");
    expect(e.exitCode).toBe(ExitCode.forbidden);
    expect(e.status).toBe(403);
    expect(isKtctlError(e)).toBe(true);
  });

  test("403 for a grouped resource and for cluster scope", () => {
    const grouped = status(403, "Forbidden", 'leases.coordination.k8s.io is forbidden: User "dev" cannot create resource "leases" in API group "coordination.k8s.io" in the namespace "demo"');
    expect(apiErrorFrom(403, grouped, "POST", "/apis/coordination.k8s.io/v1/namespaces/demo/leases", SERVER).message).toBe(
      "forbidden: cannot create leases.coordination.k8s.io in namespace demo (RBAC)",
    );
    const cluster = status(403, "Forbidden", 'nodes is forbidden: User "dev" cannot list resource "nodes" in API group "" at the cluster scope');
    expect(apiErrorFrom(403, cluster, "GET", "/api/v1/nodes", SERVER).message).toBe("forbidden: cannot list nodes at cluster scope (RBAC)");
  });

  test("403 without a Status body falls back to the request's path", () => {
    const e = apiErrorFrom(403, "Forbidden", "GET", "/api/v1/namespaces/demo/pods/p/portforward?ports=22", SERVER);
    expect(e.message).toBe("forbidden: cannot get pods/portforward in namespace demo (RBAC)");
  });

  test("404 names kind and name; a missing namespace is named as such", () => {
    const pod = apiErrorFrom(404, status(404, "NotFound", 'pods "web" not found', { name: "web", kind: "pods" }), "GET", "/api/v1/namespaces/demo/pods/web", SERVER);
    expect(pod.message).toBe('not found: pod "web" in namespace demo');
    expect(pod.exitCode).toBe(ExitCode.notFound);

    const ns = apiErrorFrom(404, status(404, "NotFound", 'namespaces "nope" not found', { name: "nope", kind: "namespaces" }), "POST", "/api/v1/namespaces/nope/pods", SERVER);
    expect(ns.message).toBe('not found: namespace "nope"');

    const deploy = apiErrorFrom(404, "404 page not found", "GET", "/apis/apps/v1/namespaces/demo/deployments/api", SERVER);
    expect(deploy.message).toBe('not found: deployment "api" in namespace demo');
  });

  test("other statuses keep their meaning and stay one line", () => {
    const conflict = apiErrorFrom(409, status(409, "AlreadyExists", 'pods "a" already exists'), "POST", "/api/v1/namespaces/d/pods", SERVER);
    expect(conflict.exitCode).toBe(ExitCode.conflict);
    expect(conflict.reason).toBe("AlreadyExists");
    expect(apiErrorFrom(401, status(401, "Unauthorized", "Unauthorized"), "GET", "/api", SERVER).exitCode).toBe(ExitCode.kubeconfig);
    const down = apiErrorFrom(503, "service unavailable\nmore\nlines", "GET", "/api/v1/pods", SERVER);
    expect(down.exitCode).toBe(ExitCode.unreachable);
    expect(down.message).toBe(`API server ${SERVER} answered 503: service unavailable`);
    const invalid = apiErrorFrom(422, status(422, "Invalid", 'Pod "x" is invalid: spec.containers: Required value'), "POST", "/api/v1/namespaces/d/pods", SERVER);
    expect(invalid.message).toBe('create pods failed: Pod "x" is invalid: spec.containers: Required value');
    expect(invalid).toBeInstanceOf(KubeApiError);
  });
});

describe("connection failures", () => {
  test("refused and DNS failures are unreachable and name the server", () => {
    const refused = Object.assign(new Error("Unable to connect. Is the computer able to access the url?"), { code: "ConnectionRefused" });
    const e = connectionErrorFrom(refused, SERVER);
    expect(e.exitCode).toBe(ExitCode.unreachable);
    expect(e.message).toBe(`cannot reach API server ${SERVER}: ConnectionRefused`);
  });

  test("TLS failures say so", () => {
    const tls = Object.assign(new Error("unable to verify the first certificate"), { code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE" });
    const e = connectionErrorFrom(tls, SERVER);
    expect(e.exitCode).toBe(ExitCode.unreachable);
    expect(e.message).toBe(`TLS verification of API server ${SERVER} failed: UNABLE_TO_VERIFY_LEAF_SIGNATURE`);
  });
});

describe("assertSafePath", () => {
  test("ordinary paths pass, queries and group versions included", () => {
    for (const path of [
      "/api/v1/namespaces/demo/services/echo",
      "/apis/discovery.k8s.io/v1/namespaces/demo/endpointslices?labelSelector=a%3Db",
      "/api/v1/namespaces/demo/pods/x-1.y/portforward?ports=2222",
      "https://10.0.0.1:6443/api/v1/namespaces/demo/pods",
    ]) {
      expect(() => assertSafePath("GET", path)).not.toThrow();
    }
  });

  test('a name "..", "." or holding an encoded "/" is refused as usage, naming it', () => {
    const cases: [string, RegExp][] = [
      [`/api/v1/namespaces/demo/services/${encodeURIComponent("..")}`, /invalid name "\.\." \(PATCH refused\)/],
      ["/api/v1/namespaces/demo/services/.", /invalid name "\."/],
      [`/api/v1/namespaces/demo/services/${encodeURIComponent("echo/status")}`, /invalid name "echo\/status"/],
      [`/api/v1/namespaces/${encodeURIComponent("..")}/services/echo`, /invalid name "\.\."/],
      ["/api/v1/namespaces/demo/services/%2e%2e", /invalid name "\.\."/],
    ];
    for (const [path, message] of cases) {
      let error: any;
      try {
        assertSafePath("PATCH", path);
      } catch (e) {
        error = e;
      }
      expect(error?.message).toMatch(message);
      expect(error?.exitCode).toBe(2);
    }
  });
});
