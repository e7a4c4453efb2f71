import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { chmod, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ANNOTATION_SHARERS, LABEL_MANAGED_BY, LABEL_OWNER, LABEL_ROLE, LABEL_SESSION, LABEL_SHARE } from "../../core/session/labels.ts";
import { isSharedObject, joinChange, releaseChange, sharersOf, sharersValue } from "../../core/session/shares.ts";
import { createUndoRegistry } from "../../core/session/undo.ts";
import { releaseShareStep } from "../../core/session/steps.ts";
import { loadSharedKeyPair, publicKeyOf, sharedKeyPath } from "../../core/shadow/shared-keys.ts";
import { sharedShadowPod } from "../../core/shadow/shared.ts";
import { createSessionKeyPair } from "../../core/protocol/keys.ts";

const withSharers = (value: unknown) => ({ metadata: { labels: { [LABEL_SHARE]: "connect" }, annotations: { [ANNOTATION_SHARERS]: typeof value === "string" ? value : JSON.stringify(value) } } });
const none = new Set<string>();

describe("sharers annotation", () => {
  test("reads the listed session ids, ignoring junk and duplicates", () => {
    expect(sharersOf(withSharers(["abcd1234", "efgh5678", "abcd1234"]))).toEqual(["abcd1234", "efgh5678"]);
    expect(sharersOf(withSharers(["abcd1234", 7, "Not An Id", ""]))).toEqual(["abcd1234"]);
    expect(sharersOf(withSharers("{not json"))).toEqual([]);
    expect(sharersOf(withSharers({ a: 1 }))).toEqual([]);
    expect(sharersOf({ metadata: {} })).toEqual([]);
    expect(sharersOf(undefined)).toEqual([]);
  });

  test("written sorted and without duplicates, so equal lists compare equal", () => {
    expect(sharersValue(["zz001122", "aa001122", "zz001122"])).toBe('["aa001122","zz001122"]');
  });

  test("only objects with the share label count as shared", () => {
    expect(isSharedObject(withSharers([]))).toBe(true);
    expect(isSharedObject({ metadata: { labels: { [LABEL_SESSION]: "abcd1234" } } })).toBe(false);
  });
});

describe("joining and leaving", () => {
  test("joining adds the session once", () => {
    expect(joinChange([], "me000001", none)).toEqual({ action: "update", sharers: ["me000001"] });
    expect(joinChange(["aa000001"], "me000001", none)).toEqual({ action: "update", sharers: ["aa000001", "me000001"] });
    expect(joinChange(["aa000001", "me000001"], "me000001", none)).toEqual({ action: "none" });
  });

  test("joining drops sharers whose session is gone", () => {
    expect(joinChange(["dead0001", "aa000001"], "me000001", new Set(["dead0001"]))).toEqual({ action: "update", sharers: ["aa000001", "me000001"] });
    // Already in: the dead entry alone is still worth writing away.
    expect(joinChange(["dead0001", "me000001"], "me000001", new Set(["dead0001"]))).toEqual({ action: "update", sharers: ["me000001"] });
  });

  test("leaving removes only this session while others remain", () => {
    expect(releaseChange(["aa000001", "me000001"], "me000001", none)).toEqual({ action: "update", sharers: ["aa000001"] });
    expect(releaseChange(["aa000001", "bb000001"], "me000001", none)).toEqual({ action: "none" });
  });

  test("the last sharer to leave deletes; so does anyone finding nobody listed", () => {
    expect(releaseChange(["me000001"], "me000001", none)).toEqual({ action: "delete" });
    expect(releaseChange([], "me000001", none)).toEqual({ action: "delete" });
    expect(releaseChange(["dead0001", "me000001"], "me000001", new Set(["dead0001"]))).toEqual({ action: "delete" });
  });

  test("the release step is a core, cluster-side undo kind, so the watchdog and clean can run it", () => {
    const registry = createUndoRegistry();
    const step = releaseShareStep({ apiVersion: "v1", kind: "Pod", namespace: "demo", name: "ktctl-shared-connect-0123456789" });
    expect(step.kind).toBe("release-shared-shadow");
    expect(registry.where(step.kind)).toBe("cluster");
    expect(step.undo).toEqual({ apiVersion: "v1", kind: "Pod", namespace: "demo", name: "ktctl-shared-connect-0123456789" });
  });

  test("the release needs the cluster", async () => {
    const registry = createUndoRegistry();
    const step = releaseShareStep({ apiVersion: "v1", kind: "Pod", namespace: "demo", name: "x" });
    await expect(registry.run({ sessionId: "me000001" }, step)).rejects.toThrow("needs cluster access");
  });
});

