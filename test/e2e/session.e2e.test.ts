// Sessions against the real cluster: every way a session can end puts back exactly what it changed.
// close(); a signal; SIGKILL (the watchdog undoes); SIGKILL of process and watchdog (the Lease
// expires by the server's clock and `clean` undoes, from another host or from this one).

import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createConsola } from "consola";
import { connectKube, waitForObject } from "../../core/kube/index.ts";
import type { Kube } from "../../core/plugin-api.ts";
import { executePlan, planClean } from "../../core/session/clean.ts";
import { isProcessAlive } from "../../core/session/processes.ts";
import { journalPath, readLocalJournal } from "../../core/session/journal.ts";
import { serverNow } from "../../core/session/lease.ts";
import { ANNOTATION_JOURNAL, LABEL_SESSION, leaseName } from "../../core/session/labels.ts";
import { startSession } from "../../core/session/session.ts";
import { listSessions } from "../../core/session/status.ts";
import { createUndoRegistry } from "../../core/session/undo.ts";
import { deleteObjectStep } from "../../core/session/steps.ts";
import { httpStatus } from "../../core/kube/objects.ts";
import { watchdogArgv } from "../../core/session/watchdog.ts";
import { KUBECONFIG, LAPTOP_NS, REPO, eventually, requireCluster, run } from "./harness.ts";
import { makeSteps } from "./session-steps.ts";

// Every test waits on real processes and the real API server; bunfig's [test] timeout is not applied.
setDefaultTimeout(60_000);

const NS = "default";
const FIXTURE = join(REPO, "test/e2e/session-fixture.ts");
const ORIGINAL_DATA = { color: "blue", size: "L" };
const ORIGINAL_FILE = "original laptop bytes\n";
const logger = createConsola({ level: process.env.KTCTL_E2E_DEBUG ? 4 : 0 });
const registry = createUndoRegistry();
const cmPath = `/api/v1/namespaces/${NS}/configmaps`;

let kube: Kube;
let root: string;
let serial = 0;
const targets: string[] = [];
const sessionIds = new Set<string>();
const children: Subprocess[] = [];
type Subprocess = ReturnType<typeof Bun.spawn>;

beforeAll(async () => {
  await requireCluster();
  kube = await connectKube({ kubeconfig: KUBECONFIG, namespace: NS });
  root = await mkdtemp(join(tmpdir(), "ktctl-session-e2e-"));
});

afterAll(async () => {
  for (const child of children) child.kill("SIGKILL");
  for (const name of targets) await kube.request("DELETE", `${cmPath}/${name}`).catch(() => undefined);
  // What a failed test may have left: everything labelled with the sessions the tests started.
  const ids = await Promise.all(
    (await readdir(root).catch(() => [] as string[])).map(async (dir) => readdir(join(root, dir, "sessions")).catch(() => [] as string[])),
  );
  for (const file of ids.flat()) sessionIds.add(file.split(".")[0]!);
  const selector = encodeURIComponent(`${LABEL_SESSION} in (${[...sessionIds].join(",")})`);
  if (sessionIds.size) {
    await kube.request("DELETE", `${cmPath}?labelSelector=${selector}`).catch(() => undefined);
    await kube.request("DELETE", `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases?labelSelector=${selector}`).catch(() => undefined);
  }
  await rm(root, { recursive: true, force: true });
});

/** A fresh KTCTL_HOME, a target ConfigMap with known data and a laptop file with known bytes. */
async function scene() {
  const n = ++serial;
  const home = join(root, `home${n}`);
  const target = `ktctl-e2e-target-${Date.now().toString(36)}-${n}`;
  targets.push(target);
  await kube.request("POST", cmPath, { apiVersion: "v1", kind: "ConfigMap", metadata: { name: target, labels: { app: "e2e" } }, data: ORIGINAL_DATA });
  const file = join(root, `file${n}.conf`);
  await writeFile(file, ORIGINAL_FILE);
  await chmod(file, 0o640);
  return { home, target, file };
}

const isRestored = (cm: any) =>
  cm !== undefined &&
  JSON.stringify(cm.data) === JSON.stringify(ORIGINAL_DATA) &&
  cm.metadata.labels?.[LABEL_SESSION] === undefined &&
  !Object.keys(cm.metadata.annotations ?? {}).some((k) => k.startsWith("ktctl.io/")) &&
  JSON.stringify(cm.metadata.labels) === JSON.stringify({ app: "e2e" });

