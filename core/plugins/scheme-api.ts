// The naming scheme and the step builders as the plugin API offers them: the same functions the
// session machinery uses, so a team's plugin labels and journals exactly as the built-ins do.

import type { Scheme, StepBuilders } from "../plugin-api.ts";
import * as labels from "../session/labels.ts";
import { refOf } from "../kube/objects.ts";
import { deleteObjectStep, patchObjectStep, restoreFileStep, runStep, scaleStep } from "../session/steps.ts";

export const SCHEME: Scheme = {
  domain: labels.DOMAIN,
  labels: {
    managedBy: labels.LABEL_MANAGED_BY,
    session: labels.LABEL_SESSION,
    role: labels.LABEL_ROLE,
    owner: labels.LABEL_OWNER,
    share: labels.LABEL_SHARE,
  },
  managedByValue: labels.MANAGED_BY_VALUE,
  annotations: { undo: labels.ANNOTATION_UNDO, sharers: labels.ANNOTATION_SHARERS },
  labelSafe: labels.labelSafe,
  dnsSafe: labels.dnsSafe,
  objectName: labels.objectName,
  shadowSelector: labels.shadowSelector,
  markedBy: labels.markedBy,
  isCreatedByKtctl: labels.isCreatedByKtctl,
  undoMarkOf: labels.undoMarkOf,
  changeMarks: labels.changeMarks,
};

export const STEP_BUILDERS: StepBuilders = {
  deleteObject: deleteObjectStep,
  patchObject: patchObjectStep,
  scale: scaleStep,
  restoreFile: restoreFileStep,
  run: runStep,
  refOf,
};
