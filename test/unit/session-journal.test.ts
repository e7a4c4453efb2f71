import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtemp, open, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isLeaseExpired, leaseObject, readLease } from "../../core/session/lease.ts";
import { isProcessAlive, processIdentity } from "../../core/session/processes.ts";
import { journalPath, ktctlHome, listLocalJournals, pendingSteps, readLocalJournal, removeLocalJournal, sessionsDir, writeLocalJournal, type Journal, type SessionMeta } from "../../core/session/journal.ts";
import { microTime, serverTimeOf, skewFrom } from "../../core/session/server-clock.ts";
import { ANNOTATION_JOURNAL, LABEL_ROLE, LABEL_SESSION } from "../../core/session/labels.ts";

let home: string;
beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), "ktctl-home-"));
});
afterEach(async () => {
  await rm(home, { recursive: true, force: true });
});

const meta = (id = "abcd1234"): SessionMeta => ({
  id,
  owner: "alice@laptop",
  mode: "exchange",
  target: "svc/echo",
  namespace: "demo",
  host: "laptop",
  pid: 4242,
  started: "2030-01-01T00:00:00Z",
  leaseDurationSeconds: 30,
  kube: { kubeconfig: "/home/alice/.kube/config", context: "dev", namespace: "demo", server: "https://10.0.0.1:6443" },
});

const journal = (id = "abcd1234"): Journal => ({
  version: 1,
  meta: meta(id),
  steps: [
    { seq: 1, kind: "delete-object", describe: "create pod", undo: { apiVersion: "v1", kind: "Pod", namespace: "demo", name: "p" }, where: "cluster", state: "applied" },
    { seq: 2, kind: "restore-file", describe: "edit hosts", undo: { path: "/etc/hosts", content: "MTI3LjAuMC4x" }, where: "laptop", state: "recorded" },
    { seq: 3, kind: "run", describe: "add rule", undo: { commands: [["true"]] }, where: "laptop", state: "undone" },
  ],
});

describe("local journal", () => {
  test("KTCTL_HOME overrides ~/.ktctl", () => {
    expect(ktctlHome({ KTCTL_HOME: "/x/y" })).toBe("/x/y");
    expect(ktctlHome({})).toMatch(/\.ktctl$/);
  });

  test("round trip, owner-only file, no temporaries left", async () => {
    await writeLocalJournal(home, journal());
    expect(await readLocalJournal(home, "abcd1234")).toEqual(journal());
    expect((await stat(journalPath(home, "abcd1234"))).mode & 0o777).toBe(0o600);
    expect(await readdir(sessionsDir(home))).toEqual(["abcd1234.json"]);
    await removeLocalJournal(home, "abcd1234");
    expect(await readLocalJournal(home, "abcd1234")).toBeUndefined();
    await removeLocalJournal(home, "abcd1234");
  });

  test("a rewrite replaces the file whole (tmp + rename), never edits it in place", async () => {
    const first = journal();
    await writeLocalJournal(home, first);
    const path = journalPath(home, "abcd1234");
    const before = await stat(path);
    // A reader that opened the journal just before a rewrite...
    const reader = await open(path, "r");
    const second = journal();
    second.steps.push({ seq: 4, kind: "run", describe: "x".repeat(10_000), undo: { commands: [["true"]] }, where: "laptop", state: "recorded" });
    await writeLocalJournal(home, second);
    // ...still reads the complete old version, because the new one is a different file.
    expect(JSON.parse(await reader.readFile("utf8"))).toEqual(first);
    await reader.close();
    expect((await stat(path)).ino).not.toBe(before.ino);
    expect(await readLocalJournal(home, "abcd1234")).toEqual(second);
    expect(await readdir(sessionsDir(home))).toEqual(["abcd1234.json"]);
  });

  test("listing skips foreign files and reports unreadable journals", async () => {
    await writeLocalJournal(home, journal("aaaa1111"));
    await writeLocalJournal(home, journal("bbbb2222"));
    await writeFile(join(sessionsDir(home), "cccc3333.json"), "{not json");
    await writeFile(join(sessionsDir(home), "notes.txt"), "hello");
    await writeFile(join(sessionsDir(home), "aaaa1111.watchdog.log"), "log");
    const { journals, unreadable } = await listLocalJournals(home);
    expect(journals.map((j) => j.meta.id)).toEqual(["aaaa1111", "bbbb2222"]);
    expect(unreadable.map((u) => u.path)).toEqual([join(sessionsDir(home), "cccc3333.json")]);
    expect(await listLocalJournals(join(home, "absent"))).toEqual({ journals: [], unreadable: [] });
  });

  test("pending steps come last-first and skip undone ones", () => {
    expect(pendingSteps(journal().steps).map((s) => s.seq)).toEqual([2, 1]);
  });
});

