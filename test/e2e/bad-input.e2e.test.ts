// Bad input and refusals: one clear line (plus at most a hint), a distinct exit code, no stack
// trace, and nothing left in the cluster.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEMO_NS, KTCTL, KUBECONFIG, inLaptop, kubectlOk, leftovers, requireCluster, run } from "./harness.ts";

let scratch: string;
let restrictedKubeconfig: string;

beforeAll(async () => {
  await requireCluster();
  scratch = mkdtempSync(join(tmpdir(), "ktctl-bad-"));
  // A user who may read services and pods in demo, but not create pods (the shadow).
  await kubectlOk(["apply", "-f", "-"], {
    stdin: `
apiVersion: v1
kind: ServiceAccount
metadata: { name: ktctl-readonly, namespace: ${DEMO_NS} }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: ktctl-readonly, namespace: ${DEMO_NS} }
rules:
- { apiGroups: [""], resources: [services, pods, endpoints], verbs: [get, list, watch] }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: ktctl-readonly, namespace: ${DEMO_NS} }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: ktctl-readonly }
subjects: [{ kind: ServiceAccount, name: ktctl-readonly, namespace: ${DEMO_NS} }]
`,
  });
  const token = (await kubectlOk(["-n", DEMO_NS, "create", "token", "ktctl-readonly", "--duration=1h"])).trim();
  const admin = JSON.parse(await kubectlOk(["config", "view", "--raw", "-o", "json"]));
  restrictedKubeconfig = join(scratch, "restricted.kubeconfig");
  writeFileSync(
    restrictedKubeconfig,
    JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: admin.clusters,
      users: [{ name: "readonly", user: { token } }],
      contexts: [{ name: "readonly", context: { cluster: admin.clusters[0].name, user: "readonly", namespace: DEMO_NS } }],
      "current-context": "readonly",
    }),
  );
  writeFileSync(join(scratch, "garbage.kubeconfig"), "apiVersion: v1\nclusters: [ {{{ not yaml\n");
});

afterAll(async () => {
  await kubectlOk(["-n", DEMO_NS, "delete", "serviceaccount,role,rolebinding", "ktctl-readonly", "--ignore-not-found"]);
  rmSync(scratch, { recursive: true, force: true });
});

/** Runs ktctl in the laptop namespace; `kubeconfig: null` leaves the flag out. */
async function ktctl(args: string[], kubeconfig: string | null = KUBECONFIG) {
  const flags = kubeconfig === null ? [] : ["--kubeconfig", kubeconfig];
  const started = Date.now();
  const r = await run(inLaptop([...KTCTL, ...flags, ...args]), { env: { KTCTL_HOME: scratch }, cwd: scratch, timeoutMs: 90_000 });
  return { ...r, ms: Date.now() - started };
}

function expectOneClearLine(stderr: string, pattern: RegExp) {
  const lines = stderr.trim().split("\n").filter((l) => !l.startsWith("hint:"));
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(stderr).not.toMatch(/\n\s+at /); // no stack trace
}

describe("bad input", () => {
  test("kubeconfig that does not exist", async () => {
    const r = await ktctl(["-n", DEMO_NS, "forward", "svc/echo", "18100:80"], join(scratch, "missing.kubeconfig"));
    expect(r.code).toBe(4);
    expectOneClearLine(r.stderr, /missing\.kubeconfig/);
  });

  test("malformed kubeconfig", async () => {
    const r = await ktctl(["-n", DEMO_NS, "forward", "svc/echo", "18100:80"], join(scratch, "garbage.kubeconfig"));
    expect(r.code).toBe(4);
    expectOneClearLine(r.stderr, /garbage\.kubeconfig/);
  });

  test("unknown context", async () => {
    const r = await ktctl(["--context", "nope", "-n", DEMO_NS, "forward", "svc/echo", "18100:80"]);
    expect(r.code).toBe(4);
    expectOneClearLine(r.stderr, /context "?nope"?/);
  });

  test("unknown namespace and unknown target", async () => {
    const ns = await ktctl(["-n", "no-such-namespace", "forward", "svc/echo", "18100:80"]);
    expect(ns.code).toBe(5);
    expectOneClearLine(ns.stderr, /no-such-namespace|not found/);
    const svc = await ktctl(["-n", DEMO_NS, "forward", "svc/no-such-service", "18100:80"]);
    expect(svc.code).toBe(5);
    expectOneClearLine(svc.stderr, /no-such-service/);
  });

  test("port specs abc and 70000, and a port the service does not serve", async () => {
    const abc = await ktctl(["-n", DEMO_NS, "forward", "svc/echo", "abc"]);
    expect(abc.code).toBe(2);
    expectOneClearLine(abc.stderr, /invalid port "abc"/);
    const big = await ktctl(["-n", DEMO_NS, "forward", "svc/echo", "18100:70000"]);
    expect(big.code).toBe(2);
    expectOneClearLine(big.stderr, /70000 out of range/);
    const unserved = await ktctl(["-n", DEMO_NS, "forward", "svc/echo", "18100:1234"]);
    expect(unserved.code).toBe(2);
    expectOneClearLine(unserved.stderr, /has no port 1234/);
  });

  test("a local port already taken", async () => {
    const holder = Bun.spawn(inLaptop(["socat", "TCP-LISTEN:18101,bind=127.0.0.1,reuseaddr,fork", "SYSTEM:true"]), { stdout: "ignore", stderr: "ignore" });
    try {
      // socat is listening once a connect succeeds.
      for (let i = 0; i < 100; i++) {
        if ((await run(inLaptop(["socat", "-u", "OPEN:/dev/null", "TCP:127.0.0.1:18101"]))).code === 0) break;
        await Bun.sleep(50);
      }
      const r = await ktctl(["-n", DEMO_NS, "forward", "svc/echo", "18101:80"]);
      expect(r.code).toBe(7);
      expectOneClearLine(r.stderr, /local port 18101 is already in use/);
    } finally {
      holder.kill();
    }
  });

  test("RBAC forbids what the session must write (its Lease, the shadow pod): the verb and resource are named", async () => {
    const r = await ktctl(["forward", "svc/echo", "18102:80"], restrictedKubeconfig);
    expect(r.code).toBe(6);
    // The session checks the rights its changes AND their undo need before making any (so nothing
    // can be stranded): the first one missing is named.
    expectOneClearLine(r.stderr, /^ktctl: forbidden: cannot (create|patch|delete) (pods|leases\.coordination\.k8s\.io) in namespace demo \(RBAC\)$/);
  });

  test("a shadow image that cannot be pulled is reported within seconds", async () => {
    // Through the shadow: straight to the pods a forward starts none, and never pulls the image.
    const r = await ktctl(["-n", DEMO_NS, "--image", "ktctl.local/no-such-image:0", "forward", "svc/echo", "18103:80", "--via", "shadow"]);
    expect(r.code).toBe(8);
    expectOneClearLine(r.stderr, /ktctl\.local\/no-such-image:0/);
    expect(r.ms).toBeLessThan(20_000);
  });

  test("after all of the above, nothing of ktctl is left in the cluster", async () => {
    // Deletions are asynchronous: wait for terminating pods to go.
    const deadline = Date.now() + 30_000;
    let left = await leftovers();
    while (left.length > 0 && Date.now() < deadline) {
      await kubectlOk(["-n", DEMO_NS, "wait", "--for=delete", ...left, "--timeout=30s"]).catch(() => {});
      left = await leftovers();
    }
    expect(left).toEqual([]);
  });
});