/** Resolves when the cluster shows both changes undone (watching, not polling). */
function clusterRestored(target: string, created: string, timeoutMs: number) {
  return Promise.all([
    waitForObject(kube, cmPath, created, (o) => o === undefined, { timeoutMs }),
    waitForObject(kube, cmPath, target, isRestored, { timeoutMs }),
  ]);
}

async function fileRestored(file: string) {
  expect(await readFile(file, "utf8")).toBe(ORIGINAL_FILE);
  expect((await stat(file)).mode & 0o777).toBe(0o640);
}

async function leaseExists(id: string): Promise<boolean> {
  try {
    await kube.request("GET", `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/${leaseName(id)}`);
    return true;
  } catch (error) {
    if (httpStatus(error) === 404) return false;
    throw error;
  }
}

/** Runs the fixture as the "laptop": inside the laptop network namespace when the harness has one. */
const asLaptop = (argv: string[]) => (existsSync(`/var/run/netns/${LAPTOP_NS}`) ? ["ip", "netns", "exec", LAPTOP_NS, ...argv] : argv);

async function startFixture(home: string, target: string, file: string, leaseSeconds?: number, env: Record<string, string> = {}) {
  const argv = [process.execPath, FIXTURE, "start", KUBECONFIG, NS, target, file, ...(leaseSeconds ? [String(leaseSeconds)] : [])];
  const proc = Bun.spawn(asLaptop(argv), {
    env: { ...process.env, ...env, KTCTL_HOME: home },
    stdout: "pipe",
    stderr: "pipe",
  });
  children.push(proc);
  const reader = proc.stdout.getReader();
  let text = "";
  const deadline = setTimeout(() => proc.kill("SIGKILL"), 60_000);
  while (!text.includes("\n")) {
    const chunk = await reader.read();
    if (chunk.done) throw new Error(`fixture ended before READY: ${await new Response(proc.stderr).text()}`);
    text += new TextDecoder().decode(chunk.value);
  }
  clearTimeout(deadline);
  reader.releaseLock();
  const line = text.split("\n")[0]!;
  expect(line).toStartWith("READY ");
  const info = JSON.parse(line.slice(6)) as { id: string; pid: number; watchdogPid: number; created: string };
  sessionIds.add(info.id);
  expect(info.pid).toBe(proc.pid);
  return { proc, info };
}

/**
 * Kills the session process and its watchdog. The process is stopped first: otherwise it may see
 * its watchdog die and start a new one (as it should) before its own SIGKILL lands.
 */
async function killBoth(proc: Subprocess, watchdogPid: number) {
  proc.kill("SIGSTOP");
  process.kill(watchdogPid, "SIGKILL");
  proc.kill("SIGKILL");
  await proc.exited;
  // Not our child: its end is seen in /proc, not awaited.
  await eventually(async () => expect(isProcessAlive(watchdogPid)).toBe(false), 5_000, 20);
}

/** The changes are really there before anything undoes them. */
async function expectChanged(id: string, target: string, created: string, file: string) {
  const cm = await kube.request<any>("GET", `${cmPath}/${target}`);
  expect(cm.data).toEqual({ color: "red", size: "L", added: "by the session" });
  expect(cm.metadata.labels[LABEL_SESSION]).toBe(id);
  const made = await kube.request<any>("GET", `${cmPath}/${created}`);
  expect(made.metadata.labels[LABEL_SESSION]).toBe(id);
  expect(await readFile(file, "utf8")).toBe("changed by the session\n");
}

