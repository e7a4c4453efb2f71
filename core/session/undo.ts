// Undo kinds: how each journaled step is reversed. A runner gets only the JSON the journal holds,
// because it may run in another process (the watchdog) or on another day (`ktctl clean`). So every
// runner is idempotent: running it twice, or for a step whose change never happened, is harmless.

import { lstat, readFile, readlink, rm, symlink, writeFile, rename, chmod, chown } from "node:fs/promises";
import { dirname, basename, join } from "node:path";
import { randomBytes } from "node:crypto";
import type { ConsolaInstance } from "consola";
import type { ObjectRef, StepSpec, UndoContext, UndoKind, UndoRunner, UndoWhere } from "../plugin-api.ts";

export type { UndoContext, UndoKind, UndoRunner, UndoWhere };
import { MERGE_PATCH, getOrUndefined, httpStatus, objectPath, refOf } from "../kube/objects.ts";
import { ExitCode, KtctlError } from "../errors.ts";
import { ANNOTATION_UNDO, DOMAIN, LABEL_MANAGED_BY, LABEL_SESSION, changeMarks } from "./labels.ts";
import { isSharedObject } from "./shares.ts";
import { goneSessions, leaveShared } from "./shared-object.ts";





export interface UndoRegistry {
  /** Adds a kind; refuses to replace an existing one, so a plugin cannot silently change core undo. */
  register(kind: string, definition: UndoKind): void;
  get(kind: string): UndoKind | undefined;
  /** Where a kind acts; unknown kinds count as laptop (they can only run where their plugin is loaded). */
  where(kind: string): UndoWhere;
  run(ctx: UndoContext, step: { kind: string; undo: Record<string, unknown> }): Promise<void>;
}

export class UndoError extends KtctlError {
  constructor(message: string, hint?: string) {
    super(message, ExitCode.failure, hint);
  }
}

