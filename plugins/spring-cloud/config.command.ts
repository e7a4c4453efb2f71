// `ktctl spring config APP [--profile P] [-o FILE] [--secrets]`: the property sources Spring Cloud
// Kubernetes would load for APP, as one application-ktctl.yaml, so the app can start without read
// rights on the cluster's ConfigMaps, or offline (spring.profiles.include=ktctl picks it up).

import { writeFile } from "node:fs/promises";
import type { CommandFactory } from "../../core/plugin-api.ts";
import { describeLookup, foundAny, readClusterSources } from "./cluster-sources.ts";
import { formatApplicationYaml } from "./property-sources.ts";

const config: CommandFactory = (api) =>
  api.defineCommand({
    meta: { name: "config", description: "Write the ConfigMap/Secret properties Spring Cloud Kubernetes loads for APP as application-ktctl.yaml" },
    args: {
      ...api.globalArgs,
      app: { type: "positional", required: true, description: "spring.application.name" },
      profile: { type: "string", valueHint: "p1,p2", description: "Active profiles (APP-PROFILE sources and profile documents)" },
      output: { type: "string", alias: "o", valueHint: "file", default: "application-ktctl.yaml", description: 'Where to write ("-": standard output)' },
      secrets: { type: "boolean", default: false, description: "Write the values that come from Secrets too (left out by default)" },
    },
    async run({ args }) {
      const { KtctlError, ExitCode } = api.errors;
      const global = api.globalOptions(args as Record<string, unknown>);
      const kube = await api.kube(global);
      const namespace = kube.namespace; // settled once, from -n or the context
      const app = String(args.app);
      const profiles = args.profile ? String(args.profile).split(",").map((p) => p.trim()).filter(Boolean) : [];
      const sources = await readClusterSources(api, kube, namespace, app, profiles);
      if (!foundAny(sources)) throw new KtctlError(`no configuration for app "${app}": looked for ${describeLookup(sources)}`, ExitCode.notFound, "the name is spring.application.name; check the namespace (-n) too");
      if (sources.secretsForbidden) api.logger.warn(`not allowed to read secrets in ${namespace}: values from Secrets are missing (as they would be for the app)`);
      const text = formatApplicationYaml(
        sources,
        [
          `Written by ktctl spring config ${app}${profiles.length ? ` --profile ${profiles.join(",")}` : ""} from namespace ${namespace}.`,
          "What Spring Cloud Kubernetes loads for this app, same precedence. Use: --spring.profiles.include=ktctl",
          "Values from Secrets count for apps with spring.cloud.kubernetes.secrets.enable-api=true (off by default in 3.x).",
          "Sources looked for:",
        ],
        { secrets: Boolean(args.secrets) },
      );
      const output = String(args.output);
      if (output === "-") {
        process.stdout.write(text);
        return;
      }
      await writeFile(output, text, { mode: 0o600 });
      const count = [...sources.properties.values()].filter((p) => args.secrets || p.origin.kind !== "secret").length;
      api.logger.success(`wrote ${count} properties for ${app} to ${output}`);
    },
  });

export default config;