describe("session close", () => {
  test("close() undoes every step last-first and removes lease, journal and watchdog", async () => {
    const { home, target, file } = await scene();
    const session = await startSession({
      kube,
      mode: "e2e",
      target: `configmap/${target}`,
      global: { kubeconfig: KUBECONFIG, namespace: NS },
      logger,
      registry,
      home,
      handleSignals: false,
      watchdog: (id) => watchdogArgv(id, { execPath: process.execPath, main: FIXTURE, argv: [process.execPath, FIXTURE] }),
    });
    sessionIds.add(session.id);
    const { created } = await makeSteps(session, kube, NS, target, file);
    await expectChanged(session.id, target, created, file);

    // Both journals hold the steps; the Lease copy lacks the laptop file's bytes.
    const local = await readLocalJournal(home, session.id);
    expect(local!.steps.map((s) => [s.kind, s.where, s.state])).toEqual([
      ["delete-object", "cluster", "applied"],
      ["patch-object", "cluster", "applied"],
      ["restore-file", "laptop", "applied"],
    ]);
    expect(local!.meta.kube).toMatchObject({ kubeconfig: KUBECONFIG, context: kube.context, namespace: NS, server: kube.server });
    const lease = await kube.request<any>("GET", `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/${leaseName(session.id)}`);
    const leaseSteps = JSON.parse(lease.metadata.annotations[ANNOTATION_JOURNAL]);
    expect(leaseSteps.map((s: any) => s.kind)).toEqual(["delete-object", "patch-object", "restore-file"]);
    expect(leaseSteps[2].undo).toEqual({});
    expect(lease.metadata.labels).toMatchObject({ "ktctl.io/managed-by": "ktctl", "ktctl.io/role": "session", [LABEL_SESSION]: session.id });
    const watchdogPid = session.watchdogPid!;
    expect(isProcessAlive(watchdogPid)).toBe(true);

    const started = performance.now();
    await session.close("test done");
    const closeMs = performance.now() - started;
    expect(await session.ended).toBe("test done");
    await clusterRestored(target, created, 5_000);
    await fileRestored(file);
    expect(await leaseExists(session.id)).toBe(false);
    expect(existsSync(journalPath(home, session.id))).toBe(false);
    // Told "closed", the watchdog leaves without touching anything.
    await eventually(async () => expect(isProcessAlive(watchdogPid)).toBe(false), 10_000, 50);
    expect(await readdir(join(home, "sessions"))).toEqual([]);
    console.log(`close(): 3 steps undone in ${closeMs.toFixed(0)} ms`);
    // Closing twice is one close.
    await session.close("again");
  });

  test("a step whose apply fails is undone at once; an object that was not ours survives", async () => {
    const { home, target } = await scene();
    const session = await startSession({ kube, mode: "e2e", global: { namespace: NS }, logger, registry, home, handleSignals: false, watchdog: false });
    sessionIds.add(session.id);
    try {
      // Created, then the apply fails afterwards: the object must not stay.
      const name = `ktctl-${session.id}-half`;
      const failure = await session
        .step(deleteObjectStep({ apiVersion: "v1", kind: "ConfigMap", namespace: NS, name }), async () => {
          await kube.request("POST", cmPath, { apiVersion: "v1", kind: "ConfigMap", metadata: { name, labels: session.labels } });
          throw new Error("boom after create");
        })
        .catch((e) => e);
      expect(failure.message).toBe("boom after create");
      await waitForObject(kube, cmPath, name, (o) => o === undefined, { timeoutMs: 5_000 });

      // Creating a name someone else already uses fails with AlreadyExists; the undo must not delete theirs.
      const clash = await session
        .step(deleteObjectStep({ apiVersion: "v1", kind: "ConfigMap", namespace: NS, name: target }), () =>
          kube.request("POST", cmPath, { apiVersion: "v1", kind: "ConfigMap", metadata: { name: target, labels: session.labels } }),
        )
        .catch((e) => e);
      expect(httpStatus(clash)).toBe(409);
      const theirs = await kube.request<any>("GET", `${cmPath}/${target}`);
      expect(theirs.data).toEqual(ORIGINAL_DATA);

      const journal = await readLocalJournal(home, session.id);
      expect(journal!.steps.map((s) => s.state)).toEqual(["undone", "undone"]);
    } finally {
      await session.close();
    }
  });

  test("scale: a workload scaled to 0 gets its replica count back, marks removed", async () => {
    const { home } = await scene();
    const name = `ktctl-e2e-scale-${Date.now().toString(36)}`;
    const deployments = `/apis/apps/v1/namespaces/${NS}/deployments`;
    const labels = { app: name };
    await kube.request("POST", deployments, {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name, labels },
      spec: { replicas: 2, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: { containers: [{ name: "c", image: "ktctl.local/echo:1" }] } } },
    });
    try {
      const session = await startSession({ kube, mode: "e2e", global: { namespace: NS }, logger, registry, home, handleSignals: false, watchdog: false });
      sessionIds.add(session.id);
      const before = await kube.request<any>("GET", `${deployments}/${name}`);
      const { scaleStep } = await import("../../core/session/steps.ts");
      const scale = scaleStep(session.id, before, `scale deployment ${NS}/${name} to 0`);
      expect(scale.spec.undo.replicas).toBe(2);
      await session.step(scale.spec, () => kube.request("PATCH", `${deployments}/${name}`, { metadata: scale.marks, spec: { replicas: 0 } }, "application/merge-patch+json"));
      const scaled = await kube.request<any>("GET", `${deployments}/${name}`);
      expect(scaled.spec.replicas).toBe(0);
      expect(scaled.metadata.labels[LABEL_SESSION]).toBe(session.id);
      await session.close();
      const back = await waitForObject(kube, deployments, name, (d: any) => d?.spec.replicas === 2, { timeoutMs: 5_000 });
      expect(back!.metadata.labels).toEqual(labels);
      expect(Object.keys(back!.metadata.annotations ?? {}).filter((k) => k.startsWith("ktctl.io/"))).toEqual([]);
    } finally {
      await kube.request("DELETE", `${deployments}/${name}`).catch(() => undefined);
    }
  });

  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143], ["SIGHUP", 129]] as const) {
    test(`${signal}: the process restores everything itself and exits ${code}`, async () => {
      const { home, target, file } = await scene();
      const { proc, info } = await startFixture(home, target, file);
      await expectChanged(info.id, target, info.created, file);
      proc.kill(signal);
      expect(await proc.exited).toBe(code);
      // Restored before the exit, not after: no waiting needed.
      const cm = await kube.request<any>("GET", `${cmPath}/${target}`);
      expect(isRestored(cm)).toBe(true);
      await clusterRestored(target, info.created, 1_000);
      await fileRestored(file);
      expect(await leaseExists(info.id)).toBe(false);
      expect(existsSync(journalPath(home, info.id))).toBe(false);
      await eventually(async () => expect(isProcessAlive(info.watchdogPid)).toBe(false), 10_000, 50);
      expect(await readdir(join(home, "sessions"))).toEqual([]);
    });
  }
});

