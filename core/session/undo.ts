// The undo registry: how each journaled step is reversed, by kind. A runner gets only the JSON the
// journal holds, because it may run in another process (the watchdog) or on another day
// (`ktctl clean`). So every runner is idempotent: running it twice, or for a step whose change never
// happened, is harmless. The core kinds live in undo-kinds/, the step builders in steps.ts.

import type { UndoContext, UndoKind, UndoRunner, UndoWhere } from "../plugin-api.ts";
import { ExitCode, KtctlError } from "../errors.ts";
import { CORE_KINDS, UndoError } from "./undo-kinds/index.ts";

export type { UndoContext, UndoKind, UndoRunner, UndoWhere };
export { UndoError };

export interface UndoRegistry {
  /** Adds a kind; refuses to replace an existing one, so a plugin cannot silently change core undo. */
  register(kind: string, definition: UndoKind): void;
  get(kind: string): UndoKind | undefined;
  /** Where a kind acts; unknown kinds count as laptop (they can only run where their plugin is loaded). */
  where(kind: string): UndoWhere;
  run(ctx: UndoContext, step: { kind: string; undo: Record<string, unknown> }): Promise<void>;
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
