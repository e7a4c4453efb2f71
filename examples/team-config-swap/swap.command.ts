// `ktctl swap-config deploy/NAME --configmap OTHER [--from CURRENT]` or `--image IMAGE [--container C]`.

import type { CommandFactory, Kube, PluginApi } from "../../core/plugin-api.ts";
import { configMapsUsed, swapConfigMap, swapImage, type PodSpec, type TemplateChange } from "./template.ts";

interface SwapArgs {
  configmap?: string;
  from?: string;
  image?: string;
  container?: string;
}

/** What to change, worked out and checked before the session starts. */
async function planSwap(api: PluginApi, kube: Kube, spec: PodSpec, args: SwapArgs): Promise<{ change: TemplateChange; what: string }> {
  const { KtctlError, ExitCode } = api.errors;
  if (Boolean(args.configmap) === Boolean(args.image)) {
    throw new KtctlError("give exactly one of --configmap OTHER and --image IMAGE", ExitCode.usage);
  }
  if (args.image) {
    const names = (spec.containers ?? []).map((c) => c.name);
    const container = args.container ?? (names.length === 1 ? names[0] : undefined);
    if (!container || ![...names, ...(spec.initContainers ?? []).map((c) => c.name)].includes(container)) {
      throw new KtctlError(`which container? the pod template has ${names.join(", ")}`, ExitCode.usage, "name it with --container");
    }
    return { change: swapImage(spec, container, args.image), what: `container ${container} runs ${args.image}` };
  }
  const used = configMapsUsed(spec);
  const from = args.from ?? (used.length === 1 ? used[0] : undefined);
  if (!from || !used.includes(from)) {
    throw new KtctlError(
      used.length ? `which ConfigMap? the pod template uses ${used.join(", ")}` : "the pod template uses no ConfigMap",
      ExitCode.usage,
      used.length ? "name the one to replace with --from" : undefined,
    );
  }
  const other = args.configmap!;
  if (!(await kube.get(`/api/v1/namespaces/${encodeURIComponent(kube.namespace)}/configmaps/${encodeURIComponent(other)}`))) {
    throw new KtctlError(`configmap ${kube.namespace}/${other} not found`, ExitCode.notFound);
  }
  return { change: swapConfigMap(spec, from, other), what: `configmap ${other} instead of ${from}` };
}

const swapConfig: CommandFactory = (api) =>
  api.defineCommand({
    meta: { name: "swap-config", description: "Point a Deployment at another ConfigMap or image until Ctrl-C" },
    args: {
      ...api.globalArgs,
      target: { type: "positional", required: true, description: "deploy/NAME" },
      configmap: { type: "string", description: "The ConfigMap to use instead" },
      from: { type: "string", description: "The ConfigMap to replace (needed when the template uses several)" },
      image: { type: "string", description: "The image to run instead" },
      container: { type: "string", description: "The container whose image changes (needed when there are several)" },
    },
    async run({ args }) {
      const { KtctlError, ExitCode } = api.errors;
      const target = api.parseTarget(String(args.target));
      if (target.kind !== "deployment") throw new KtctlError(`swap-config works on a Deployment, not a ${target.kind}`, ExitCode.usage, "e.g. deploy/NAME");
      const global = api.globalOptions(args);
      const kube = await api.kube(global);
      const path = await kube.pathOf({ apiVersion: "apps/v1", kind: "Deployment", namespace: kube.namespace, name: target.name });
      const before = await kube.get(path);
      if (!before) throw new KtctlError(`deployment ${kube.namespace}/${target.name} not found`, ExitCode.notFound);
      const holder = api.scheme.markedBy(before);
      if (holder) throw new KtctlError(`deployment ${kube.namespace}/${target.name} is changed by session ${holder} already`, ExitCode.conflict);
      const { change, what } = await planSwap(api, kube, before.spec?.template?.spec ?? {}, args as SwapArgs);
      const fields = Object.keys(change);
      if (!fields.length) throw new KtctlError(`nothing to change: deployment ${kube.namespace}/${target.name} already has ${args.image ? `image ${args.image}` : `configmap ${args.configmap}`}`, ExitCode.usage);

      const session = await api.startSession({ kube, mode: "swap-config", target: `deployment/${target.name}`, global });
      try {
        // The step records the fields as they are now; its marks go into the same patch, so the
        // Deployment itself says how to put it back.
        const { spec, marks } = api.steps.patchObject(
          session.id,
          before,
          fields.map((field) => ["spec", "template", "spec", field]),
          `point deployment ${kube.namespace}/${target.name} at ${what}`,
        );
        await session.step(spec, () =>
          kube.mergePatch(path, { metadata: { labels: marks.labels, annotations: marks.annotations }, spec: { template: { spec: change } } }),
        );
      } catch (error) {
        await session.close("swap-config failed");
        throw error;
      }
      api.logger.success(`deployment ${kube.namespace}/${target.name} now uses ${what}; Ctrl-C puts it back`);
      // SIGINT/SIGTERM close the session (undo, then exit); so does a session lost from elsewhere.
      const reason = await session.ended;
      await session.close(reason);
    },
  });

export default swapConfig;
