// The undo kind of joining a shared object (a shared shadow): take this session off its holders,
// and delete the object when nobody is left. The compare-and-swap itself is the one shared-object
// primitive (../shared-object.ts) that mesh membership and every plugin use through `api.shared`.

import type { UndoKind } from "../../plugin-api.ts";
import { isSharedObject } from "../shares.ts";
import { goneSessions, leaveShared } from "../shared-object.ts";
import { readRef, rightsOnObject } from "./common.ts";

export const releaseSharedShadow: UndoKind = {
  where: "cluster",
  rights: rightsOnObject("patch", "delete"),
  async run(ctx, data) {
    const kube = ctx.kube!;
    const ref = readRef(data);
    const gone = (ids: readonly string[]) => (ref.namespace ? goneSessions(kube, ref.namespace, ids) : Promise.resolve(new Set<string>()));
    const logger = ctx.logger && { debug: (message: string) => ctx.logger!.debug(message) };
    await leaveShared(kube, { ref, sessionId: ctx.sessionId, isShared: isSharedObject, ...(logger ? { logger } : {}) }, {}, gone);
  },
};
