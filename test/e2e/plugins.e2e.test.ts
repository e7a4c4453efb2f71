// Team modes (examples/team-deps, examples/team-config-swap), enabled from a project's .ktctl.yaml
// and loaded at run time by ktctl — the compiled binary when test/run provides it — through the
// plugin contract only. team-deps works in demo2, which no other test takes over; team-config-swap
// in a namespace of its own that this file creates.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  DEMO2_NS,
  KTCTL,
  KUBECONFIG,
  REPO,
  eventually,
  inLaptop,
  kubectlJson,
  kubectlOk,
  leftovers,
  requireCluster,
  run,
  runInLaptop,
  startKtctl,
} from "./harness.ts";

let project: string;
const SWAP_NS = `ktctl-swap-${Date.now().toString(36)}`;
beforeAll(async () => {
  await requireCluster();
  project = mkdtempSync(join(tmpdir(), "ktctl-team-"));
  writeFileSync(
    join(project, ".ktctl.yaml"),
    [
      "plugins:",
      `  - ${join(REPO, "examples/team-deps/index.ts")}`,
      `  - ${join(REPO, "examples/team-config-swap/index.ts")}`,
      "team-deps:",
      `  namespace: ${DEMO2_NS}`,
      "  services:",
      '    - { name: echo, target: svc/echo, ports: "18090:80", env: ECHO_URL=http://127.0.0.1:18090 }',
      '    - { name: echo-alt, target: svc/echo, ports: "18091:80" }',
      "",
    ].join("\n"),
  );
});
afterAll(async () => {
  rmSync(project, { recursive: true, force: true });
  await kubectlOk(["delete", "namespace", SWAP_NS, "--ignore-not-found", "--wait=false"]);
});

test("`ktctl plugins` lists the team plugin loaded from the project config", async () => {
  const r = await run([...KTCTL, "plugins"], { env: { KTCTL_HOME: project }, cwd: project });
  expect(r.code).toBe(0);
  expect(r.stdout).toContain("team-deps");
  expect(r.stdout).toContain("examples/team-deps/index.ts");
});

test("`ktctl deps` forwards the team's services through one shadow and prints their env", async () => {
  const proc = Bun.spawn(inLaptop([...KTCTL, "--kubeconfig", KUBECONFIG, "deps"]), {
    cwd: project,
    env: { ...process.env, KTCTL_HOME: project },
    stdout: "pipe",
    stderr: "pipe",
  });
  try {
    const answer = await eventually(async () => {
      const r = await runInLaptop(["curl", "-sf", "-m", "3", "http://127.0.0.1:18090/team"]);
      if (r.code !== 0) throw new Error(`curl exit ${r.code}`);
      return JSON.parse(r.stdout);
    }, 60_000, 300);
    expect(answer.name).toBe("echo-demo2");
    const second = await runInLaptop(["curl", "-sf", "-m", "3", "http://127.0.0.1:18091/second"]);
    expect(JSON.parse(second.stdout).path).toBe("/second");
    const shadows = (await leftovers(DEMO2_NS)).filter((o) => o.startsWith("pod/"));
    expect(shadows.length).toBe(1);
  } finally {
    proc.kill("SIGINT");
    await proc.exited;
  }
  const output = (await new Response(proc.stdout).text()) + (await new Response(proc.stderr).text());
  expect(output).toContain("export ECHO_URL=http://127.0.0.1:18090");
  await eventually(async () => expect(await leftovers(DEMO2_NS)).toEqual([]), 30_000);
});

// ---------------------------------------------------------------------------------------------
// team-config-swap: a Deployment pointed at another ConfigMap for the session, then put back.