describe("session killed", () => {
  test("SIGKILL: the watchdog restores the cluster and the laptop file", async () => {
    const { home, target, file } = await scene();
    const { proc, info } = await startFixture(home, target, file);
    await expectChanged(info.id, target, info.created, file);
    expect(isProcessAlive(info.watchdogPid)).toBe(true);

    // Detached: its own session and process group, no controlling terminal, output in its log file
    // (not in the parent's stdout/stderr), stdin a pipe (a socketpair under Bun).
    const stat = await readFile(`/proc/${info.watchdogPid}/stat`, "utf8");
    const [, , pgrp, sid, ttyNr] = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
    expect({ pgrp, sid, ttyNr }).toEqual({ pgrp: info.watchdogPid, sid: info.watchdogPid, ttyNr: 0 });
    const { readlink } = await import("node:fs/promises");
    const fds = await Promise.all([0, 1, 2].map((fd) => readlink(`/proc/${info.watchdogPid}/fd/${fd}`)));
    expect(fds[0]).toMatch(/^(pipe|socket):/);
    expect(fds[1]).toBe(join(home, "sessions", `${info.id}.watchdog.log`));
    expect(fds[2]).toBe(fds[1]);
    // A terminal's Ctrl-C or hang-up must not take it down: if it died here, nothing below restores.
    process.kill(info.watchdogPid, "SIGINT");
    process.kill(info.watchdogPid, "SIGHUP");

    const killed = performance.now();
    proc.kill("SIGKILL");
    await clusterRestored(target, info.created, 20_000);
    const clusterMs = performance.now() - killed;
    await eventually(() => fileRestored(file), 20_000, 50);
    await eventually(async () => expect(await leaseExists(info.id)).toBe(false), 20_000, 100);
    await eventually(async () => expect(isProcessAlive(info.watchdogPid)).toBe(false), 20_000, 50);
    const allMs = performance.now() - killed;
    expect(existsSync(journalPath(home, info.id))).toBe(false);
    expect(await readdir(join(home, "sessions"))).toEqual([]);
    console.log(`SIGKILL -> watchdog: cluster restored after ${clusterMs.toFixed(0)} ms, everything (file, lease, journal, watchdog gone) after ${allMs.toFixed(0)} ms`);
  });

  test("SIGKILL: the real CLI's hidden __watchdog command restores", async () => {
    const { home, target, file } = await scene();
    const { proc, info } = await startFixture(home, target, file, undefined, { KTCTL_E2E_WATCHDOG: "cli" });
    await expectChanged(info.id, target, info.created, file);
    const cmdline = await readFile(`/proc/${info.watchdogPid}/cmdline`, "utf8");
    expect(cmdline.split("\0").slice(1, 4)).toEqual([join(REPO, "core/cli/main.ts"), "__watchdog", info.id]);
    const killed = performance.now();
    proc.kill("SIGKILL");
    await clusterRestored(target, info.created, 20_000);
    const clusterMs = performance.now() - killed;
    await eventually(() => fileRestored(file), 20_000, 50);
    await eventually(async () => expect(await leaseExists(info.id)).toBe(false), 20_000, 100);
    await eventually(async () => expect(isProcessAlive(info.watchdogPid)).toBe(false), 20_000, 50);
    expect(await readdir(join(home, "sessions"))).toEqual([]);
    console.log(`SIGKILL -> CLI watchdog: cluster restored after ${clusterMs.toFixed(0)} ms`);
  });

  test("SIGKILL of process and watchdog: `ktctl status` and `ktctl clean` (CLI, on the laptop) see and restore it", async () => {
    const { home, target, file } = await scene();
    const { proc, info } = await startFixture(home, target, file);
    await killBoth(proc, info.watchdogPid);
    const ktctl = (...args: string[]) =>
      run(asLaptop([process.execPath, join(REPO, "core/cli/main.ts"), ...args, "--kubeconfig", KUBECONFIG, "-n", NS]), { env: { KTCTL_HOME: home } });

    const status = await ktctl("status", "-o", "json");
    expect(status.code).toBe(0);
    const listed = (JSON.parse(status.stdout) as any[]).find((s) => s.id === info.id);
    expect(listed).toMatchObject({ mode: "e2e", state: "dead", pendingSteps: 3, seenIn: ["cluster", "local"] });
    const table = await ktctl("status");
    expect(table.stdout).toMatch(new RegExp(`^SESSION\\s+OWNER\\s+MODE\\s+TARGET\\s+AGE\\s+RENEWED\\s+STATE\\s+STEPS`));
    expect(table.stdout).toMatch(new RegExp(`${info.id}\\s+\\S+\\s+e2e\\s+configmap/${target}\\s+\\S+\\s+\\S+ ago\\s+dead\\s+3`));

    const dry = await ktctl("clean", "--dryRun");
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain(`session ${info.id}`);
    expect(dry.stdout).toContain(`- undo: change configmap ${NS}/${target}`);
    expect(dry.stdout).toContain(`- undo: change ${file} [this host]`);
    await expectChanged(info.id, target, info.created, file);

    const cleaned = await ktctl("clean");
    expect(cleaned.code).toBe(0);
    expect(cleaned.stdout).toContain(`session ${info.id}: cleaned`);
    await clusterRestored(target, info.created, 5_000);
    await fileRestored(file);
    expect(await leaseExists(info.id)).toBe(false);
    expect((await ktctl("status", "-o", "json")).stdout.includes(info.id)).toBe(false);
  });

  test("SIGKILL of process and watchdog: the lease expires by server time, clean elsewhere restores the cluster, clean here the laptop", async () => {
    const LEASE = 6;
    const { home, target, file } = await scene();
    const elsewhere = join(root, `elsewhere${serial}`);
    const { proc, info } = await startFixture(home, target, file, LEASE);
    await expectChanged(info.id, target, info.created, file);

    const sessions = await listSessions(kube, { namespace: NS }, { home: elsewhere });
    const seen = sessions.find((s) => s.id === info.id);
    expect(seen).toMatchObject({ mode: "e2e", target: `configmap/${target}`, state: "alive", pendingSteps: 3, seenIn: ["cluster"] });

    await killBoth(proc, info.watchdogPid);
    const killed = performance.now();

    // Another host: no local journal. Right after the kill the lease is fresh: hands off.
    const early = await planClean(kube, { namespace: NS }, { home: elsewhere, registry });
    expect(early.entries.find((e) => e.sessionId === info.id)).toBeUndefined();
    expect(early.skipped.find((s) => s.sessionId === info.id)?.reason).toMatch(/^alive/);

    // No event announces an expiry: re-plan (each time a real read of the cluster) until it shows.
    const plan = await eventually(async () => {
      const p = await planClean(kube, { namespace: NS }, { home: elsewhere, registry });
      const entry = p.entries.find((e) => e.sessionId === info.id);
      if (!entry) throw new Error("not expired yet");
      return { ...p, entries: [entry] };
    }, 60_000, 500);
    const expiredMs = performance.now() - killed;
    const entry = plan.entries[0]!;
    expect(entry.why).toContain("lease expired");
    expect(entry.actions.map((a) => a.describe)).toEqual([
      `undo: change configmap ${NS}/${target}`,
      `undo: create configmap ${NS}/${info.created}`,
      `delete lease ${NS}/${leaseName(info.id)}`,
    ]);
    expect(entry.notes).toEqual([expect.stringContaining("1 laptop step(s) can only be undone on")]);

    const result = await executePlan(plan, kube, { home: elsewhere, registry });
    expect(result.entries).toEqual([{ sessionId: info.id, outcome: "cleaned", failures: [] }]);
    await clusterRestored(target, info.created, 5_000);
    expect(await leaseExists(info.id)).toBe(false);
    // The other host could not touch this laptop's file.
    expect(await readFile(file, "utf8")).toBe("changed by the session\n");

    // Back on the laptop: its journal, with a dead process, is cleaned without any clock.
    const local = await planClean(kube, { namespace: NS }, { home, registry });
    const mine = local.entries.find((e) => e.sessionId === info.id)!;
    expect(mine.why).toContain("is gone");
    const localResult = await executePlan({ ...local, entries: [mine] }, kube, { home, registry });
    expect(localResult.entries[0]!.outcome).toBe("cleaned");
    await fileRestored(file);
    expect(isRestored(await kube.request<any>("GET", `${cmPath}/${target}`))).toBe(true);
    expect(existsSync(journalPath(home, info.id))).toBe(false);
    console.log(`lease ${LEASE}s: clean elsewhere saw it expired ${expiredMs.toFixed(0)} ms after the kill`);
  }, 120_000);

  test("SIGKILL of process and watchdog: clean on the same laptop restores at once, lease or not", async () => {
    const { home, target, file } = await scene();
    const { proc, info } = await startFixture(home, target, file);
    await killBoth(proc, info.watchdogPid);
    const dry = await planClean(kube, { namespace: NS }, { home, registry });
    const entry = dry.entries.find((e) => e.sessionId === info.id)!;
    expect(entry.actions.map((a) => a.describe)).toEqual([
      "undo: change " + file,
      `undo: change configmap ${NS}/${target}`,
      `undo: create configmap ${NS}/${info.created}`,
      `delete lease ${NS}/${leaseName(info.id)}`,
      `remove local journal of ${info.id}`,
    ]);
    // A dry run changes nothing.
    await expectChanged(info.id, target, info.created, file);
    const result = await executePlan({ ...dry, entries: [entry] }, kube, { home, registry });
    expect(result).toMatchObject({ undone: 3, failed: 0 });
    await clusterRestored(target, info.created, 5_000);
    await fileRestored(file);
    expect(await leaseExists(info.id)).toBe(false);
    expect(existsSync(journalPath(home, info.id))).toBe(false);
  });
});

