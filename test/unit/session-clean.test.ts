import { describe, expect, test } from "bun:test";
import { computePlan, renderPlan, type LabelledObject, type PlanInput } from "../../core/session/clean.ts";
import { leaseObject, readLease } from "../../core/session/lease.ts";
import { type Journal, type JournalStep, type SessionMeta } from "../../core/session/journal.ts";
import { changeMarks, sessionLabels } from "../../core/session/labels.ts";

const T0 = Date.parse("2030-05-01T12:00:00Z");
const SERVER = "https://10.200.0.1:6443";

const meta = (id: string, over: Partial<SessionMeta> = {}): SessionMeta => ({
  id,
  owner: "alice@laptop",
  mode: "exchange",
  target: "svc/echo",
  namespace: "demo",
  host: "laptop",
  pid: 1000,
  started: new Date(T0 - 600_000).toISOString(),
  leaseDurationSeconds: 30,
  kube: { context: "dev", namespace: "demo", server: SERVER },
  ...over,
});

const createPod: JournalStep = {
  seq: 1,
  kind: "delete-object",
  describe: "create pod demo/ktctl-x-exchange",
  undo: { apiVersion: "v1", kind: "Pod", namespace: "demo", name: "ktctl-aaaa1111-exchange" },
  where: "cluster",
  state: "applied",
};
const patchService: JournalStep = {
  seq: 2,
  kind: "patch-object",
  describe: "point service demo/echo at the shadow",
  undo: { apiVersion: "v1", kind: "Service", namespace: "demo", name: "echo", fields: [{ path: ["spec", "selector"], value: { app: "echo" } }] },
  where: "cluster",
  state: "recorded",
};
const editHosts: JournalStep = { seq: 3, kind: "restore-file", describe: "add cluster names to /etc/hosts", undo: { path: "/etc/hosts", content: "eA==" }, where: "laptop", state: "applied" };
const undoneStep: JournalStep = { ...createPod, seq: 4, describe: "already undone", state: "undone" };

/** A Lease as the API server returns it: the server stamps managedFields with ITS clock. */
function lease(id: string, serverRenewedAt: number, steps: JournalStep[], over: Partial<SessionMeta> = {}, laptopClockOffsetMs = 0) {
  const object: any = leaseObject(meta(id, over), steps, serverRenewedAt + laptopClockOffsetMs);
  object.metadata.resourceVersion = `rv-${id}`;
  object.metadata.creationTimestamp = new Date(T0 - 600_000).toISOString();
  object.metadata.managedFields = [{ manager: "ktctl", operation: "Update", time: new Date(serverRenewedAt).toISOString().replace(/\.\d+Z$/, "Z") }];
  return readLease(object);
}

const created = (id: string, name: string, kind = "Pod", apiVersion = "v1"): LabelledObject => ({
  apiVersion,
  kind,
  metadata: { name, namespace: "demo", labels: sessionLabels(id, "alice@laptop", "shadow") },
});

const input = (over: Partial<PlanInput>): PlanInput => ({
  scope: "namespace demo",
  localOnly: false,
  serverNow: T0,
  leases: [],
  objects: [],
  local: [],
  server: SERVER,
  leaseElsewhere: {},
  ...over,
});

describe("leases, judged by the API server's clock", () => {
  test("a fresh lease is left alone, however wrong the laptop clock that wrote renewTime", () => {
    // Renewed 5 s ago by server time, by a laptop whose clock runs two hours behind.
    const live = lease("aaaa1111", T0 - 5_000, [createPod, patchService], {}, -2 * 3600_000);
    const plan = computePlan(input({ leases: [live], objects: [created("aaaa1111", "ktctl-aaaa1111-exchange")] }));
    expect(plan.entries).toEqual([]);
    expect(plan.skipped).toEqual([{ sessionId: "aaaa1111", namespace: "demo", owner: "alice@laptop", reason: "alive (renewed 5s ago)" }]);
  });

  test("a laptop clock running ahead cannot keep a dead session alive either", () => {
    const dead = lease("aaaa1111", T0 - 120_000, [createPod], {}, +3600_000);
    expect(computePlan(input({ leases: [dead] })).entries.map((e) => e.sessionId)).toEqual(["aaaa1111"]);
  });

  test("an expired lease: claim it, undo cluster steps last-first, leftovers, then the lease", () => {
    const expired = lease("aaaa1111", T0 - 45_000, [createPod, patchService, editHosts, undoneStep]);
    const extra = created("aaaa1111", "ktctl-aaaa1111-extra", "ConfigMap");
    const owned: LabelledObject = { ...created("aaaa1111", "ktctl-aaaa1111-exchange-xyz"), metadata: { ...created("aaaa1111", "p").metadata, name: "rs-pod", ownerReferences: [{ controller: true }] } };
    const plan = computePlan(input({ leases: [expired], objects: [created("aaaa1111", "ktctl-aaaa1111-exchange"), extra, owned] }));
    expect(plan.entries).toHaveLength(1);
    const entry = plan.entries[0]!;
    expect(entry.claim).toEqual({ namespace: "demo", name: "ktctl-aaaa1111", resourceVersion: "rv-aaaa1111" });
    expect(entry.why).toContain("not renewed for 45s");
    expect(entry.actions.map((a) => a.describe)).toEqual([
      "undo: point service demo/echo at the shadow",
      "undo: create pod demo/ktctl-x-exchange",
      "delete leftover configmap demo/ktctl-aaaa1111-extra",
      "delete lease demo/ktctl-aaaa1111",
    ]);
    // The laptop step's data never reached the cluster: only its host can undo it.
    expect(entry.notes).toEqual(["1 laptop step(s) can only be undone on laptop (ktctl clean there)"]);
  });

  test("the boundary: duration plus 2 s of timestamp slack", () => {
    expect(computePlan(input({ leases: [lease("aaaa1111", T0 - 32_000, [])] })).entries).toEqual([]);
    expect(computePlan(input({ leases: [lease("aaaa1111", T0 - 33_000, [])] })).entries).toHaveLength(1);
  });
});

