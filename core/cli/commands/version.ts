import { defineCommand } from "citty";
import { argsFor } from "../../options.ts";
import { PLUGIN_API_VERSION } from "../../plugin-api.ts";
import { DEFAULT_SHADOW_IMAGE, VERSION } from "../../protocol/version.ts";
import type { CoreCommandFactory } from "./index.ts";

const versionCommand: CoreCommandFactory = () =>
  defineCommand({
    meta: { name: "version", description: "Show ktctl's version, shadow image and platform" },
    args: argsFor("version"),
    run({ args }) {
      const info = {
        version: VERSION,
        shadowImage: DEFAULT_SHADOW_IMAGE,
        pluginApi: PLUGIN_API_VERSION,
        bun: Bun.version,
        os: process.platform,
        arch: process.arch,
      };
      if (args.output === "json") {
        console.log(JSON.stringify(info, null, 2));
        return;
      }
      const rows: [string, string][] = [
        ["ktctl", info.version],
        ["shadow image", info.shadowImage],
        ["plugin API", String(info.pluginApi)],
        ["bun", info.bun],
        ["os/arch", `${info.os}/${info.arch}`],
      ];
      const width = Math.max(...rows.map(([k]) => k.length));
      for (const [key, value] of rows) console.log(`${key.padEnd(width)}  ${value}`);
    },
  });

export default versionCommand;
