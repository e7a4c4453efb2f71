// Kube access against the real test cluster: kubeconfig variants over real TLS, RBAC refusals from a
// real service account, watches, waits, and port-forward byte streams.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes, createHash } from "node:crypto";
import { once } from "node:events";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Duplex } from "node:stream";
import type { V1Pod } from "@kubernetes/client-node";
import { connectKube, isPodReady, loadKubeconfig, waitForObject, waitForPod } from "../../core/kube/index.ts";
import { ExitCode, isKtctlError } from "../../core/errors.ts";
import type { Kube } from "../../core/plugin-api.ts";
import { createTransport } from "../../core/kube/transport.ts";

const ADMIN = "/var/lib/ktctl-cluster/admin.kubeconfig";
const NS = "default";
const RUN = `${Date.now().toString(36)}${randomBytes(2).toString("hex")}`;
const LABEL = "ktctl.io/e2e";
const ECHO_IMAGE = "ktctl.local/echo:1";
const TOOLBOX_IMAGE = "ktctl.local/toolbox:1";
const MiB = 1024 * 1024;
/** Per-test upper bound for tests that wait on pods or move many bytes. */
const SLOW = 120_000;

if (!fs.existsSync(ADMIN)) throw new Error(`test cluster is not up (${ADMIN} missing)`);
const kube: Kube = await connectKube({ kubeconfig: ADMIN });
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ktctl-kube-e2e-"));
const nodeImages = new Set((await kube.core.listNode()).items.flatMap((n) => n.status?.images?.flatMap((i) => i.names ?? []) ?? []));
// A watch from resourceVersion 1 gets 410 Gone once the server's watch window has moved past it;
// a young server may replay history instead. Only the former exercises the relist.
const versionOneGone = await (async () => {
  const transport = createTransport(loadKubeconfig({ kubeconfig: ADMIN }));
  const response = await transport.fetch(`/api/v1/namespaces/${NS}/configmaps?watch=1&resourceVersion=1&timeoutSeconds=1`, {});
  return (await response.text()).split("\n").some((line) => line.includes('"code":410'));
})();
const cleanups: (() => Promise<unknown>)[] = [];

async function expectKtctlError(promise: Promise<unknown>, exitCode: number, pattern: RegExp) {
  let error: unknown;
  try {
    await promise;
  } catch (e) {
    error = e;
  }
  expect(isKtctlError(error)).toBe(true);
  expect((error as Error).message).toMatch(pattern);
  expect((error as Error).message).not.toContain("\n");
  expect((error as any).exitCode).toBe(exitCode);
}

function podSpec(name: string, image: string, extra: Partial<V1Pod["spec"]> = {}): V1Pod {
  return {
    metadata: { name, labels: { [LABEL]: RUN } },
    spec: {
      terminationGracePeriodSeconds: 0,
      containers: [{ name: "main", image, imagePullPolicy: "Never" }],
      ...extra,
    },
  };
}

async function createPod(pod: V1Pod): Promise<string> {
  await kube.core.createNamespacedPod({ namespace: NS, body: pod });
  const name = pod.metadata!.name!;
  cleanups.push(() => kube.core.deleteNamespacedPod({ namespace: NS, name, gracePeriodSeconds: 0 }).catch(() => {}));
  return name;
}

/** A kubeconfig next to `dir`, built from the admin one, so relative paths and variants are exercised. */
function writeKubeconfig(name: string, cluster: Record<string, unknown>, user: Record<string, unknown>): string {
  const admin = kube.kc.getCurrentCluster()!;
  const file = path.join(dir, name);
  fs.writeFileSync(
    file,
    JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      "current-context": "e2e",
      clusters: [{ name: "c", cluster: { server: admin.server, ...cluster } }],
      contexts: [{ name: "e2e", context: { cluster: "c", user: "u", namespace: NS } }],
      users: [{ name: "u", user }],
    }),
  );
  return file;
}

