// `ktctl connect --shareShadow` from the laptop namespace: connects of one user to a namespace share
// ONE shadow pod, which lists its sharers; one leaving (Ctrl-C, or SIGKILL and its watchdog) takes
// only its own share and the others keep working; the last one leaving removes the pod. Runs in a
// namespace of its own with its own workload, so other tests' changes to demo do not interfere.

import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectKube } from "../../core/kube/index.ts";
import { leaseName } from "../../core/session/labels.ts";
import { createUndoRegistry } from "../../core/session/undo.ts";
import { releaseShareStep } from "../../core/session/steps.ts";
import { joinSharedShadow, sharedShadowPod } from "../../core/shadow/shared.ts";
import { createSessionKeyPair } from "../../core/protocol/keys.ts";
import { echoWorkloadYaml, namespaceYaml } from "./echo-workload.ts";
import { KTCTL, KUBECONFIG, LAPTOP_NS, eventually, kubectl, kubectlJson, kubectlOk, requireCluster, runInLaptop, startKtctl, waitFor, type RunningKtctl } from "./harness.ts";

const NS = "ktctl-share-e2e";
const LAPTOP_ETC = `/etc/netns/${LAPTOP_NS}`;
let home: string;
let env: Record<string, string>;
const running = new Set<RunningKtctl>();

const WORKLOAD = [namespaceYaml(NS), echoWorkloadYaml({ namespace: NS, name: "web" })].join("---\n");

function start(args: string[]): RunningKtctl {
  const ktctl = startKtctl(["-n", NS, "connect", "--shareShadow", "--debug", ...args], env);
  running.add(ktctl);
  return ktctl;
}