/** A Deployment whose pod template uses ConfigMap app-a twice (envFrom and a volume). */
async function swapScene(): Promise<void> {
  await kubectlOk(["create", "namespace", SWAP_NS]);
  const manifest = [
    { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "app-a", namespace: SWAP_NS }, data: { MODE: "a" } },
    { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "app-b", namespace: SWAP_NS }, data: { MODE: "b" } },
    {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "web", namespace: SWAP_NS, labels: { app: "web", team: "checkout" }, annotations: { "team.example/owner": "checkout" } },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: "web" } },
        template: {
          metadata: { labels: { app: "web" } },
          spec: {
            terminationGracePeriodSeconds: 1,
            containers: [
              {
                name: "web",
                image: "ktctl.local/echo:1",
                imagePullPolicy: "Never",
                envFrom: [{ configMapRef: { name: "app-a" } }],
                volumeMounts: [{ name: "config", mountPath: "/config" }],
              },
            ],
            volumes: [{ name: "config", configMap: { name: "app-a" } }],
          },
        },
      },
    },
  ];
  await kubectlOk(["apply", "-f", "-"], { stdin: JSON.stringify({ apiVersion: "v1", kind: "List", items: manifest }) });
}

/**
 * What must come back byte for byte: spec, labels and annotations. The one annotation left out is
 * the Deployment controller's rollout counter (deployment.kubernetes.io/revision): it counts every
 * rollout, the put-back one included, and is the controller's state, not the object's configuration.
 */
async function deploymentState(): Promise<{ spec: unknown; labels: unknown; annotations: Record<string, string> }> {
  const d = await kubectlJson<any>(["-n", SWAP_NS, "get", "deployment", "web"]);
  const { "deployment.kubernetes.io/revision": _revision, ...annotations } = d.metadata.annotations ?? {};
  return { spec: d.spec, labels: d.metadata.labels, annotations };
}

test("`ktctl swap-config` points a Deployment at another ConfigMap; after SIGKILL the watchdog puts it back byte for byte", async () => {
  await swapScene();
  const before = await deploymentState();
  expect(JSON.stringify(before)).not.toContain("ktctl.io");
  // kubectl apply wrote last-applied-configuration; it is part of what must come back untouched.
  expect(Object.keys(before.annotations)).toContain("kubectl.kubernetes.io/last-applied-configuration");

  const home = join(project, "home-swap");
  mkdirSync(home, { recursive: true });
  const ktctl = startKtctl(["-n", SWAP_NS, "swap-config", "deploy/web", "--configmap", "app-b"], { KTCTL_HOME: home }, { cwd: project });
  try {
    await ktctl.waitForOutput(/now uses configmap app-b instead of app-a; Ctrl-C puts it back/, 90_000);
    const changed = await kubectlJson<any>(["-n", SWAP_NS, "get", "deployment", "web"]);
    const pod = changed.spec.template.spec;
    expect(pod.containers[0].envFrom).toEqual([{ configMapRef: { name: "app-b" } }]);
    expect(pod.volumes[0].configMap.name).toBe("app-b");
    expect(changed.metadata.labels["ktctl.io/session"]).toMatch(/^[a-z][a-z0-9]+$/);
    expect(JSON.parse(changed.metadata.annotations["ktctl.io/undo"]).kind).toBe("patch-object");
  } catch (error) {
    await ktctl.stop("SIGINT");
    throw error;
  }

  expect(await ktctl.stop("SIGKILL")).not.toBe(0);
  const killedAt = Date.now();
  await eventually(async () => expect(await deploymentState()).toEqual(before), 10_000, 200);
  expect(Date.now() - killedAt).toBeLessThanOrEqual(10_500);
  // The watchdog finished the session: no lease or other session object is left.
  await eventually(async () => expect(await leftovers(SWAP_NS)).toEqual([]), 30_000);
});

test("`ktctl swap-config` on Ctrl-C puts the Deployment back and exits 130", async () => {
  const before = await deploymentState();
  const home = join(project, "home-swap-int");
  mkdirSync(home, { recursive: true });
  const ktctl = startKtctl(["-n", SWAP_NS, "swap-config", "deploy/web", "--configmap", "app-b"], { KTCTL_HOME: home }, { cwd: project });
  await ktctl.waitForOutput(/now uses configmap app-b/, 90_000);
  expect((await kubectlJson<any>(["-n", SWAP_NS, "get", "deployment", "web"])).spec.template.spec.volumes[0].configMap.name).toBe("app-b");
  expect(await ktctl.stop("SIGINT")).toBe(130);
  // Restored before the process exited: no waiting needed.
  expect(await deploymentState()).toEqual(before);
  expect(await leftovers(SWAP_NS)).toEqual([]);
});
