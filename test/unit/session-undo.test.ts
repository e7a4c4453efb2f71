import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { chmod, lstat, mkdtemp, readFile, readlink, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createUndoRegistry, UndoError } from "../../core/session/undo.ts";
import { exactMergePatch } from "../../core/session/undo-kinds/index.ts";
import { patchObjectStep, restoreFileStep, runStep } from "../../core/session/steps.ts";
import { ANNOTATION_UNDO, LABEL_SESSION, undoMarkOf } from "../../core/session/labels.ts";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "ktctl-undo-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const ctx = { sessionId: "abcd1234" };

describe("exactMergePatch", () => {
  test("restores a map exactly: keys ktctl added become null", () => {
    const current = { app: "echo", [LABEL_SESSION]: "abcd1234", role: "shadow" };
    const original = { app: "echo", tier: "web" };
    expect(exactMergePatch(current, original)).toEqual({ app: "echo", tier: "web", [LABEL_SESSION]: null, role: null });
  });

  test("nested maps, arrays replaced whole, absent original removed", () => {
    expect(exactMergePatch({ a: { b: 1, c: 2 }, l: [1, 2] }, { a: { b: 1 }, l: [3] })).toEqual({ a: { b: 1, c: null }, l: [3] });
    expect(exactMergePatch({ x: 1 }, null)).toBeNull();
    expect(exactMergePatch(undefined, { k: "v" })).toEqual({ k: "v" });
  });
});

describe("restore-file", () => {
  const registry = createUndoRegistry();

  test("puts back the original bytes and mode", async () => {
    const path = join(dir, "resolv.conf");
    const original = Buffer.from([0x6e, 0x61, 0x6d, 0x65, 0x73, 0x65, 0x72, 0x76, 0x65, 0x72, 0x20, 0x31, 0x0a, 0x00, 0xff]);
    await writeFile(path, original);
    await chmod(path, 0o640);
    const spec = await restoreFileStep(path);
    expect(spec.kind).toBe("restore-file");

    await writeFile(path, "nameserver 127.0.0.53\n");
    await chmod(path, 0o600);
    await registry.run(ctx, spec);
    expect((await readFile(path)).equals(original)).toBe(true);
    expect((await stat(path)).mode & 0o777).toBe(0o640);

    // Idempotent: a second run changes nothing and does not fail.
    await registry.run(ctx, spec);
    expect((await readFile(path)).equals(original)).toBe(true);
  });

  test("a file that did not exist is removed again; twice is fine", async () => {
    const path = join(dir, "hosts.new");
    const spec = await restoreFileStep(path);
    expect(spec.undo.content).toBeNull();
    await writeFile(path, "10.0.0.1 echo\n");
    await registry.run(ctx, spec);
    expect(await lstat(path).catch((e) => e.code)).toBe("ENOENT");
    await registry.run(ctx, spec);
  });

  test("a file deleted meanwhile is written back", async () => {
    const path = join(dir, "hosts");
    await writeFile(path, "127.0.0.1 localhost\n");
    const spec = await restoreFileStep(path);
    await rm(path);
    await registry.run(ctx, spec);
    expect(await readFile(path, "utf8")).toBe("127.0.0.1 localhost\n");
  });

  test("a symlink comes back as the same symlink", async () => {
    const target = join(dir, "stub-resolv.conf");
    await writeFile(target, "nameserver 127.0.0.53\n");
    const path = join(dir, "resolv.conf");
    await symlink(target, path);
    const spec = await restoreFileStep(path);
    await rm(path);
    await writeFile(path, "nameserver 10.96.0.10\n");
    await registry.run(ctx, spec);
    expect((await lstat(path)).isSymbolicLink()).toBe(true);
    expect(await readlink(path)).toBe(target);
    expect(await readFile(target, "utf8")).toBe("nameserver 127.0.0.53\n");
  });

  test("no temporary files are left next to the restored file", async () => {
    const path = join(dir, "f");
    await writeFile(path, "a");
    const spec = await restoreFileStep(path);
    await writeFile(path, "b");
    await registry.run(ctx, spec);
    const { readdir } = await import("node:fs/promises");
    expect(await readdir(dir)).toEqual(["f"]);
  });
});

