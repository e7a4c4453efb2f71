// A team's own ktctl mode that CHANGES the cluster for the length of a session and puts it back:
//
//   plugins:
//     - ./tools/ktctl/team-config-swap/index.ts
//
//   ktctl swap-config deploy/checkout --configmap checkout-config-canary   # another ConfigMap
//   ktctl swap-config deploy/checkout --image registry/checkout:my-branch  # another image
//
// Ctrl-C (or SIGTERM) puts the Deployment back exactly as it was; if ktctl is killed outright, the
// session's watchdog does, and if the laptop is gone, `ktctl clean` does. That works because the
// change goes in only through `session.step` with a step from `api.steps.patchObject`: the undo is
// a core undo kind, journaled before the change and written onto the Deployment itself, so it runs
// even where this plugin is not loaded. The plugin imports nothing of ktctl but `import type`.
import type { KtctlPlugin } from "../../core/plugin-api.ts";

export default {
  name: "team-config-swap",
  apiVersion: 1,
  description: "Point a Deployment at another ConfigMap or image for the session, then put it back",
  commands: {
    "swap-config": () => import("./swap.command.ts").then((m) => m.default),
  },
} satisfies KtctlPlugin;
