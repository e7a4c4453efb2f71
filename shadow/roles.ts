// The shadow is one program with several roles. A role is a module exporting a StartRole;
// it is loaded only when enabled, so a tunnel-only shadow never pays for the others.
//
// Adding a role (dns, router): write shadow/<role>-role.ts exporting `start(ctx)`, add its loader
// below. A role that the host must talk to registers control answers on `ctx.control` (the
// message types go into core/protocol/tunnel.ts first); a role that serves the cluster just
// listens on its own port. Read role-specific settings from `ctx.config.env`.

import type { ShadowRoleName } from "../core/protocol/tunnel.ts";
import type { ShadowConfig } from "./config.ts";
import type { ControlHandlers } from "./control.ts";
import type { ShadowLog } from "./log.ts";

export interface ShadowContext {
  config: ShadowConfig;
  log: ShadowLog;
  control: ControlHandlers;
  /** ktctl version this shadow was built from. */
  version: string;
}

export interface RunningRole {
  /** Stop serving: close listeners, end connections. Called once, on SIGTERM/SIGINT. */
  stop(): Promise<void>;
  /** Whether a live host serves a service's connections through this role right now (see ENDPOINT_LINGER_MS). */
  servesEndpoint?(): boolean;
}

export type StartRole = (ctx: ShadowContext) => Promise<RunningRole>;

/** Roles built into this shadow. A role missing here is refused at start with a clear message. */
export const ROLE_LOADERS: Partial<Record<ShadowRoleName, () => Promise<StartRole>>> = {
  tunnel: async () => (await import("./tunnel-role.ts")).start,
  router: async () => (await import("./router/role.ts")).start,
};