describe("objects of sessions without a lease", () => {
  test("created ones are deleted, changed ones restored from their own record", () => {
    const undo = { apiVersion: "v1", kind: "Service", namespace: "demo", name: "echo", fields: [{ path: ["spec", "selector"], value: { app: "echo" } }], marked: true };
    const marks = changeMarks("bbbb2222", { kind: "patch-object", undo });
    const service: LabelledObject = { apiVersion: "v1", kind: "Service", metadata: { name: "echo", namespace: "demo", labels: { app: "echo", ...marks.labels }, annotations: marks.annotations } };
    const bare: LabelledObject = { apiVersion: "v1", kind: "Service", metadata: { name: "other", namespace: "demo", labels: { "ktctl.io/session": "bbbb2222" } } };
    const plan = computePlan(input({ objects: [created("bbbb2222", "ktctl-bbbb2222-shadow"), service, bare], leaseElsewhere: { bbbb2222: "absent" } }));
    const entry = plan.entries[0]!;
    expect(entry.why).toBe("no lease exists for this session any more");
    expect(entry.claim).toBeUndefined();
    expect(entry.actions.map((a) => a.type === "undo" && [a.step.kind, a.describe])).toEqual([
      ["delete-object", "delete leftover pod demo/ktctl-bbbb2222-shadow"],
      ["patch-object", "restore service demo/echo from its patch-object record"],
    ]);
    expect(entry.actions[1]!.type === "undo" && entry.actions[1]!.step.undo).toEqual(undo);
    expect(entry.notes).toEqual(["service demo/other carries the session label but no undo record; check it by hand"]);
  });

  test("when the lease may live in another namespace, nothing is touched", () => {
    for (const where of ["present", "unknown"] as const) {
      const plan = computePlan(input({ objects: [created("bbbb2222", "ktctl-bbbb2222-shadow")], leaseElsewhere: { bbbb2222: where } }));
      expect(plan.entries).toEqual([]);
      expect(plan.skipped[0]!.reason).toContain("clean with -A");
    }
  });

  test("objects of a live session are not leftovers", () => {
    const plan = computePlan(input({ leases: [lease("aaaa1111", T0 - 1_000, [])], objects: [created("aaaa1111", "ktctl-aaaa1111-x")] }));
    expect(plan.entries).toEqual([]);
  });
});

