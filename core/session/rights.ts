// "Make no change you cannot undo": before a step changes the cluster, the session asks the API
// server whether this user may run the step's undo (a SelfSubjectAccessReview, which every
// authenticated user may create). A Role without `delete pods` then refuses the shadow up front,
// with the verb and resource named, instead of leaving a pod nobody of this user can remove.

import { ExitCode } from "../errors.ts";
import { KubeApiError, describeRequest } from "../kube/errors.ts";
import { objectPath } from "../kube/objects.ts";
import type { Kube, UndoRight } from "../plugin-api.ts";

const REVIEWS = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";

export interface RightsChecker {
  /** Throws a forbidden KubeApiError (exit 6) naming the first right refused; `why` goes in the hint. */
  require(rights: readonly UndoRight[], why: string): Promise<void>;
}

/** A checker that asks each distinct right once per process. */
export function createRightsChecker(kube: Pick<Kube, "request">): RightsChecker {
  const answers = new Map<string, Promise<boolean>>();

  const allowed = async (right: UndoRight): Promise<{ allowed: boolean; verb: string; resource: string; namespace?: string }> => {
    const path = await objectPath(kube, right.ref);
    const { resource, namespace } = describeRequest("GET", path);
    const group = right.ref.apiVersion.includes("/") ? right.ref.apiVersion.split("/")[0]! : "";
    const key = `${right.verb} ${group}/${resource} ${namespace ?? ""}`;
    let answer = answers.get(key);
    if (!answer) {
      answer = kube
        .request<any>("POST", REVIEWS, {
          apiVersion: "authorization.k8s.io/v1",
          kind: "SelfSubjectAccessReview",
          spec: { resourceAttributes: { verb: right.verb, group, resource, ...(namespace ? { namespace } : {}) } },
        })
        // A server that cannot review (old, or reviews refused) is not a "no": the change goes ahead
        // and a refusal, if any, surfaces when the undo runs, as it did before this check existed.
        .then((review) => review?.status?.allowed !== false)
        .catch(() => true);
      answers.set(key, answer);
    }
    return { allowed: await answer, verb: right.verb, resource: group ? `${resource}.${group}` : resource, namespace };
  };

  return {
    async require(rights, why) {
      const results = await Promise.all(rights.map(allowed));
      const refused = results.find((r) => !r.allowed);
      if (!refused) return;
      const where = refused.namespace ? `in namespace ${refused.namespace}` : "at cluster scope";
      throw new KubeApiError(
        `forbidden: cannot ${refused.verb} ${refused.resource} ${where} (RBAC)`,
        ExitCode.forbidden,
        403,
        "Forbidden",
        `ktctl needs it to undo "${why}", so it changed nothing; see docs/rbac.yaml`,
      );
    },
  };
}