describe("run", () => {
  const registry = createUndoRegistry();

  test("runs every command", async () => {
    const a = join(dir, "a");
    const b = join(dir, "b");
    await writeFile(a, "");
    await writeFile(b, "");
    await registry.run(ctx, runStep([["rm", a], ["rm", b]], "remove markers"));
    expect(await lstat(a).catch((e) => e.code)).toBe("ENOENT");
    expect(await lstat(b).catch((e) => e.code)).toBe("ENOENT");
  });

  test("'already gone' answers count as done", async () => {
    const rule = ["sh", "-c", "echo 'iptables: Bad rule (does a matching rule exist in that chain?).' >&2; exit 1"];
    await registry.run(ctx, runStep([rule, ["rm", join(dir, "missing")]], "delete rule"));
  });

  test("a real failure is reported, after the other commands ran", async () => {
    const after = join(dir, "after");
    await writeFile(after, "");
    const step = runStep([["sh", "-c", "echo permission denied >&2; exit 4"], ["rm", after]], "x");
    const error = await registry.run(ctx, step).catch((e) => e);
    expect(error).toBeInstanceOf(UndoError);
    expect(error.message).toContain("exited 4: permission denied");
    expect(await lstat(after).catch((e) => e.code)).toBe("ENOENT");
  });

  test("a command the shell cannot find is a failure, whatever it printed", async () => {
    const step = runStep([["sh", "-c", "no-such-tool-ktctl -D rule"]], "x");
    await expect(createUndoRegistry().run(ctx, step)).rejects.toThrow("exited 127");
  });

  test("extra tolerated patterns", async () => {
    await registry.run(ctx, runStep([["sh", "-c", "echo 'route: gone already' >&2; exit 2"]], "x", ["gone already"]));
  });

  test("malformed command lists are refused", async () => {
    await expect(registry.run(ctx, { kind: "run", undo: { commands: "rm -rf /" } })).rejects.toThrow("list of argument lists");
  });
});

describe("registry", () => {
  test("knows the core kinds and where they act", () => {
    const registry = createUndoRegistry();
    expect(registry.where("delete-object")).toBe("cluster");
    expect(registry.where("patch-object")).toBe("cluster");
    expect(registry.where("scale")).toBe("cluster");
    expect(registry.where("restore-file")).toBe("laptop");
    expect(registry.where("run")).toBe("laptop");
    expect(registry.where("unknown")).toBe("laptop");
  });

  test("plugins add kinds but cannot replace core ones; registries are separate", async () => {
    const registry = createUndoRegistry();
    const seen: unknown[] = [];
    registry.register("my-kind", { where: "laptop", run: async (_ctx, data) => void seen.push(data) });
    await registry.run(ctx, { kind: "my-kind", undo: { n: 1 } });
    expect(seen).toEqual([{ n: 1 }]);
    expect(() => registry.register("scale", { where: "cluster", run: async () => {} })).toThrow("already registered");
    expect(createUndoRegistry().get("my-kind")).toBeUndefined();
  });

  test("unknown kinds and cluster kinds without kube fail clearly", async () => {
    const registry = createUndoRegistry();
    await expect(registry.run(ctx, { kind: "nope", undo: {} })).rejects.toThrow('no undo runner for step kind "nope"');
    await expect(registry.run(ctx, { kind: "delete-object", undo: {} })).rejects.toThrow("needs cluster access");
  });
});

describe("patchObjectStep", () => {
  test("records the fields BEFORE the change and marks that carry the undo", () => {
    const before = {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "echo", namespace: "demo" },
      spec: { selector: { app: "echo" } },
    };
    const { spec, marks } = patchObjectStep("abcd1234", before, [["spec", "selector"], ["spec", "sessionAffinity"]], "point echo at shadow");
    expect(spec.undo).toEqual({
      apiVersion: "v1",
      kind: "Service",
      namespace: "demo",
      name: "echo",
      marked: true,
      fields: [
        { path: ["spec", "selector"], value: { app: "echo" } },
        { path: ["spec", "sessionAffinity"], value: null },
      ],
    });
    expect(marks.labels).toEqual({ [LABEL_SESSION]: "abcd1234" });
    const object = { metadata: { annotations: marks.annotations } };
    expect(undoMarkOf(object)).toEqual({ kind: "patch-object", undo: spec.undo });
    expect(undoMarkOf({ metadata: { annotations: { [ANNOTATION_UNDO]: "{broken" } } })).toBeUndefined();
  });
});
