// Least privilege: every mode works as a ServiceAccount bound only to the Role of docs/rbac.yaml,
// and with one verb of that Role taken away a mode that needs it stops with one line naming the verb
// and resource (exit code 6) and leaves nothing behind. CI takes away one critical verb per mode;
// KTCTL_RBAC_FULL=1 takes away every verb in turn against every mode, and also proves each verb of
// the Role is needed by some mode.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadAll } from "js-yaml";
import { REPO, eventually, kubectl, kubectlOk, requireCluster } from "./harness.ts";
import { startLaptopServer } from "./exchange-harness.ts";
import {
  MODES,
  type RbacRule,
  type Snapshot,
  answersRightly,
  deployWorkspace,
  ktctlArgv,
  laptopQuiet,
  probe,
  repairWorkspace,
  restrictedKubeconfig,
  snapshot,
  tidyWorkspace,
  untilRestored,
} from "./reliability-harness.ts";

const NS = "rel-rbac";
const SA = "ktctl-developer";
const PORT = 28600;
const FULL = process.env.KTCTL_RBAC_FULL === "1";

const role = (loadAll(readFileSync(join(REPO, "docs/rbac.yaml"), "utf8")) as any[]).find((d) => d?.kind === "Role");
const rules: RbacRule[] = role.rules;

/** One verb on one resource: the unit taken away. */
interface Grant {
  group: string;
  resource: string;
  verb: string;
}
const grants: Grant[] = rules.flatMap((r) => r.resources.flatMap((resource) => r.verbs.map((verb) => ({ group: r.apiGroups[0]!, resource, verb }))));
const grantName = (g: Grant) => `${g.verb} ${g.resource}${g.group ? `.${g.group}` : ""}`;

/** The Role (or `from`) without one verb. */
function without(grant: Grant, from: RbacRule[] = rules): RbacRule[] {
  return from
    .map((r) =>
      r.apiGroups[0] === grant.group && r.resources.includes(grant.resource) ? { ...r, verbs: r.verbs.filter((v) => v !== grant.verb) } : r,
    )
    .filter((r) => r.verbs.length);
}

/** CI's share: for each mode the verb only it (or it first) needs; `all` for every mode's session. */
const REPRESENTATIVE: [string, string][] = [
  ["forward", "get services"],
  ["connect-system", "list services"],
  ["connect-proxy", "get pods/portforward"],
  ["connect-hosts", "create leases.coordination.k8s.io"],
  ["exchange-selector", "patch services"],
  ["exchange-scale", "patch deployments.apps"],
  ["mesh", "create deployments.apps"],
  ["preview", "create services"],
  // Verbs only undo needs: refused up front, not discovered with a pod stranded.
  ["connect-proxy", "delete pods"],
  ["exchange-selector", "delete leases.coordination.k8s.io"],
  ["preview", "delete services"],
];

let scratch: string;
let kubeconfig: string;
let before: Snapshot;
let laptop: { stop(): Promise<void> };

/** Applies the Role's rules and waits until the API server's authorizer agrees. */
async function grant(ruleSet: RbacRule[], missing?: Grant): Promise<void> {
  kubeconfig = await restrictedKubeconfig(NS, SA, ruleSet, scratch);
  const as = `system:serviceaccount:${NS}:${SA}`;
  const probeGrant = missing ?? grants[0]!;
  const [plural, subresource] = probeGrant.resource.split("/");
  const resource = probeGrant.group ? `${plural}.${probeGrant.group}` : plural!;
  const sub = subresource ? [`--subresource=${subresource}`] : [];
  await eventually(async () => {
    const r = await kubectl(["auth", "can-i", probeGrant.verb, resource, ...sub, "-n", NS, "--as", as]);
    const allowed = r.stdout.trim() === "yes";
    if (allowed === Boolean(missing)) throw new Error(`RBAC not yet ${missing ? "narrowed" : "granted"}`);
  }, 15_000);
}

interface Outcome {
  /** ready: the mode came up, answered and was stopped; refused: it stopped before being ready. */
  kind: "ready" | "refused";
  code: number;
  output: string;
  answer?: string;
  /** The run's KTCTL_HOME. */
  home: string;
}

