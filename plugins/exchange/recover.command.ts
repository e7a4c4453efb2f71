// `ktctl recover SERVICE`: puts one service back from what the cluster itself records (the undo
// record on the service and on the workload behind it), for the rare case that neither the session,
// its watchdog nor `clean` did. No journal is needed.

import type { CleanPlan, CommandFactory, Kube, PluginApi, Scheme } from "../../core/plugin-api.ts";
import { listObjects, podTemplateLabels, selects } from "./target.ts";

type UndoAction = CleanPlan["entries"][number]["actions"][number];

const undoAction = (describe: string, kind: string, undo: Record<string, unknown>): UndoAction => ({
  type: "undo",
  describe,
  step: { kind, describe, undo },
  where: "cluster",
  source: "object",
});

/** The selector the service had before the session, from its own undo record (else its current one). */
export function originalSelector(scheme: Pick<Scheme, "undoMarkOf">, service: any): Record<string, string> | undefined {
  const mark = scheme.undoMarkOf(service);
  const fields = (mark?.undo?.fields ?? []) as { path: string[]; value?: unknown }[];
  const saved = fields.find((f) => f.path.join(".") === "spec.selector");
  if (saved) return (saved.value ?? undefined) as Record<string, string> | undefined;
  return service.spec?.selector;
}

/** Undo actions for the service and for the workloads of the same session behind it. */
async function targetedActions(scheme: Scheme, kube: Kube, service: any, holder: string): Promise<UndoAction[]> {
  const namespace = kube.namespace;
  const name = service.metadata.name;
  const actions: UndoAction[] = [];
  if (scheme.isCreatedByKtctl(service)) {
    actions.push(undoAction(`delete service ${namespace}/${name} (created by session ${holder})`, "delete-object", { apiVersion: "v1", kind: "Service", namespace, name }));
    return actions;
  }
  const mark = scheme.undoMarkOf(service);
  if (mark) actions.push(undoAction(`restore service ${namespace}/${name} from its ${mark.kind} record`, mark.kind, mark.undo));
  const selector = originalSelector(scheme, service);
  const deployments = await listObjects(kube, `/apis/apps/v1/namespaces/${encodeURIComponent(namespace)}/deployments`);
  for (const deployment of deployments) {
    const record = scheme.undoMarkOf(deployment);
    if (!record || scheme.markedBy(deployment) !== holder || !selects(selector, podTemplateLabels(deployment))) continue;
    actions.push(undoAction(`restore deployment ${namespace}/${deployment.metadata.name} from its ${record.kind} record`, record.kind, record.undo));
  }
  return actions;
}

const recover: CommandFactory = (api: PluginApi) =>
  api.defineCommand({
    meta: { name: "recover", description: "Put one service back from the cluster's own records of what ktctl changed" },
    args: {
      ...api.globalArgs,
      service: { type: "positional", description: "Service NAME (or svc/NAME)", required: true },
      force: { type: "boolean", default: false, description: "Restore even while the session holding it is alive" },
    },
    async run({ args }) {
      const { KtctlError, ExitCode } = api.errors;
      const global = api.globalOptions(args);
      const name = String(args.service).replace(/^(svc|service|services)\//i, "");
      const kube = await api.kube(global);
      const namespace = kube.namespace;
      const service = await kube.request<any>("GET", `/api/v1/namespaces/${encodeURIComponent(namespace)}/services/${encodeURIComponent(name)}`);
      const holder = api.scheme.markedBy(service);
      if (!holder) {
        api.logger.info(`service ${namespace}/${name} carries no ktctl record: nothing to recover`);
        return;
      }
      const info = await api.ownership.findSession(kube, holder);
      if (info?.state === "alive" && !args.force) {
        throw new KtctlError(
          `service ${namespace}/${name} is held by ${api.ownership.describeHolder(info)}, which is alive`,
          ExitCode.conflict,
          "it is restored when that session ends; --force restores it now (that session then serves nothing)",
        );
      }
      if (info?.state !== "alive") {
        // The whole dead session, as clean would: the shadow goes too, the lease is released.
        const reason = await api.ownership.cleanDeadSession(kube, holder);
        if (!reason) {
          api.logger.success(`service ${namespace}/${name} restored (session ${holder} cleaned)`);
          return;
        }
        if (!args.force) throw new KtctlError(`session ${holder} holding service ${namespace}/${name} was not cleaned: ${reason}`, ExitCode.conflict, "--force restores the service from its own record now");
      }
      const actions = await targetedActions(api.scheme, kube, service, holder);
      const plan: CleanPlan = {
        scope: `service ${namespace}/${name}`,
        entries: [{ sessionId: holder, namespace, owner: info?.owner, why: "ktctl recover", localJournal: false, actions, notes: [] }],
        skipped: [],
        notes: [],
      };
      const result = await api.sessions.executePlan(plan, kube);
      const failures = result.entries.flatMap((e) => e.failures);
      if (failures.length) throw new KtctlError(`could not recover service ${namespace}/${name}: ${failures.join("; ")}`, ExitCode.failure);
      for (const action of actions) api.logger.success(action.describe);
    },
  });

export default recover;
