// A shadow several sessions of one owner share (`ShadowOptions.share`). Its name is derived from
// everything that makes it what it is (owner, share key, the pod spec with its public key), so the
// same request from another process names the same pod, and a different image, role set or key
// names another. Creating it under that name is the lock: the API server lets one create win, and
// the rest join. Joining writes the session into the pod's sharers annotation (see
// core/session/shared-object.ts); each sharer's journaled `release-shared-shadow` takes it out again, and
// the last one deletes the pod.

import { createHash } from "node:crypto";
import { waitForObject } from "../kube/wait.ts";
import type { GlobalOptions, Kube, ShadowOptions } from "../plugin-api.ts";
import { LABEL_MANAGED_BY, LABEL_OWNER, LABEL_SHARE, MANAGED_BY_VALUE, dnsSafe, labelSafe } from "../session/labels.ts";
import { httpStatus } from "../kube/objects.ts";
import { goneSessions, joinShared } from "../session/shared-object.ts";
import { shadowPodSpec } from "./pod-spec.ts";

const MAX_NAME = 63;
const NAME_PREFIX = "ktctl-shared-";
const HASH_LENGTH = 10;

export interface SharedShadowInput {
  namespace: string;
  owner: string;
  key: string;
  publicKey: string;
  global: GlobalOptions;
  options: ShadowOptions;
}

/** The shared pod's name and spec (without the sharers, which each joiner writes). Pure. */
export function sharedShadowPod(input: SharedShadowInput): { name: string; spec: any } {
  const keyLabel = labelSafe(dnsSafe(input.key));
  const spec = shadowPodSpec({
    name: "",
    namespace: input.namespace,
    // The shadow reports this as its session: it serves no single one.
    sessionId: `shared:${keyLabel}`,
    sessionLabels: { [LABEL_MANAGED_BY]: MANAGED_BY_VALUE, [LABEL_OWNER]: labelSafe(input.owner), [LABEL_SHARE]: keyLabel },
    publicKey: input.publicKey,
    global: input.global,
    options: input.options,
  });
  const hash = createHash("sha256").update(JSON.stringify([input.owner, input.key, spec])).digest("hex").slice(0, HASH_LENGTH);
  const room = MAX_NAME - NAME_PREFIX.length - 1 - HASH_LENGTH;
  const name = `${NAME_PREFIX}${dnsSafe(input.key).slice(0, room).replace(/-+$/, "")}-${hash}`;
  spec.metadata.name = name;
  return { name, spec };
}

export interface JoinOptions {
  namespace: string;
  name: string;
  spec: any;
  sessionId: string;
  /** Bound on waiting for a terminating pod of the same name to go. */
  timeoutMs: number;
  logger: { debug(message: string): void };
}

export interface JoinResult {
  created: boolean;
  /** The sharers after joining, this session included. */
  sharers: string[];
}

const podsPath = (namespace: string) => `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods`;

/**
 * Makes this session a sharer of the shared pod (a shared object, see core/session/shared-object.ts):
 * creates it (listing only this session) when it does not exist, else adds the session to its
 * sharers. A pod being deleted is waited out first; a pod that ended (evicted) is deleted, as a
 * replacement must take its name.
 */
export async function joinSharedShadow(kube: Kube, o: JoinOptions): Promise<JoinResult> {
  const path = `${podsPath(o.namespace)}/${encodeURIComponent(o.name)}`;
  const result = await joinShared(
    kube,
    { ref: { apiVersion: "v1", kind: "Pod", namespace: o.namespace, name: o.name }, sessionId: o.sessionId, isShared: () => true, logger: o.logger },
    {
      async create(_pod, marks) {
        const body = structuredClone(o.spec);
        body.metadata.annotations = { ...body.metadata.annotations, ...marks.annotations };
        await kube.request("POST", podsPath(o.namespace), body);
        return true;
      },
      async usable(pod) {
        const ended = pod.status?.phase === "Failed" || pod.status?.phase === "Succeeded";
        if (!pod.metadata?.deletionTimestamp && !ended) return true;
        const uid = pod.metadata.uid;
        if (!pod.metadata?.deletionTimestamp) {
          o.logger.debug(`shared shadow ${o.name} ended (${pod.status?.phase}); replacing it`);
          await kube.request("DELETE", path, { apiVersion: "v1", kind: "DeleteOptions", preconditions: { uid } }).catch((error) => {
            if (![404, 409].includes(httpStatus(error) ?? 0)) throw error;
          });
        }
        await waitForObject(kube, podsPath(o.namespace), o.name, (p: any) => !p || p.metadata?.uid !== uid, { timeoutMs: o.timeoutMs, kind: "pod" });
        return false;
      },
    },
    (ids) => goneSessions(kube, o.namespace, ids),
  );
  return { created: result.created, sharers: result.holders };
}