describe("lease record", () => {
  test("leaseObject carries labels, meta and the journal without laptop data", () => {
    const lease = leaseObject(meta(), journal().steps, Date.parse("2030-01-01T00:00:05Z"));
    expect(lease.metadata.name).toBe("ktctl-abcd1234");
    expect(lease.metadata.labels[LABEL_SESSION]).toBe("abcd1234");
    expect(lease.metadata.labels[LABEL_ROLE]).toBe("session");
    expect(lease.spec.renewTime).toBe("2030-01-01T00:00:05.000000Z");
    const steps = JSON.parse(lease.metadata.annotations[ANNOTATION_JOURNAL]!);
    expect(steps[0].undo.name).toBe("p");
    expect(steps[1].undo).toEqual({});
    expect(steps[1].describe).toBe("edit hosts");

    const record = readLease({ ...lease, metadata: { ...lease.metadata, resourceVersion: "7", creationTimestamp: "2030-01-01T00:00:05Z" } });
    expect(record).toMatchObject({ id: "abcd1234", namespace: "demo", owner: "alice@laptop", mode: "exchange", target: "svc/echo", host: "laptop", pid: 4242, durationSeconds: 30, resourceVersion: "7" });
    expect(record.steps).toHaveLength(3);
  });

  test("an unreadable journal annotation is reported, not fatal", () => {
    const record = readLease({ metadata: { name: "ktctl-abcd1234", labels: { [LABEL_SESSION]: "abcd1234" }, annotations: { [ANNOTATION_JOURNAL]: "[{" } }, spec: {} });
    expect(record.steps).toEqual([]);
    expect(record.journalError).toContain("unreadable");
  });

  test("renewal time is the server's managedFields time, not the client's renewTime", () => {
    const lease = {
      metadata: {
        creationTimestamp: "2030-01-01T00:00:00Z",
        managedFields: [
          { manager: "ktctl", operation: "Update", time: "2030-01-01T00:10:00Z" },
          { manager: "ktctl", operation: "Update", time: "2030-01-01T00:10:30Z" },
        ],
      },
      // A laptop clock an hour behind wrote this.
      spec: { renewTime: "2030-01-01T23:10:30.000000Z", leaseDurationSeconds: 30 },
    };
    expect(serverTimeOf(lease)).toBe(Date.parse("2030-01-01T00:10:30Z"));
    expect(serverTimeOf({ metadata: {}, spec: { renewTime: "2030-01-01T00:00:01.5Z" } })).toBe(Date.parse("2030-01-01T00:00:01.5Z"));
  });

  test("expiry: duration plus slack, by the given server time", () => {
    const renewed = Date.parse("2030-01-01T00:00:00Z");
    expect(isLeaseExpired({ lastRenewal: renewed, durationSeconds: 30 }, renewed + 31_000)).toBe(false);
    expect(isLeaseExpired({ lastRenewal: renewed, durationSeconds: 30 }, renewed + 33_000)).toBe(true);
    expect(isLeaseExpired({ lastRenewal: undefined, durationSeconds: 30 }, renewed)).toBe(true);
  });

  test("microTime has six fraction digits", () => {
    expect(microTime(Date.parse("2030-01-01T00:00:00.123Z"))).toBe("2030-01-01T00:00:00.123000Z");
  });
});

describe("process liveness", () => {
  test("this process is alive, with and without its identity", () => {
    expect(isProcessAlive(process.pid)).toBe(true);
    expect(isProcessAlive(process.pid, processIdentity(process.pid))).toBe(true);
  });

  test("an exited process is dead; a reused pid with another start time is dead", async () => {
    const child = Bun.spawn(["true"]);
    await child.exited;
    expect(isProcessAlive(child.pid)).toBe(false);
    if (process.platform === "linux") expect(isProcessAlive(process.pid, "1")).toBe(false);
    expect(isProcessAlive(undefined)).toBe(false);
    expect(isProcessAlive(0)).toBe(false);
  });
});

describe("clock skew", () => {
  test("a difference inside the timestamp's second and the round trip is no skew", () => {
    const sent = Date.parse("2030-01-01T00:00:00.400Z");
    // The server cut 00:00:00.6xx to 00:00:00.
    expect(skewFrom(Date.parse("2030-01-01T00:00:00Z"), sent, sent + 50)).toBe(0);
    expect(skewFrom(Date.parse("2030-01-01T00:00:01Z"), sent, sent + 700)).toBe(0);
  });

  test("a server an hour ahead or behind is measured to within a second", () => {
    const sent = Date.parse("2030-01-01T00:00:00.400Z");
    const ahead = skewFrom(Date.parse("2030-01-01T01:00:00Z"), sent, sent + 50);
    expect(Math.abs(ahead - 3600_000)).toBeLessThan(1000);
    const behind = skewFrom(Date.parse("2029-12-31T23:00:00Z"), sent, sent + 50);
    expect(Math.abs(behind + 3600_000)).toBeLessThan(1000);
  });
});