describe("the shared shadow pod", () => {
  const keys = createSessionKeyPair("test");
  const base = { namespace: "demo", owner: "alice@laptop", key: "connect", publicKey: keys.publicKey, global: {}, options: { role: "connect" } };

  test("same owner, key and options: the same name from any process", () => {
    const a = sharedShadowPod(base);
    const b = sharedShadowPod({ ...base, options: { role: "connect" } });
    expect(a.name).toBe(b.name);
    expect(a.name).toMatch(/^ktctl-shared-connect-[0-9a-f]{10}$/);
    expect(a.spec.metadata.name).toBe(a.name);
  });

  test("another owner, key, image, role set or public key: another pod", () => {
    const name = sharedShadowPod(base).name;
    const others = [
      { ...base, owner: "bob@laptop" },
      { ...base, key: "other" },
      { ...base, global: { image: "registry.example/shadow:2" } },
      { ...base, options: { role: "connect", roles: ["dns"] } },
      { ...base, publicKey: createSessionKeyPair("other").publicKey },
    ].map((input) => sharedShadowPod(input).name);
    for (const other of others) expect(other).not.toBe(name);
    expect(new Set(others).size).toBe(others.length);
  });

  test("labelled as shared and owned, never with a session label; sharers are written by the joiner", () => {
    const { spec } = sharedShadowPod(base);
    expect(spec.metadata.labels[LABEL_SHARE]).toBe("connect");
    expect(spec.metadata.labels[LABEL_OWNER]).toBe("alice-laptop");
    expect(spec.metadata.labels[LABEL_MANAGED_BY]).toBe("ktctl");
    expect(spec.metadata.labels[LABEL_ROLE]).toBe("connect");
    expect(spec.metadata.labels[LABEL_SESSION]).toBeUndefined();
    expect(spec.metadata.annotations[ANNOTATION_SHARERS]).toBeUndefined();
    expect(isSharedObject(spec)).toBe(true);
    const env = Object.fromEntries(spec.spec.containers[0].env.map((e: any) => [e.name, e.value]));
    expect(Object.values(env)).toContain(keys.publicKey);
  });

  test("a long key still gives a valid DNS name", () => {
    const { name } = sharedShadowPod({ ...base, key: "A Very Long Share Key ".repeat(6) });
    expect(name.length).toBeLessThanOrEqual(63);
    expect(name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
  });
});

describe("shared key pairs", () => {
  let home: string;
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), "ktctl-shared-keys-"));
  });
  afterEach(async () => {
    await rm(home, { recursive: true, force: true });
  });

  test("made once, 0600 in a 0700 directory, and the same pair on every later load", async () => {
    const first = await loadSharedKeyPair(home, "connect");
    const path = sharedKeyPath(home, "connect");
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await stat(join(home, "shared"))).mode & 0o777).toBe(0o700);
    const again = await loadSharedKeyPair(home, "connect");
    expect(again).toEqual(first);
    expect(first.publicKey).toMatch(/^ssh-ed25519 [A-Za-z0-9+/]+=* ktctl-shared-connect$/);
    expect(publicKeyOf(first.privateKey, "ktctl-shared-connect")).toBe(first.publicKey);
  });

  test("processes starting together agree on one pair, and leave no temporary files", async () => {
    const pairs = await Promise.all(Array.from({ length: 8 }, () => loadSharedKeyPair(home, "connect")));
    for (const pair of pairs) expect(pair).toEqual(pairs[0]!);
    expect(await readdir(join(home, "shared"))).toEqual(["connect.key"]);
  });

  test("different keys, different pairs; the file name is safe whatever the key", async () => {
    const a = await loadSharedKeyPair(home, "connect");
    const b = await loadSharedKeyPair(home, "../Other Key");
    expect(a.publicKey).not.toBe(b.publicKey);
    expect(sharedKeyPath(home, "../Other Key")).toBe(join(home, "shared", "other-key.key"));
    expect(() => sharedKeyPath(home, "///")).toThrow("invalid share key");
  });

  test("a key file or key directory others can reach is refused, and left as it is; a broken one is refused with a hint", async () => {
    await loadSharedKeyPair(home, "connect");
    const path = sharedKeyPath(home, "connect");
    await chmod(path, 0o644);
    await expect(loadSharedKeyPair(home, "connect")).rejects.toThrow(/key file .*connect\.key is accessible by others \(mode 0644\)/);
    expect((await stat(path)).mode & 0o777).toBe(0o644);
    await chmod(path, 0o600);
    await chmod(join(home, "shared"), 0o755);
    await expect(loadSharedKeyPair(home, "connect")).rejects.toThrow(/key directory .* is accessible by others \(mode 0755\)/);
    await chmod(join(home, "shared"), 0o700);
    await loadSharedKeyPair(home, "connect");
    await writeFile(path, "garbage");
    await expect(loadSharedKeyPair(home, "connect")).rejects.toThrow("holds no usable key");
  });
});
