// The steps a session makes in the session e2e tests, shared by the in-process tests and the
// fixture process: create a ConfigMap, change another ConfigMap's data, change a laptop file.

import { writeFile } from "node:fs/promises";
import type { Kube, Session } from "../../core/plugin-api.ts";
import { LABEL_ROLE, objectName } from "../../core/session/labels.ts";
import { deleteObjectStep, patchObjectStep, restoreFileStep } from "../../core/session/steps.ts";

export async function makeSteps(session: Session, kube: Kube, namespace: string, target: string, laptopFile: string): Promise<{ created: string }> {
  const created = { apiVersion: "v1", kind: "ConfigMap", namespace, name: objectName(session.id, "e2e") };
  await session.step(deleteObjectStep(created), () =>
    kube.request("POST", `/api/v1/namespaces/${namespace}/configmaps`, {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: created.name, labels: { ...session.labels, [LABEL_ROLE]: "e2e" } },
      data: { made: "by the session" },
    }),
  );

  const path = `/api/v1/namespaces/${namespace}/configmaps/${target}`;
  const before = await kube.request<any>("GET", path);
  const change = patchObjectStep(session.id, before, [["data"]], `change configmap ${namespace}/${target}`);
  await session.step(change.spec, () =>
    kube.request("PATCH", path, { metadata: change.marks, data: { color: "red", added: "by the session" } }, "application/merge-patch+json"),
  );

  await session.step(await restoreFileStep(laptopFile), () => writeFile(laptopFile, "changed by the session\n"));
  return { created: created.name };
}