describe("local journals", () => {
  const journal = (id: string, steps: JournalStep[], over: Partial<SessionMeta> = {}): Journal => ({ version: 1, meta: meta(id, over), steps });

  test("a running process or a busy watchdog: left alone, even with an expired lease", () => {
    const plan = computePlan(
      input({
        leases: [lease("cccc3333", T0 - 600_000, [createPod])],
        local: [
          { journal: journal("cccc3333", [createPod]), alive: true, watchdogAlive: true },
          { journal: journal("dddd4444", [createPod], { watchdogPid: 77 }), alive: false, watchdogAlive: true },
        ],
      }),
    );
    expect(plan.entries).toEqual([]);
    expect(plan.skipped.map((s) => s.reason)).toEqual(["its ktctl process (pid 1000) is running", "its watchdog (pid 77) is undoing it now"]);
  });

  test("a dead process: every step last-first, leftovers, lease, journal; the lease need not be expired", () => {
    const plan = computePlan(
      input({
        leases: [lease("cccc3333", T0 - 3_000, [createPod, patchService])],
        objects: [created("cccc3333", "ktctl-aaaa1111-exchange"), created("cccc3333", "ktctl-cccc3333-dns")],
        local: [{ journal: journal("cccc3333", [createPod, patchService, editHosts]), alive: false, watchdogAlive: false }],
      }),
    );
    const entry = plan.entries[0]!;
    expect(entry.localJournal).toBe(true);
    expect(entry.claim).toBeUndefined();
    expect(entry.actions.map((a) => a.describe)).toEqual([
      "undo: add cluster names to /etc/hosts",
      "undo: point service demo/echo at the shadow",
      "undo: create pod demo/ktctl-x-exchange",
      "delete leftover pod demo/ktctl-cccc3333-dns",
      "delete lease demo/ktctl-cccc3333",
      "remove local journal of cccc3333",
    ]);
    expect(plan.skipped).toEqual([]);
  });

  test("a journal of another cluster: only its laptop steps, and it is kept", () => {
    const plan = computePlan(input({ local: [{ journal: journal("cccc3333", [createPod, editHosts], { kube: { context: "prod", namespace: "x", server: "https://prod:6443" } }), alive: false, watchdogAlive: false }] }));
    const entry = plan.entries[0]!;
    expect(entry.actions.map((a) => a.describe)).toEqual(["undo: add cluster names to /etc/hosts"]);
    expect(entry.notes[0]).toContain("https://prod:6443");
  });

  test("--localOnly: laptop steps only, cluster steps left in the journal; leases ignored", () => {
    const plan = computePlan(
      input({
        localOnly: true,
        serverNow: undefined,
        leases: [lease("eeee5555", T0 - 600_000, [createPod])],
        local: [
          { journal: journal("cccc3333", [createPod, editHosts]), alive: false, watchdogAlive: false },
          { journal: journal("ffff6666", [editHosts]), alive: false, watchdogAlive: false },
        ],
      }),
    );
    expect(plan.entries.map((e) => [e.sessionId, e.actions.map((a) => a.type)])).toEqual([
      ["cccc3333", ["undo"]],
      ["ffff6666", ["undo", "remove-local-journal"]],
    ]);
    expect(plan.entries[0]!.notes).toEqual(["1 cluster step(s) left for a clean without --localOnly"]);
  });
});

describe("renderPlan", () => {
  test("shows sessions, actions, notes and what is left alone", () => {
    const plan = computePlan(input({ leases: [lease("aaaa1111", T0 - 45_000, [createPod, editHosts]), lease("bbbb2222", T0 - 2_000, [])] }));
    const text = renderPlan(plan);
    expect(text).toContain("clean namespace demo (API server time 2030-05-01T12:00:00.000Z):");
    expect(text).toContain("session aaaa1111 (alice@laptop, exchange svc/echo, ns demo): lease expired (not renewed for 45s");
    expect(text).toContain("    - undo: create pod demo/ktctl-x-exchange");
    expect(text).toContain("    ! 1 laptop step(s) can only be undone on laptop");
    expect(text).toContain("left alone: session bbbb2222 (alice@laptop) in demo: alive (renewed 2s ago)");
    expect(renderPlan(computePlan(input({})))).toContain("nothing to clean");
  });
});

describe("shared shadows", () => {
  const sharedPod = (sharers: string[]): LabelledObject => ({
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: "ktctl-shared-connect-0123456789",
      namespace: "demo",
      labels: { "ktctl.io/managed-by": "ktctl", "ktctl.io/owner": "alice-laptop", "ktctl.io/share": "connect" },
      annotations: { "ktctl.io/sharers": JSON.stringify(sharers) },
    },
  });

  test("left alone while any sharer has a lease (even an expired one: its own clean releases it) or a local journal", () => {
    const expired = lease("aaaa1111", T0 - 120_000, []);
    expect(computePlan(input({ leases: [expired], shared: [sharedPod(["aaaa1111", "gone0001"])] })).entries.map((e) => e.sessionId)).toEqual(["aaaa1111"]);
    const journal: Journal = { version: 1, meta: meta("cccc3333"), steps: [] };
    const local = [{ journal, alive: true, watchdogAlive: false }];
    expect(computePlan(input({ local, shared: [sharedPod(["cccc3333"])] })).entries).toEqual([]);
  });

  test("released when every sharer is unknown on both sides; the release deletes it", () => {
    const plan = computePlan(input({ shared: [sharedPod(["gone0001", "gone0002"])] }));
    expect(plan.entries).toHaveLength(1);
    const entry = plan.entries[0]!;
    expect(entry.why).toBe("shared by session(s) gone0001, gone0002, none of which exists any more");
    expect(entry.claim).toBeUndefined();
    expect(entry.actions).toEqual([
      {
        type: "undo",
        describe: "delete pod demo/ktctl-shared-connect-0123456789",
        step: { kind: "release-shared-shadow", describe: "shared pod demo/ktctl-shared-connect-0123456789", undo: { apiVersion: "v1", kind: "Pod", namespace: "demo", name: "ktctl-shared-connect-0123456789" } },
        where: "cluster",
        source: "object",
      },
    ]);
    expect(computePlan(input({ shared: [sharedPod([])] })).entries[0]!.why).toBe("shared by no session");
  });
});
