// Hidden: the process a session starts beside itself to undo the session if ktctl is killed.

import { defineCommand } from "citty";
import type { CoreCommandFactory } from "./index.ts";

const watchdogCommand: CoreCommandFactory = ({ api, sessionHost }) =>
  defineCommand({
    meta: { name: "__watchdog", description: "Undo a session whose ktctl process died (internal)", hidden: true },
    args: { sessionId: { type: "positional", required: true, description: "The session to watch" } },
    async run({ rawArgs }) {
      // The host's session machinery, so undo kinds registered by plugins are known here too.
      const host = await sessionHost();
      // Its own exit code tells how the unwinding went; nothing else of this process matters then.
      process.exit(await host.runWatchdog(rawArgs, { logger: api.logger, kube: api.kube }));
    },
  });

export default watchdogCommand;
