// The core undo kinds by name. They run wherever a journal is read (the session, its watchdog,
// `ktctl clean` on any machine), so a step built with them is undone even where the plugin that made
// it is not loaded.

import type { UndoKind } from "../../plugin-api.ts";
import { deleteObject, patchObject, scale } from "./objects.ts";
import { releaseSharedShadow } from "./shared.ts";
import { restoreFile, runCommands } from "./laptop.ts";

export const CORE_KINDS: Record<string, UndoKind> = {
  "delete-object": deleteObject,
  "patch-object": patchObject,
  scale,
  "restore-file": restoreFile,
  run: runCommands,
  "release-shared-shadow": releaseSharedShadow,
};

export const CORE_UNDO_KINDS = Object.keys(CORE_KINDS);

export { UndoError } from "./common.ts";
export { exactMergePatch, type FieldRestore } from "./objects.ts";