async function sessionOf(ktctl: RunningKtctl): Promise<string> {
  const line = await ktctl.waitForOutput(/Connected to namespace \S+ in [\d.]+s \(session [a-z0-9]+/, 90_000);
  return /session ([a-z0-9]+)/.exec(line)![1]!;
}

async function proxyPortOf(ktctl: RunningKtctl): Promise<number> {
  return Number(/proxy on 127\.0\.0\.1:(\d+)/.exec(await ktctl.waitForOutput(/proxy on 127\.0\.0\.1:\d+/))![1]);
}

/** The shared shadow pods of the namespace (not terminating), with their sharers. */
async function sharedPods(): Promise<{ name: string; uid: string; sharers: string[] }[]> {
  const list = await kubectlJson<{ items: any[] }>(["-n", NS, "get", "pods", "-l", "ktctl.io/share"]);
  return list.items
    .filter((p) => !p.metadata.deletionTimestamp)
    .map((p) => ({ name: p.metadata.name, uid: p.metadata.uid, sharers: JSON.parse(p.metadata.annotations?.["ktctl.io/sharers"] ?? "[]") }));
}

/** Every ktctl object left in the namespace, shared pods and leases included. */
async function leftovers(): Promise<string[]> {
  const out = await kubectlOk(["-n", NS, "get", "pods,leases", "-l", "ktctl.io/managed-by=ktctl", "-o", "name"]);
  return out.split("\n").filter(Boolean);
}

const leaseOf = async (id: string) => (await kubectl(["-n", NS, "get", "lease", `ktctl-${id}`, "-o", "name"])).code === 0;

async function viaProxy(port: number, path: string) {
  const r = await runInLaptop(["curl", "-sS", "-m", "5", "--socks5-hostname", `127.0.0.1:${port}`, `http://web/${path}`], { timeoutMs: 15_000 });
  if (r.code !== 0) throw new Error(`through the proxy on ${port}: exit ${r.code} ${r.stderr.trim()}`);
  return JSON.parse(r.stdout);
}

async function direct(path: string) {
  const r = await runInLaptop(["curl", "-sS", "-m", "5", `http://web.${NS}/${path}`], { timeoutMs: 15_000 });
  if (r.code !== 0) throw new Error(`http://web.${NS}/${path}: exit ${r.code} ${r.stderr.trim()}`);
  return JSON.parse(r.stdout);
}

const laptopFiles = async () => ({
  resolv: await Bun.file(`${LAPTOP_ETC}/resolv.conf`).text(),
  hosts: await Bun.file(`${LAPTOP_ETC}/hosts`).text(),
  nft: (await runInLaptop(["nft", "list", "ruleset"])).stdout,
});

beforeAll(async () => {
  await requireCluster();
  home = await mkdtemp(join(tmpdir(), "ktctl-share-e2e-"));
  env = { KTCTL_HOME: home };
  const manifest = join(home, "workload.yaml");
  await writeFile(manifest, WORKLOAD);
  // A namespace still terminating from an earlier run would refuse the workload.
  await kubectl(["wait", "--for=delete", `namespace/${NS}`, "--timeout=90s"], { timeoutMs: 100_000 });
  await kubectlOk(["apply", "-f", manifest]);
  await waitFor(["deployment/web", "--for=condition=Available"], NS, 90);
}, 120_000);

afterEach(async () => {
  for (const ktctl of running) {
    if (process.env.KTCTL_E2E_SHOW_LOG) console.log(ktctl.output());
    await ktctl.stop("SIGINT");
  }
  running.clear();
});

afterAll(async () => {
  await kubectl(["delete", "namespace", NS, "--timeout=60s"], { timeoutMs: 90_000 });
  await rm(home, { recursive: true, force: true });
});

describe("connect --shareShadow", () => {
  test("two connects started together share one pod; the first exits and the second still works; the second exits and no pod is left", async () => {
    const before = await laptopFiles();
    // Started at the same moment: both race to create the pod, one wins and the other joins.
    const system = start(["--mode", "system"]);
    const proxy = start(["--mode", "proxy", "--proxyPort", "0"]);
    const [first, second] = await Promise.all([sessionOf(system), sessionOf(proxy)]);
    const port = await proxyPortOf(proxy);

    const pods = await sharedPods();
    expect(pods.length).toBe(1);
    expect(pods[0]!.sharers).toEqual([first, second].sort());
    // No session owns it: neither has a pod of its own.
    const own = await kubectlOk(["-n", NS, "get", "pods", "-l", `ktctl.io/session in (${first},${second})`, "-o", "name"]);
    expect(own.trim()).toBe("");
    expect((await direct("system")).path).toBe("/system");
    expect((await viaProxy(port, "proxy")).path).toBe("/proxy");
    // A second connect that would also rewrite resolv.conf is refused, and changes nothing.
    const third = start(["--mode", "system"]);
    expect(await third.proc.exited).toBe(10);
    expect(third.output()).toContain(`is already changed by ktctl connect session ${first}`);
    expect((await sharedPods())[0]!.sharers).toEqual([first, second].sort());
    expect((await direct("still-system")).path).toBe("/still-system");

    expect(await system.stop("SIGINT")).toBe(130);
    expect(await laptopFiles()).toEqual(before);
    expect(await leaseOf(first)).toBe(false);
    const after = await sharedPods();
    expect(after).toEqual([{ ...pods[0]!, sharers: [second] }]);
    // New connections through the same shadow, after the first sharer left.
    for (let i = 0; i < 3; i++) expect((await viaProxy(port, `after-${i}`)).path).toBe(`/after-${i}`);

    expect(await proxy.stop("SIGINT")).toBe(130);
    await eventually(async () => expect(await leftovers()).toEqual([]), 30_000);
  }, 180_000);

  test("SIGKILL of one sharer: the other keeps working, the watchdog releases only the killed share", async () => {
    const a = start(["--mode", "proxy", "--proxyPort", "0"]);
    const idA = await sessionOf(a);
    const b = start(["--mode", "proxy", "--proxyPort", "0"]);
    const idB = await sessionOf(b);
    expect(b.output()).toContain(`sharing shadow pod`);
    const portB = await proxyPortOf(b);
    const [pod] = await sharedPods();
    expect(pod!.sharers).toEqual([idA, idB].sort());

    await a.stop("SIGKILL");
    // The watchdog, not ktctl, takes A off the pod and removes A's lease.
    await eventually(async () => {
      expect(await leaseOf(idA)).toBe(false);
      expect(await sharedPods()).toEqual([{ ...pod!, sharers: [idB] }]);
    }, 30_000);
    for (let i = 0; i < 3; i++) expect((await viaProxy(portB, `survivor-${i}`)).path).toBe(`/survivor-${i}`);
    expect(b.proc.exitCode).toBeNull();

    expect(await b.stop("SIGINT")).toBe(130);
    await eventually(async () => expect(await leftovers()).toEqual([]), 30_000);
  }, 180_000);

  test("the shared pod deleted under both: both heal into one new pod that lists them both", async () => {
    const a = start(["--mode", "proxy", "--proxyPort", "0"]);
    const idA = await sessionOf(a);
    const b = start(["--mode", "proxy", "--proxyPort", "0"]);
    const idB = await sessionOf(b);
    const [portA, portB] = await Promise.all([proxyPortOf(a), proxyPortOf(b)]);
    const [pod] = await sharedPods();

    await kubectlOk(["-n", NS, "delete", "pod", pod!.name, "--wait=false"]);
    await eventually(async () => expect((await viaProxy(portA, "healed-a")).path).toBe("/healed-a"), 60_000, 500);
    await eventually(async () => expect((await viaProxy(portB, "healed-b")).path).toBe("/healed-b"), 60_000, 500);
    const healed = await eventually(async () => {
      const pods = await sharedPods();
      expect(pods.length).toBe(1);
      expect(pods[0]!.uid).not.toBe(pod!.uid);
      expect(pods[0]!.sharers).toEqual([idA, idB].sort());
      return pods[0]!;
    }, 30_000);
    expect(healed.name).toBe(pod!.name);

    expect(await a.stop("SIGINT")).toBe(130);
    expect((await viaProxy(portB, "still")).path).toBe("/still");
    expect(await b.stop("SIGINT")).toBe(130);
    await eventually(async () => expect(await leftovers()).toEqual([]), 30_000);
  }, 180_000);

  test("joins and releases racing each other against the API server: no sharer lost, the pod goes with the last", async () => {
    const kube = await connectKube({ kubeconfig: KUBECONFIG, namespace: NS });
    const { name, spec } = sharedShadowPod({ namespace: NS, owner: "race@e2e", key: "race", publicKey: createSessionKeyPair().publicKey, global: {}, options: { role: "race" } });
    const ids = Array.from({ length: 8 }, (_, i) => `race${i}${Math.random().toString(36).slice(2, 6)}`);
    // Real session Leases: a sharer without one counts as gone and is dropped.
    const leases = "/apis/coordination.k8s.io/v1/namespaces/" + NS + "/leases";
    for (const id of ids) await kube.request("POST", leases, { apiVersion: "coordination.k8s.io/v1", kind: "Lease", metadata: { name: leaseName(id) }, spec: {} });
    const logger = { debug: () => undefined };
    const join = (id: string) => joinSharedShadow(kube, { namespace: NS, name, spec, sessionId: id, timeoutMs: 30_000, logger });
    const registry = createUndoRegistry();
    const release = (id: string) => registry.run({ kube, sessionId: id }, releaseShareStep({ apiVersion: "v1", kind: "Pod", namespace: NS, name }));
    const sharersNow = async () => (await sharedPods()).filter((p) => p.name === name).map((p) => p.sharers);
    try {
      const joined = await Promise.all(ids.map(join));
      expect(joined.filter((r) => r.created).length).toBe(1);
      expect(await sharersNow()).toEqual([[...ids].sort()]);

      // Half leave while the other half joins again (already in: no change) and one new joins.
      const newcomer = ids[0]!.replace(/^race0/, "racex");
      await kube.request("POST", leases, { apiVersion: "coordination.k8s.io/v1", kind: "Lease", metadata: { name: leaseName(newcomer) }, spec: {} });
      const [leaving, staying] = [ids.slice(0, 4), ids.slice(4)];
      await Promise.all([...leaving.map(release), ...staying.map(join), join(newcomer)]);
      expect(await sharersNow()).toEqual([[...staying, newcomer].sort()]);

      // A sharer whose Lease is gone (ended without releasing) is dropped by the next change.
      await kube.request("DELETE", `${leases}/${leaseName(newcomer)}`);
      await release(staying[0]!);
      expect(await sharersNow()).toEqual([staying.slice(1).sort()]);

      // The rest leave together: exactly the last one deletes, nobody fails.
      await Promise.all(staying.slice(1).map(release));
      expect(await sharersNow()).toEqual([]);
      // Releasing again, or for a pod that is gone, is harmless.
      await release(staying[1]!);
    } finally {
      for (const id of [...ids, ids[0]!.replace(/^race0/, "racex")]) await kube.request("DELETE", `${leases}/${leaseName(id)}`).catch(() => undefined);
      await kubectl(["-n", NS, "delete", "pod", name, "--ignore-not-found", "--wait=false"]);
    }
  }, 120_000);

  test("ktctl clean removes a shared pod whose sharers all ended without releasing it, and nothing else", async () => {
    const kube = await connectKube({ kubeconfig: KUBECONFIG, namespace: NS });
    const leases = "/apis/coordination.k8s.io/v1/namespaces/" + NS + "/leases";
    const logger = { debug: () => undefined };
    const orphan = sharedShadowPod({ namespace: NS, owner: "orphan@e2e", key: "orphan", publicKey: createSessionKeyPair().publicKey, global: {}, options: { role: "orphan" } });
    const kept = sharedShadowPod({ namespace: NS, owner: "kept@e2e", key: "kept", publicKey: createSessionKeyPair().publicKey, global: {}, options: { role: "kept" } });
    const [dead, alive] = ["dead" + Date.now().toString(36), "live" + Date.now().toString(36)];
    for (const id of [dead, alive]) await kube.request("POST", leases, { apiVersion: "coordination.k8s.io/v1", kind: "Lease", metadata: { name: leaseName(id) }, spec: {} });
    try {
      await joinSharedShadow(kube, { namespace: NS, ...orphan, sessionId: dead, timeoutMs: 30_000, logger });
      await joinSharedShadow(kube, { namespace: NS, ...kept, sessionId: alive, timeoutMs: 30_000, logger });
      // The session vanished without its release (its lease deleted by hand, its journal lost).
      await kube.request("DELETE", `${leases}/${leaseName(dead)}`);
      const clean = await runInLaptop([...KTCTL, "--kubeconfig", KUBECONFIG, "-n", NS, "clean"], { env, timeoutMs: 60_000 });
      expect(clean.code).toBe(0);
      expect(clean.stdout + clean.stderr).toContain(`delete pod ${NS}/${orphan.name}`);
      expect((await sharedPods()).map((p) => p.name)).toEqual([kept.name]);
    } finally {
      await kube.request("DELETE", `${leases}/${leaseName(alive)}`).catch(() => undefined);
      await kubectl(["-n", NS, "delete", "pod", orphan.name, kept.name, "--ignore-not-found", "--wait=false"]);
    }
  }, 120_000);
});
