// Step builders: they record the state BEFORE the change, which is what makes undo exact. Each uses
// a core undo kind (undo-kinds/), so the watchdog and `ktctl clean` can undo it anywhere.

import { readFile, readlink } from "node:fs/promises";
import type { ObjectRef, StepSpec } from "../plugin-api.ts";
import { refOf } from "../kube/objects.ts";
import { changeMarks } from "./labels.ts";
import { describeRef, valueAt } from "./undo-kinds/common.ts";
import type { FieldRestore } from "./undo-kinds/objects.ts";
import { lstatOrUndefined } from "./undo-kinds/laptop.ts";

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
