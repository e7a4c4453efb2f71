// A team's own ktctl mode, shipped in the team's repository and enabled from its .ktctl.yaml:
//
//   plugins:
//     - ./tools/ktctl/team-deps/index.ts
//   team-deps:
//     namespace: payments-dev          # optional; defaults to -n / the context's namespace
//     services:
//       - { name: postgres, target: svc/postgres, ports: "15432:5432", env: DATABASE_URL=postgres://127.0.0.1:15432/app }
//       - { name: redis,    target: svc/redis,    ports: "16379:6379", env: REDIS_URL=redis://127.0.0.1:16379 }
//
// `ktctl deps` then forwards every dependency of the team's service through ONE shadow and prints
// the environment to run the service with. It uses nothing but the plugin API: a plugin loaded by
// the compiled ktctl cannot import ktctl's packages, only `import type` them.
import type { KtctlPlugin } from "../../core/plugin-api.ts";

export default {
  name: "team-deps",
  apiVersion: 1,
  description: "Forward the fixed set of services our team's service depends on (config: team-deps)",
  commands: {
    deps: () => import("./deps.command.ts").then((m) => m.default),
  },
} satisfies KtctlPlugin;
