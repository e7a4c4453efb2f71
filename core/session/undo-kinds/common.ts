// What every core undo kind shares: its error type and reading the object reference a step recorded.

import type { ObjectRef, UndoRight } from "../../plugin-api.ts";
import { ExitCode, KtctlError } from "../../errors.ts";

export class UndoError extends KtctlError {
  constructor(message: string, hint?: string) {
    super(message, ExitCode.failure, hint);
  }
}

export const describeRef = (ref: ObjectRef) => `${ref.kind.toLowerCase()} ${ref.namespace ? `${ref.namespace}/` : ""}${ref.name}`;

export function readRef(data: Record<string, unknown>): ObjectRef {
  const { apiVersion, kind, namespace, name } = data;
  if (typeof apiVersion !== "string" || typeof kind !== "string" || typeof name !== "string") {
    throw new UndoError(`undo data lacks apiVersion, kind or name: ${JSON.stringify(data).slice(0, 200)}`);
  }
  return { apiVersion, kind, name, namespace: typeof namespace === "string" && namespace ? namespace : undefined };
}

export const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** The value at a field path (e.g. ["spec","selector"]) of an object; undefined when absent. */
export function valueAt(object: unknown, path: string[]): unknown {
  let node = object;
  for (const key of path) {
    if (!isPlainObject(node)) return undefined;
    node = node[key];
  }
  return node;
}

/** The rights an undo of one object takes: read it, then `verbs` on it (checked before the change; see rights.ts). */
export const rightsOnObject =
  (...verbs: UndoRight["verb"][]) =>
  (data: Record<string, unknown>): UndoRight[] => {
    const ref = readRef(data);
    return (["get", ...verbs] as UndoRight["verb"][]).map((verb) => ({ verb, ref }));
  };