afterAll(async () => {
  await Promise.all(cleanups.map((c) => c()));
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("connecting", () => {
  test("admin kubeconfig: context, namespace, and kube-system pods through the typed API and a raw request", async () => {
    expect(kube.context).toBe("ktctl-test");
    expect(kube.namespace).toBe("default");
    expect(kube.server).toMatch(/^https:\/\//);
    const typed = await kube.core.listNamespacedPod({ namespace: "kube-system" });
    expect(typed.items.length).toBeGreaterThan(0);
    const raw = await kube.request<{ items: unknown[] }>("GET", "/api/v1/namespaces/kube-system/pods");
    expect(raw.items.length).toBe(typed.items.length);
    console.log(`kube-system pods: ${typed.items.map((p) => p.metadata?.name).join(", ")}`);
  }, SLOW);

  test("CA, client certificate and key as files relative to the kubeconfig", async () => {
    const cluster = kube.kc.getCurrentCluster()!;
    const user = kube.kc.getCurrentUser()!;
    fs.mkdirSync(path.join(dir, "pki"), { recursive: true });
    fs.writeFileSync(path.join(dir, "pki/ca.crt"), Buffer.from(cluster.caData!, "base64"));
    fs.writeFileSync(path.join(dir, "pki/admin.crt"), Buffer.from(user.certData!, "base64"));
    fs.writeFileSync(path.join(dir, "pki/admin.key"), Buffer.from(user.keyData!, "base64"));
    const file = writeKubeconfig("files.yaml", { "certificate-authority": "pki/ca.crt" }, { "client-certificate": "pki/admin.crt", "client-key": "pki/admin.key" });
    const k = await connectKube({ kubeconfig: file, namespace: "kube-system" });
    expect(k.namespace).toBe("kube-system");
    expect((await k.core.listNamespace()).items.map((n) => n.metadata?.name)).toContain("kube-system");
  }, SLOW);

  test("insecure-skip-tls-verify works without a CA; a wrong CA is a one-line TLS error naming the server", async () => {
    const user = kube.kc.getCurrentUser()!;
    const creds = { "client-certificate-data": user.certData, "client-key-data": user.keyData };
    const skip = await connectKube({ kubeconfig: writeKubeconfig("skip.yaml", { "insecure-skip-tls-verify": true }, creds) });
    expect((await skip.core.readNamespace({ name: "default" })).metadata?.name).toBe("default");

    // Any other CA: the API server's certificate does not chain to it.
    const other = selfSignedPem();
    const wrong = await connectKube({ kubeconfig: writeKubeconfig("wrong-ca.yaml", { "certificate-authority-data": Buffer.from(other).toString("base64") }, creds) });
    await expectKtctlError(wrong.core.listNamespace(), ExitCode.unreachable, new RegExp(`TLS verification of API server ${reEscape(kube.server)} failed`));
  }, SLOW);

  test("a server that refuses connections is unreachable, named", async () => {
    const file = path.join(dir, "refused.yaml");
    fs.writeFileSync(
      file,
      `current-context: r\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]\ncontexts: [{name: r, context: {cluster: c}}]\n`,
    );
    const k = await connectKube({ kubeconfig: file });
    await expectKtctlError(k.request("GET", "/api/v1/namespaces"), ExitCode.unreachable, /cannot reach API server https:\/\/127\.0\.0\.1:1/);
  }, SLOW);
});

describe("refusals", () => {
  test("404 names the kind and the name", async () => {
    await expectKtctlError(kube.core.readNamespacedPod({ namespace: NS, name: `nope-${RUN}` }), ExitCode.notFound, new RegExp(`not found: pod "nope-${RUN}" in namespace default`));
    await expectKtctlError(kube.request("GET", `/apis/apps/v1/namespaces/${NS}/deployments/nope-${RUN}`), ExitCode.notFound, /not found: deployment "nope-/);
  }, SLOW);

  test("a service account without rights, its token from an exec plugin: 403s name verb, resource and namespace", async () => {
    const sa = `ktctl-e2e-nobody-${RUN}`;
    await kube.core.createNamespacedServiceAccount({ namespace: NS, body: { metadata: { name: sa, labels: { [LABEL]: RUN } } } });
    cleanups.push(() => kube.core.deleteNamespacedServiceAccount({ namespace: NS, name: sa }).catch(() => {}));
    const review = await kube.request<any>("POST", `/api/v1/namespaces/${NS}/serviceaccounts/${sa}/token`, {
      apiVersion: "authentication.k8s.io/v1",
      kind: "TokenRequest",
      spec: { expirationSeconds: 600 },
    });
    const plugin = path.join(dir, "bin/token.sh");
    fs.mkdirSync(path.dirname(plugin), { recursive: true });
    fs.writeFileSync(
      plugin,
      `#!/bin/sh\nprintf '%s' '${JSON.stringify({ apiVersion: "client.authentication.k8s.io/v1", kind: "ExecCredential", status: { token: review.status.token } })}'\n`,
      { mode: 0o755 },
    );
    const cluster = kube.kc.getCurrentCluster()!;
    const file = writeKubeconfig(
      "nobody.yaml",
      { "certificate-authority-data": cluster.caData },
      { exec: { apiVersion: "client.authentication.k8s.io/v1", command: "./bin/token.sh", interactiveMode: "Never" } },
    );
    const nobody = await connectKube({ kubeconfig: file });
    await expectKtctlError(nobody.core.listNamespacedPod({ namespace: NS }), ExitCode.forbidden, /^forbidden: cannot list pods in namespace default \(RBAC\)$/);
    await expectKtctlError(nobody.request("DELETE", `/api/v1/namespaces/${NS}/configmaps/x`), ExitCode.forbidden, /^forbidden: cannot delete configmaps in namespace default \(RBAC\)$/);
    await expectKtctlError(
      nobody.request("PATCH", `/apis/apps/v1/namespaces/${NS}/deployments/x`, { spec: { replicas: 0 } }),
      ExitCode.forbidden,
      /^forbidden: cannot patch deployments\.apps in namespace default \(RBAC\)$/,
    );
    await expectKtctlError(nobody.portForward(NS, "any", 80), ExitCode.forbidden, /^forbidden: cannot (create|get) pods\/portforward in namespace default \(RBAC\)$/);
  }, SLOW);
});

describe("raw requests", () => {
  test("create, merge-patch, strategic-merge-patch, json-patch and delete a ConfigMap", async () => {
    const name = `ktctl-e2e-raw-${RUN}`;
    const base = `/api/v1/namespaces/${NS}/configmaps`;
    await kube.request("POST", base, { metadata: { name, labels: { [LABEL]: RUN } }, data: { a: "1" } });
    cleanups.push(() => kube.request("DELETE", `${base}/${name}`).catch(() => {}));
    await kube.request("PATCH", `${base}/${name}`, { data: { b: "2" } }); // merge patch by default
    await kube.request("PATCH", `${base}/${name}`, { data: { c: "3" } }, "application/strategic-merge-patch+json");
    const patched = await kube.request<any>("PATCH", `${base}/${name}`, [{ op: "remove", path: "/data/a" }], "application/json-patch+json");
    expect(patched.data).toEqual({ b: "2", c: "3" });
    await expectKtctlError(kube.request("POST", base, { metadata: { name } }), ExitCode.conflict, /already exists/);
    await kube.request("DELETE", `${base}/${name}`);
  }, SLOW);
});

describe("watch", () => {
  test("sees a ConfigMap created, changed and deleted, then ends when aborted", async () => {
    const name = `ktctl-e2e-watch-${RUN}`;
    const base = `/api/v1/namespaces/${NS}/configmaps`;
    const events: string[] = [];
    const stop = new AbortController();
    let sawDeleted: () => void;
    const deleted = new Promise<void>((r) => (sawDeleted = r));
    let sawAdded: () => void;
    const added = new Promise<void>((r) => (sawAdded = r));
    const watching = kube.watch(base, { labelSelector: `${LABEL}=${RUN}-watch` }, (type, obj) => {
      if (obj?.metadata?.name !== name) return;
      events.push(type);
      if (type === "ADDED") sawAdded();
      if (type === "DELETED") sawDeleted();
    }, stop.signal);

    await kube.request("POST", base, { metadata: { name, labels: { [LABEL]: `${RUN}-watch` } }, data: { v: "1" } });
    cleanups.push(() => kube.request("DELETE", `${base}/${name}`).catch(() => {}));
    await added;
    await kube.request("PATCH", `${base}/${name}`, { data: { v: "2" } });
    await kube.request("DELETE", `${base}/${name}`);
    await deleted;
    stop.abort();
    await watching; // resolves, does not throw, once aborted
    expect(events).toEqual(["ADDED", "MODIFIED", "DELETED"]);
  }, SLOW);

  test.skipIf(!versionOneGone)("a resourceVersion the server no longer has (410 Gone) is recovered by relisting", async () => {
    const name = `ktctl-e2e-gone-${RUN}`;
    const base = `/api/v1/namespaces/${NS}/configmaps`;
    await kube.request("POST", base, { metadata: { name, labels: { [LABEL]: `${RUN}-gone` } } });
    cleanups.push(() => kube.request("DELETE", `${base}/${name}`).catch(() => {}));
    const stop = new AbortController();
    const seen = new Promise<string>((resolve) => {
      kube
        .watch(base, { labelSelector: `${LABEL}=${RUN}-gone`, resourceVersion: "1" }, (type, obj) => {
          if (obj?.metadata?.name === name) resolve(type);
        }, stop.signal)
        .catch((e) => resolve(`error: ${e.message}`));
    });
    expect(await seen).toBe("ADDED");
    stop.abort();
  }, SLOW);

  test("watching something forbidden or missing fails instead of retrying forever", async () => {
    const stop = new AbortController();
    await expectKtctlError(kube.watch("/apis/nope.example.com/v1/widgets", {}, () => {}, stop.signal), ExitCode.notFound, /not found/);
  }, SLOW);
});

describe("waits", () => {
  test("a pod whose image cannot be used fails the wait at once with the image and the reason", async () => {
    const image = `ktctl.local/does-not-exist-${RUN}:1`;
    const name = await createPod(podSpec(`ktctl-e2e-badimage-${RUN}`, image));
    const started = performance.now();
    const progress: string[] = [];
    await expectKtctlError(
      waitForPod(kube, NS, name, (p) => isPodReady(p), { timeoutMs: 120_000, onProgress: (s) => progress.push(s) }),
      ExitCode.image,
      new RegExp(`image ${reEscape(image)} of pod default/${name} cannot be used: (ErrImageNeverPull|ImagePullBackOff|ErrImagePull)`),
    );
    const seconds = (performance.now() - started) / 1000;
    console.log(`image error reported after ${seconds.toFixed(1)}s; progress: ${progress.join(" -> ")}`);
    expect(seconds).toBeLessThan(30);
  }, SLOW);

  test.skipIf(!nodeImages.has(TOOLBOX_IMAGE))(`waitForPod returns the running ${TOOLBOX_IMAGE} pod`, async () => {
    const spec = podSpec(`ktctl-e2e-toolbox-${RUN}`, TOOLBOX_IMAGE);
    spec.spec!.containers[0]!.command = ["sleep", "3600"];
    const name = await createPod(spec);
    const started = performance.now();
    const pod = await waitForPod(kube, NS, name, (p) => p.status?.phase === "Running" && isPodReady(p), { timeoutMs: 90_000 });
    console.log(`toolbox pod ready after ${((performance.now() - started) / 1000).toFixed(1)}s`);
    expect(pod.metadata?.name).toBe(name);
    expect(pod.status?.phase).toBe("Running");
  }, SLOW);

  test("waitForObject: waits for a deletion, and times out with the last known state", async () => {
    const name = `ktctl-e2e-wait-${RUN}`;
    const base = `/api/v1/namespaces/${NS}/configmaps`;
    await kube.request("POST", base, { metadata: { name, labels: { [LABEL]: RUN } } });
    const gone = waitForObject(kube, base, name, (o) => !o, { timeoutMs: 30_000, kind: "configmap" });
    await kube.request("DELETE", `${base}/${name}`);
    expect(await gone).toBeUndefined();
    // Already absent: answered at once.
    expect(await waitForObject(kube, base, name, (o) => !o, { timeoutMs: 30_000 })).toBeUndefined();
    await expectKtctlError(
      waitForObject(kube, base, name, (o) => !!o, { timeoutMs: 1500, kind: "configmap" }),
      ExitCode.timeout,
      new RegExp(`timed out after 2s waiting for configmap default/${name} \\(not found yet\\)`),
    );
  }, SLOW);
});

describe("portForward", () => {
  let echoPod: string;

  beforeAll(async () => {
    expect(nodeImages.has(ECHO_IMAGE)).toBe(true);
    echoPod = await createPod(podSpec(`ktctl-e2e-echo-${RUN}`, ECHO_IMAGE, { containers: [{ name: "echo", image: ECHO_IMAGE, imagePullPolicy: "Never", readinessProbe: { tcpSocket: { port: 9090 }, periodSeconds: 1 } }] }));
    await waitForPod(kube, NS, echoPod, isPodReady, { timeoutMs: 90_000 });
  }, SLOW);

  test("16 MiB round-trips intact through the echo pod; the stream closes cleanly", async () => {
    const stream = await kube.portForward(NS, echoPod, 9090);
    const data = randomBytes(16 * MiB);
    const started = performance.now();
    const echoed = collect(stream, data.length);
    await writeAll(stream, data, 64 * 1024);
    const back = await echoed;
    const seconds = (performance.now() - started) / 1000;
    console.log(`16 MiB echoed in ${seconds.toFixed(2)}s (${((16 * 2) / seconds).toFixed(1)} MiB/s both ways)`);
    expect(sha256(back)).toBe(sha256(data));
    stream.end();
    await once(stream, "close");
    expect(stream.errored).toBeNull();
  }, SLOW);

  test("back-pressure: an unread stream stops accepting writes; reading lets everything through", async () => {
    const stream = await kube.portForward(NS, echoPod, 9090);
    const total = 512 * MiB;
    const chunk = Buffer.alloc(256 * 1024, 7);
    let written = 0;
    let stalled = false;
    // Nobody reads: the echo fills the path back to us. Writes must stop being accepted well before
    // `total` bytes, or this process would be buffering what the network cannot carry.
    while (written < total) {
      written += chunk.length;
      if (!stream.write(chunk)) {
        // An observation window, not a readiness wait: nothing should drain while nobody reads.
        const drained = await Promise.race([once(stream, "drain").then(() => true), Bun.sleep(3000).then(() => false)]);
        if (!drained) {
          stalled = true;
          break;
        }
      }
    }
    console.log(`writes stalled after ${(written / MiB).toFixed(0)} MiB unread (our buffers: ${(stream.writableLength / MiB).toFixed(1)} MiB out, ${(stream.readableLength / MiB).toFixed(1)} MiB in)`);
    expect(stalled).toBe(true);
    expect(stream.readableLength).toBeLessThan(4 * MiB);
    // Now read: every byte written comes back.
    let received = 0;
    const allBack = new Promise<void>((resolve, reject) => {
      stream.on("data", (c: Buffer) => {
        received += c.length;
        if (received >= written) resolve();
      });
      stream.on("error", reject);
    });
    await allBack;
    expect(received).toBe(written);
    stream.destroy();
  }, SLOW);

  test("a port nobody listens on surfaces the error channel as a stream error", async () => {
    const stream = await kube.portForward(NS, echoPod, 9999);
    stream.resume();
    stream.write("hello");
    const [error] = await once(stream, "error");
    expect(isKtctlError(error)).toBe(true);
    expect(error.exitCode).toBe(ExitCode.unreachable);
    expect(error.message).toBe(`port-forward to default/${echoPod}:9999 failed: nothing listens on port 9999 in the pod (connection refused)`);
  }, SLOW);

  test("a missing pod is notFound before any stream exists", async () => {
    await expectKtctlError(kube.portForward(NS, `nope-${RUN}`, 9090), ExitCode.notFound, /not found: pod "nope-/);
  }, SLOW);
});

function collect(stream: Duplex, length: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let got = 0;
  return new Promise((resolve, reject) => {
    stream.on("data", (c: Buffer) => {
      parts.push(c);
      got += c.length;
      if (got >= length) resolve(Buffer.concat(parts));
    });
    stream.on("error", reject);
    stream.on("end", () => reject(new Error(`stream ended after ${got} of ${length} bytes`)));
  });
}

async function writeAll(stream: Duplex, data: Buffer, chunkSize: number) {
  for (let at = 0; at < data.length; at += chunkSize) {
    if (!stream.write(data.subarray(at, at + chunkSize))) await once(stream, "drain");
  }
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const reEscape = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

function selfSignedPem(): string {
  const proc = Bun.spawnSync([
    "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", "/dev/null", "-subj", "/CN=not-the-cluster-ca", "-days", "1",
  ]);
  return proc.stdout.toString();
}