/** Runs one mode as the ServiceAccount: up to ready (then a request and Ctrl-C) or to its own exit. */
async function runMode(name: string): Promise<Outcome> {
  const mode = MODES.find((m) => m.name === name)!;
  const home = mkdtempSync(join(scratch, "home-"));
  if (name === "connect-system" || name === "connect-hosts") await laptopQuiet();
  // The laptop's server takes PORT; forward needs a free local port of its own.
  const local = name === "forward" ? PORT + 1 : PORT;
  const proc = Bun.spawn(ktctlArgv(kubeconfig, NS, mode.args(local)), {
    env: { ...process.env, KTCTL_HOME: home, NO_COLOR: "1" },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let output = "";
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) output += decoder.decode(chunk, { stream: true });
  };
  const pumped = Promise.all([pump(proc.stdout), pump(proc.stderr)]);
  const deadline = Date.now() + 120_000;
  while (!mode.ready.test(output) && proc.exitCode === null && Date.now() < deadline) await Bun.sleep(100);
  if (proc.exitCode !== null || !mode.ready.test(output)) {
    if (proc.exitCode === null) proc.kill("SIGINT");
    const code = await proc.exited;
    await pumped;
    return { kind: "refused", code, output, home };
  }
  let answer: string | undefined;
  try {
    answer = await eventually(async () => {
      const a = await probe(name, NS, local, output);
      if (!answersRightly(name, a)) throw new Error(`answered by ${a}`);
      return a;
    }, 20_000);
  } catch (error) {
    answer = `no answer: ${(error as Error).message}`;
  }
  proc.kill("SIGINT");
  const code = await proc.exited;
  await pumped;
  return { kind: "ready", code, output, answer, home };
}

/** Nothing of ktctl's in the namespace, and every object as it was; repaired (and reported) if not. */
async function expectNothingLeft(context: string): Promise<void> {
  const { left } = await untilRestored(before, 30_000);
  if (!left.length) return;
  // Leave the next case a clean namespace, then fail this one.
  await repairWorkspace(NS);
  throw new Error(`${context}: not restored: ${left.join("; ")}`);
}

/** The one line a refusal must be: "ktctl: forbidden: cannot VERB RESOURCE in namespace NS (RBAC)". */
function expectRefusal(outcome: Outcome, missing: Grant): void {
  const errors = outcome.output.split("\n").filter((l) => l.startsWith("ktctl: "));
  expect({ code: outcome.code, errors }).toEqual({ code: 6, errors: [expect.stringMatching(/^ktctl: forbidden: cannot \S+ \S+ in namespace \S+ \(RBAC\)/)] });
  const resource = missing.group ? `${missing.resource}.${missing.group}` : missing.resource;
  expect(errors[0]).toContain(`cannot ${missing.verb} ${resource} in namespace ${NS}`);
  expect(outcome.output).not.toMatch(/\n\s+at /);
  // Nor on the laptop: a session begun before the refusal (its journal, its watchdog's log) is gone.
  const sessions = join(outcome.home, "sessions");
  expect(existsSync(sessions) ? readdirSync(sessions) : []).toEqual([]);
}

beforeAll(async () => {
  await requireCluster();
  scratch = mkdtempSync(join(tmpdir(), "ktctl-rbac-"));
  await deployWorkspace(NS);
  await laptopQuiet();
  before = await snapshot(NS);
  laptop = await startLaptopServer(PORT);
}, 180_000);

afterAll(async () => {
  await laptop?.stop();
  await tidyWorkspace(NS);
  rmSync(scratch, { recursive: true, force: true });
});

