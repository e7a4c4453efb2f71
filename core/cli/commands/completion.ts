// `ktctl completion SHELL`: prints the completion script for bash, zsh, fish or PowerShell.

import { defineCommand } from "citty";
import { ExitCode, KtctlError } from "../../errors.ts";
import { completionScript, INSTALL_LINES, SHELLS, type Shell } from "../completion/scripts.ts";
import type { CoreCommandFactory } from "./index.ts";

const completionCommand: CoreCommandFactory = () =>
  defineCommand({
    meta: {
      name: "completion",
      description: `Print the shell completion script. Install: ${SHELLS.map((s) => `${s}: ${INSTALL_LINES[s]}`).join("; ")}`,
    },
    args: { shell: { type: "positional", required: true, valueHint: SHELLS.join("|"), description: SHELLS.join(", ") } },
    run({ args }) {
      const shell = String(args.shell) as Shell;
      if (!SHELLS.includes(shell)) {
        throw new KtctlError(`no completion for shell "${shell}"`, ExitCode.usage, `choose one of: ${SHELLS.join(", ")}`);
      }
      process.stdout.write(completionScript(shell));
    },
  });

export default completionCommand;