describe("takeover", () => {
  test("a session whose lease was claimed by clean ends itself at its next renewal", async () => {
    const { home, target, file } = await scene();
    const session = await startSession({
      kube,
      mode: "e2e",
      global: { namespace: NS },
      logger,
      registry,
      home,
      handleSignals: false,
      watchdog: false,
      leaseDurationSeconds: 3,
    });
    sessionIds.add(session.id);
    const { created } = await makeSteps(session, kube, NS, target, file);
    // As clean does after judging it expired: compare-and-swap on the version it read. The Lease's
    // copy of a laptop step is written behind the step, so a version read at once may be one
    // write old: read again on a conflict, as clean's next run would.
    const path = `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/${leaseName(session.id)}`;
    for (let attempt = 1; ; attempt++) {
      const lease = await kube.request<any>("GET", path);
      const claimed = await kube
        .request("PATCH", path, { metadata: { resourceVersion: lease.metadata.resourceVersion }, spec: { holderIdentity: "ktctl-clean@elsewhere/1" } }, "application/merge-patch+json")
        .then(
          () => true,
          (error) => {
            if (httpStatus(error) !== 409 || attempt >= 5) throw error;
            return false;
          },
        );
      if (claimed) break;
    }
    const reason = await session.ended;
    expect(reason).toContain("taken over by ktctl-clean@elsewhere/1");
    // It puts its laptop back, leaves the cluster steps and the claimed lease to the claimant (undoing
    // them too would fight that clean), and says so with the conflict exit code.
    const closing = await session.close().then(
      () => undefined,
      (error) => error,
    );
    expect(closing?.exitCode).toBe(10);
    expect(closing?.message).toMatch(new RegExp(`^session ${session.id} ended: the session was taken over by ktctl-clean@elsewhere/1 .*its 2 cluster change\\(s\\) were left to whoever took the session over$`));
    await fileRestored(file);
    expect(await kube.request<any>("GET", `${cmPath}/${created}`)).toMatchObject({ data: { made: "by the session" } });
    expect(isRestored(await kube.request<any>("GET", `${cmPath}/${target}`))).toBe(false);
    expect(await leaseExists(session.id)).toBe(true);
    // The claimant's part, as clean does it: the cluster steps from the Lease's journal.
    const plan = await eventually(async () => {
      const p = await planClean(kube, { namespace: NS }, { home: join(root, "claimant"), registry });
      const entry = p.entries.find((e) => e.sessionId === session.id);
      if (!entry) throw new Error("not expired yet");
      return { ...p, entries: [entry] };
    }, 30_000, 500);
    await executePlan(plan, kube, { home: join(root, "claimant"), registry });
    await clusterRestored(target, created, 5_000);
    expect(await leaseExists(session.id)).toBe(false);
  });

  test("a mode that closes its session after a clean elsewhere deleted the lease (no renewal saw it yet) ends it as lost", async () => {
    const { home, target, file } = await scene();
    const session = await startSession({ kube, mode: "e2e", global: { namespace: NS }, logger, registry, home, handleSignals: false, watchdog: false });
    sessionIds.add(session.id);
    const { created } = await makeSteps(session, kube, NS, target, file);
    // As clean elsewhere does once it has restored the cluster: the lease goes. The mode notices
    // first (mesh: its mesh was removed) and closes the session, well before the next renewal.
    await kube.request("DELETE", `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/${leaseName(session.id)}`);
    const closing = await session.close("the mesh was removed").then(
      () => undefined,
      (error) => error,
    );
    expect(closing?.exitCode).toBe(10);
    expect(closing?.message).toMatch(new RegExp(`^session ${session.id} ended: the session's lease was deleted \\(cleaned up from elsewhere\\); .*its 2 cluster change\\(s\\) were left to whoever took the session over$`));
    // The laptop is put back; the cluster steps are the cleaner's (undoing them too would fight it).
    await fileRestored(file);
    expect(await kube.request<any>("GET", `${cmPath}/${created}`)).toMatchObject({ data: { made: "by the session" } });
    await kube.request("DELETE", `${cmPath}/${created}`);
  });

  test("a stale claim fails: clean backs off when the session renewed after the plan", async () => {
    const { home } = await scene();
    const session = await startSession({ kube, mode: "e2e", global: { namespace: NS }, logger, registry, home, handleSignals: false, watchdog: false, leaseDurationSeconds: 3 });
    sessionIds.add(session.id);
    const path = `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/${leaseName(session.id)}`;
    const read = await kube.request<any>("GET", path);
    // The session renews (every second with a 3 s lease): the version read above goes stale.
    await waitForObject(kube, `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases`, leaseName(session.id), (l: any) => l?.metadata.resourceVersion !== read.metadata.resourceVersion, { timeoutMs: 10_000 });
    const { claimLease } = await import("../../core/session/lease.ts");
    expect(await claimLease(kube, { namespace: NS, name: leaseName(session.id), resourceVersion: read.metadata.resourceVersion }, "ktctl-clean@x/1")).toBeUndefined();
    await session.close();
    expect(await leaseExists(session.id)).toBe(false);
  });
});

describe("server clock", () => {
  test("a dry-run create tells the API server's time without storing anything", async () => {
    const before = Date.now();
    const now = await serverNow(kube, NS);
    // Same machine, same clock: within the 1 s precision of the timestamp.
    expect(Math.abs(now - before)).toBeLessThan(3_000);
    const leases = await kube.request<any>("GET", `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases`);
    expect(leases.items.filter((l: any) => l.metadata.name.startsWith("ktctl-clock-"))).toEqual([]);
  });
});