/** A registry holding the core kinds. Each process builds its own; plugins add theirs in setup(). */
export function createUndoRegistry(): UndoRegistry {
  const kinds = new Map<string, UndoKind>(Object.entries(CORE_KINDS));
  return {
    register(kind, definition) {
      if (kinds.has(kind)) throw new KtctlError(`undo kind "${kind}" is already registered`, ExitCode.plugin);
      kinds.set(kind, definition);
    },
    get: (kind) => kinds.get(kind),
    where: (kind) => kinds.get(kind)?.where ?? "laptop",
    async run(ctx, step) {
      const definition = kinds.get(step.kind);
      if (!definition) {
        throw new UndoError(`no undo runner for step kind "${step.kind}"`, "enable the plugin that made this step, then run ktctl clean");
      }
      if (definition.where === "cluster" && !ctx.kube) throw new UndoError(`undo of "${step.kind}" needs cluster access`);
      await definition.run(ctx, step.undo);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Object references and API paths live in core/kube/objects.ts; re-exported for the session code.

export { objectPath, httpStatus, refOf } from "../kube/objects.ts";
export type { ObjectRef } from "../plugin-api.ts";

const describeRef = (ref: ObjectRef) => `${ref.kind.toLowerCase()} ${ref.namespace ? `${ref.namespace}/` : ""}${ref.name}`;

function readRef(data: Record<string, unknown>): ObjectRef {
  const { apiVersion, kind, namespace, name } = data;
  if (typeof apiVersion !== "string" || typeof kind !== "string" || typeof name !== "string") {
    throw new UndoError(`undo data lacks apiVersion, kind or name: ${JSON.stringify(data).slice(0, 200)}`);
  }
  return { apiVersion, kind, name, namespace: typeof namespace === "string" && namespace ? namespace : undefined };
}


/**
 * The session label on a changed object must be ours (or gone). If another session marked it since,
 * restoring now would undo that session's work; the step stays pending until that session ends.
 */
function assertNotTakenOver(object: any, ctx: UndoContext, ref: ObjectRef) {
  const holder = object?.metadata?.labels?.[LABEL_SESSION];
  if (holder && holder !== ctx.sessionId) {
    throw new UndoError(`${describeRef(ref)} is now marked by session ${holder}; left as it is`);
  }
}

/**
 * A step built with marks (`marked: true`) changed the object together with the marks, in one patch.
 * No mark means the change never landed or was undone already, or this is another cluster with a
 * same-named object: in every case there is nothing of this session's to restore.
 */
const carriesOurMark = (object: any, ctx: UndoContext, data: Record<string, unknown>) =>
  data.marked !== true || object?.metadata?.labels?.[LABEL_SESSION] === ctx.sessionId;

/** A merge patch that takes away this session's marks (session label, every ktctl.io/ annotation). */
function unmarkPatch(object: any): Record<string, unknown> {
  const labels: Record<string, null> = {};
  const annotations: Record<string, null> = {};
  if (object?.metadata?.labels?.[LABEL_SESSION] !== undefined) labels[LABEL_SESSION] = null;
  for (const key of Object.keys(object?.metadata?.annotations ?? {})) {
    if (key.startsWith(`${DOMAIN}/`)) annotations[key] = null;
  }
  const metadata: Record<string, unknown> = {};
  if (Object.keys(labels).length) metadata.labels = labels;
  if (Object.keys(annotations).length) metadata.annotations = annotations;
  return Object.keys(metadata).length ? { metadata } : {};
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * The merge patch that turns `current` into exactly `original`. A plain merge patch of the original
 * would MERGE maps (a service selector would keep the keys ktctl added), so keys absent from the
 * original are set to null explicitly.
 */
export function exactMergePatch(current: unknown, original: unknown): unknown {
  if (original === undefined || original === null) return null;
  if (isPlainObject(original) && isPlainObject(current)) {
    const patch: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(original)) patch[key] = exactMergePatch(current[key], value);
    for (const key of Object.keys(current)) if (!(key in original)) patch[key] = null;
    return patch;
  }
  return original;
}

function deepMerge(target: Record<string, unknown>, source: Record<string, unknown>): Record<string, unknown> {
  for (const [key, value] of Object.entries(source)) {
    const existing = target[key];
    target[key] = isPlainObject(existing) && isPlainObject(value) ? deepMerge({ ...existing }, value) : value;
  }
  return target;
}

function valueAt(object: unknown, path: string[]): unknown {
  let node = object;
  for (const key of path) {
    if (!isPlainObject(node)) return undefined;
    node = node[key];
  }
  return node;
}

function nest(path: string[], value: unknown): Record<string, unknown> {
  return path.reduceRight<unknown>((inner, key) => ({ [key]: inner }), value) as Record<string, unknown>;
}

export interface FieldRestore {
  /** e.g. ["spec", "selector"] */
  path: string[];
  /** The original value; null or missing means the field was absent. */
  value?: unknown;
}

/** True when applying `patch` to `object` would change nothing. */
function isNoop(object: unknown, patch: unknown): boolean {
  if (!isPlainObject(patch)) return JSON.stringify(object) === JSON.stringify(patch);
  if (!isPlainObject(object)) return Object.values(patch).every((v) => v === null);
  return Object.entries(patch).every(([key, value]) =>
    value === null ? object[key] === undefined : isNoop(object[key], value),
  );
}

// ---------------------------------------------------------------------------------------------
// Core kinds

const deleteObject: UndoKind = {
  where: "cluster",
  async run(ctx, data) {
    const kube = ctx.kube!;
    const ref = readRef(data);
    const path = await objectPath(kube, ref);
    const object = await getOrUndefined(kube, path);
    if (!object) return;
    // Only what this session made: a same-named object someone else owns (e.g. the create failed
    // with AlreadyExists and this is the immediate undo) must survive.
    if (object.metadata?.labels?.[LABEL_SESSION] !== ctx.sessionId) {
      ctx.logger?.debug(`${describeRef(ref)} is not this session's; not deleting it`);
      return;
    }
    try {
      await kube.request("DELETE", path, {
        apiVersion: "v1",
        kind: "DeleteOptions",
        propagationPolicy: "Background",
        preconditions: { uid: object.metadata.uid },
      });
    } catch (error) {
      // 404: gone meanwhile. 409: the uid no longer matches, so ours is gone and another took the name.
      const status = httpStatus(error);
      if (status !== 404 && status !== 409) throw error;
    }
  },
};

const patchObject: UndoKind = {
  where: "cluster",
  async run(ctx, data) {
    const kube = ctx.kube!;
    const ref = readRef(data);
    const path = await objectPath(kube, ref);
    const object = await getOrUndefined(kube, path);
    if (!object) return;
    // A marked change without our mark on the object never landed (or was undone already): nothing
    // of ours is there, whoever marks it now. Only unmarked steps need the takeover guard.
    if (!carriesOurMark(object, ctx, data)) return;
    assertNotTakenOver(object, ctx, ref);
    let patch: Record<string, unknown> = {};
    for (const field of (data.fields as FieldRestore[] | undefined) ?? []) {
      patch = deepMerge(patch, nest(field.path, exactMergePatch(valueAt(object, field.path), field.value)));
    }
    if (isPlainObject(data.mergePatch)) patch = deepMerge(patch, data.mergePatch);
    patch = deepMerge(patch, unmarkPatch(object));
    if (isNoop(object, patch)) return;
    await kube.request("PATCH", path, patch, MERGE_PATCH);
  },
};

const scale: UndoKind = {
  where: "cluster",
  async run(ctx, data) {
    const kube = ctx.kube!;
    const ref = readRef(data);
    if (typeof data.replicas !== "number") throw new UndoError(`scale undo of ${describeRef(ref)} lacks the replica count`);
    const path = await objectPath(kube, ref);
    const object = await getOrUndefined(kube, path);
    if (!object) return;
    // A marked change without our mark on the object never landed (or was undone already): nothing
    // of ours is there, whoever marks it now. Only unmarked steps need the takeover guard.
    if (!carriesOurMark(object, ctx, data)) return;
    assertNotTakenOver(object, ctx, ref);
    const patch = deepMerge({ spec: { replicas: data.replicas } }, unmarkPatch(object));
    if (isNoop(object, patch)) return;
    await kube.request("PATCH", path, patch, MERGE_PATCH);
  },
};

/**
 * Leaves a shared object (see shared-object.ts): takes this session off its sharers and deletes it
 * when nobody is left, dropping sharers whose session Lease is gone.
 */
const releaseSharedShadow: UndoKind = {
  where: "cluster",
  async run(ctx, data) {
    const kube = ctx.kube!;
    const ref = readRef(data);
    const gone = (ids: readonly string[]) => (ref.namespace ? goneSessions(kube, ref.namespace, ids) : Promise.resolve(new Set<string>()));
    const logger = ctx.logger && { debug: (message: string) => ctx.logger!.debug(message) };
    await leaveShared(kube, { ref, sessionId: ctx.sessionId, isShared: isSharedObject, ...(logger ? { logger } : {}) }, {}, gone);
  },
};

const isErrno = (error: unknown, ...codes: string[]) => codes.includes((error as NodeJS.ErrnoException)?.code ?? "");

async function lstatOrUndefined(path: string) {
  try {
    return await lstat(path);
  } catch (error) {
    if (isErrno(error, "ENOENT")) return undefined;
    throw error;
  }
}

/** Writes bytes so readers never see half a file; falls back to in-place for bind-mounted files. */
async function writeFileSafely(path: string, bytes: Buffer, mode?: number) {
  const tmp = join(dirname(path), `.${basename(path)}.ktctl-${randomBytes(4).toString("hex")}`);
  try {
    await writeFile(tmp, bytes, { mode: mode ?? 0o644 });
    if (mode !== undefined) await chmod(tmp, mode);
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    // A bind-mounted /etc/hosts or resolv.conf (containers, WSL) cannot be replaced, only rewritten.
    if (!isErrno(error, "EBUSY", "EXDEV", "EPERM", "EACCES")) throw error;
    await writeFile(path, bytes);
    if (mode !== undefined) await chmod(path, mode);
  }
}

const restoreFile: UndoKind = {
  where: "laptop",
  async run(ctx, data) {
    const path = data.path;
    if (typeof path !== "string" || !path) throw new UndoError("restore-file undo lacks the path");
    const current = await lstatOrUndefined(path);

    if (typeof data.linkTarget === "string") {
      if (current?.isSymbolicLink() && (await readlink(path)) === data.linkTarget) return;
      if (current) await rm(path, { force: true });
      await symlink(data.linkTarget, path);
      return;
    }
    if (data.content === null || data.content === undefined) {
      await rm(path, { force: true });
      return;
    }
    if (typeof data.content !== "string") throw new UndoError(`restore-file undo of ${path} has no base64 content`);
    const bytes = Buffer.from(data.content, "base64");
    const mode = typeof data.mode === "number" ? data.mode & 0o7777 : undefined;
    if (current?.isFile()) {
      const same = (await readFile(path)).equals(bytes);
      const sameMode = mode === undefined || (current.mode & 0o7777) === mode;
      if (same && sameMode) return;
      if (same) {
        await chmod(path, mode!);
        return;
      }
    } else if (current) {
      // Something else (a symlink, a directory) stands where a regular file was.
      await rm(path, { force: true, recursive: current.isDirectory() });
    }
    await writeFileSafely(path, bytes, mode);
    if (typeof data.uid === "number" && typeof data.gid === "number" && process.getuid?.() === 0) {
      await chown(path, data.uid, data.gid);
    }
    ctx.logger?.debug(`restored ${path}`);
  },
};

/** What commands print when the thing they would remove is already gone. */
const ALREADY_GONE = [
  /does a matching rule exist/i,
  /no chain\/target\/match by that name/i,
  /no such (file|device|process|rule|chain|table)/i,
  /cannot find device/i,
  /does not exist/i,
  /not found/i,
  /not exist/i,
];

const runCommands: UndoKind = {
  where: "laptop",
  async run(ctx, data) {
    const commands = data.commands;
    if (!Array.isArray(commands) || !commands.every((c) => Array.isArray(c) && c.length && c.every((a) => typeof a === "string"))) {
      throw new UndoError("run undo needs commands as a list of argument lists");
    }
    const extra = Array.isArray(data.tolerate) ? (data.tolerate as string[]).map((s) => new RegExp(s, "i")) : [];
    const failures: string[] = [];
    // Every command is tried, so one already-gone rule does not keep the next rule in place.
    for (const argv of commands as string[][]) {
      let proc;
      try {
        proc = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
      } catch (error) {
        failures.push(`${argv.join(" ")}: ${(error as Error).message}`);
        continue;
      }
      const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
      if (code === 0) continue;
      const output = `${stderr}\n${stdout}`;
      // 126/127: the shell could not run the command at all; that is never "already undone".
      if (code !== 126 && code !== 127 && [...ALREADY_GONE, ...extra].some((re) => re.test(output))) {
        ctx.logger?.debug(`${argv.join(" ")}: already undone`);
        continue;
      }
      failures.push(`${argv.join(" ")} exited ${code}: ${output.trim().split("\n")[0]}`);
    }
    if (failures.length) throw new UndoError(failures.join("; "));
  },
};

const CORE_KINDS: Record<string, UndoKind> = {
  "delete-object": deleteObject,
  "patch-object": patchObject,
  scale,
  "restore-file": restoreFile,
  run: runCommands,
  "release-shared-shadow": releaseSharedShadow,
};

export const CORE_UNDO_KINDS = Object.keys(CORE_KINDS);

// ---------------------------------------------------------------------------------------------
// Step builders: they record the state BEFORE the change, which is what makes undo exact.


/** Step for creating an object: its undo deletes it (if it still carries the session label). */
export function deleteObjectStep(ref: ObjectRef, describe = `create ${describeRef(ref)}`): StepSpec {
  return { kind: "delete-object", describe, undo: { ...ref } };
}

/**
 * Step for changing fields of an existing object, given the object as read BEFORE the change and the
 * field paths the change touches (e.g. [["spec","selector"]]). Merge `marks` into the change's patch.
 */
export function patchObjectStep(
  sessionId: string,
  before: { apiVersion: string; kind: string; metadata: { name?: string; namespace?: string } },
  paths: string[][],
  describe: string,
): { spec: StepSpec; marks: ReturnType<typeof changeMarks> } {
  const fields: FieldRestore[] = paths.map((path) => ({ path, value: valueAt(before, path) ?? null }));
  const spec: StepSpec = { kind: "patch-object", describe, undo: { ...refOf(before), fields, marked: true } };
  return { spec, marks: changeMarks(sessionId, { kind: spec.kind, undo: spec.undo }) };
}

/** Step for scaling a workload, given the workload as read BEFORE scaling. */
export function scaleStep(
  sessionId: string,
  before: { apiVersion: string; kind: string; metadata: { name?: string; namespace?: string }; spec?: { replicas?: number } },
  describe: string,
): { spec: StepSpec; marks: ReturnType<typeof changeMarks> } {
  const spec: StepSpec = { kind: "scale", describe, undo: { ...refOf(before), replicas: before.spec?.replicas ?? 1, marked: true } };
  return { spec, marks: changeMarks(sessionId, { kind: spec.kind, undo: spec.undo }) };
}

/** Step for changing a laptop file: captures its bytes, mode and owner now (or that it is absent). */
export async function restoreFileStep(path: string, describe = `change ${path}`): Promise<StepSpec> {
  const stat = await lstatOrUndefined(path);
  let undo: Record<string, unknown>;
  if (!stat) undo = { path, content: null };
  else if (stat.isSymbolicLink()) undo = { path, linkTarget: await readlink(path) };
  else undo = { path, content: (await readFile(path)).toString("base64"), mode: stat.mode & 0o7777, uid: stat.uid, gid: stat.gid };
  return { kind: "restore-file", describe, undo };
}

/** Step for joining a shared object (a shared shadow): its undo takes this session off the sharers. */
export function releaseShareStep(ref: ObjectRef, describe = `share ${describeRef(ref)}`): StepSpec {
  return { kind: "release-shared-shadow", describe, undo: { ...ref } };
}

/** Step whose undo runs laptop commands, e.g. [["iptables","-t","nat","-D","OUTPUT",...]]. */
export function runStep(commands: string[][], describe: string, tolerate: string[] = []): StepSpec {
  return { kind: "run", describe, undo: { commands, tolerate } };
}

/** True for objects a session created (as opposed to changed). */
export const isCreatedByKtctl = (object: any): boolean => object?.metadata?.labels?.[LABEL_MANAGED_BY] !== undefined;

/** The undo recorded on a changed object by `changeMarks`, if any. */
export function undoMarkOf(object: any): { kind: string; undo: Record<string, unknown> } | undefined {
  const raw = object?.metadata?.annotations?.[ANNOTATION_UNDO];
  if (typeof raw !== "string") return undefined;
  try {
    const parsed = JSON.parse(raw);
    return typeof parsed?.kind === "string" && isPlainObject(parsed.undo) ? parsed : undefined;
  } catch {
    return undefined;
  }
}