describe("docs/rbac.yaml: every mode as a ServiceAccount bound only to the Role", () => {
  test("the Role is namespaced and asks for no cluster-scoped or secret-reading right", () => {
    expect(role.kind).toBe("Role");
    for (const g of grants) expect(["secrets", "configmaps", "nodes", "namespaces", "servicecidrs", "*"]).not.toContain(g.resource);
    for (const g of grants) expect(g.verb).not.toBe("*");
  });

  for (const mode of MODES) {
    test(`${mode.name} works and leaves nothing`, async () => {
      await grant(rules);
      const outcome = await runMode(mode.name);
      expect({ kind: outcome.kind, answer: outcome.answer, output: outcome.kind === "ready" ? "" : outcome.output }).toEqual({
        kind: "ready",
        answer: mode.name.match(/^(exchange|mesh|preview)/) ? "laptop" : expect.stringMatching(/^echo-/),
        output: "",
      });
      expect([0, 130]).toContain(outcome.code);
      await expectNothingLeft(mode.name);
    }, 180_000);
  }
});

describe("one verb taken away", () => {
  const grantNamed = (name: string) => {
    const g = grants.find((x) => grantName(x) === name);
    if (!g) throw new Error(`docs/rbac.yaml grants no ${name}`);
    return g;
  };

  // Straight to the pods, as kubectl port-forward and kubefwd go: no shadow, so no pod to create or delete.
  for (const [mode, label] of [
    ["forward", "forward straight to the pods"],
    ["connect-pod", "connect --via pod"],
  ] as const) {
    test(`${label} needs no right to create or delete pods`, async () => {
      const create = grantNamed("create pods");
      await grant(without(grantNamed("delete pods"), without(create)), create);
      const outcome = await runMode(mode);
      expect({ kind: outcome.kind, answer: outcome.answer, output: outcome.kind === "ready" ? "" : outcome.output }).toEqual({
        kind: "ready",
        answer: expect.stringMatching(/^echo-/),
        output: "",
      });
      await expectNothingLeft(`${label} without create and delete pods`);
    }, 180_000);
  }

  if (!FULL) {
    for (const [mode, name] of REPRESENTATIVE) {
      test(`${mode} without ${name}: one line naming it, exit 6, nothing left`, async () => {
        const missing = grantNamed(name);
        await grant(without(missing), missing);
        const outcome = await runMode(mode);
        expectRefusal(outcome, missing);
        await expectNothingLeft(`${mode} without ${name}`);
      }, 180_000);
    }
    return;
  }

  // The full run: every verb against every mode. A mode either does not need the verb (it comes up
  // and answers) or refuses cleanly; every verb is needed by at least one mode.
  for (const missing of grants) {
    test(`without ${grantName(missing)}`, async () => {
      await grant(without(missing), missing);
      const neededBy: string[] = [];
      for (const mode of MODES) {
        const outcome = await runMode(mode.name);
        if (outcome.kind === "refused") {
          neededBy.push(mode.name);
          expectRefusal(outcome, missing);
        } else {
          expect([0, 130]).toContain(outcome.code);
        }
        await expectNothingLeft(`${mode.name} without ${grantName(missing)}`);
      }
      console.log(`${grantName(missing)}: needed by ${neededBy.join(", ") || "no mode of this suite"}`);
      if (!OPTIONAL_FOR_SUITE.has(grantName(missing))) expect(neededBy.length).toBeGreaterThan(0);
    }, 1_200_000);
  }
});

/**
 * Verbs only paths outside this suite's modes need, or that a mode uses only to follow changes (see docs/rbac.yaml for which): exchange of a
 * pod, status and clean, connect --shareShadow (patch pods; exchange --mode scale uses it only to
 * hand traffic back gracefully, and warns without it); and `create pods/portforward`, which the
 * SPDY fallback and API servers that check WebSocket upgrades for `create`
 * (AuthorizePodWebsocketUpgradeCreatePermission) need.
 */
const OPTIONAL_FOR_SUITE = new Set([
  "get replicasets.apps",
  "list leases.coordination.k8s.io",
  "create pods/portforward",
  "patch pods",
  // Needed to follow changes: connect keeps names current with it (without: a warning, names go
  // stale); a wait whose first list already holds the answer does not get to watch.
  "get leases.coordination.k8s.io", // several developers on one mesh, --shareShadow: they check each other's Lease
  "watch deployments.apps", // scale waits for the replicas to come back (without: a warning), mesh for its router
  "watch services",
  "watch endpointslices.discovery.k8s.io",
]);
