// What the shadow is asked to do, read once from its environment and arguments.
// Roles read their own extra settings from `env` (see roles.ts); only shared settings live here.

import { SHADOW_ENV, SHADOW_ROLES, SHADOW_TUNNEL_PORT, type ShadowRoleName } from "../core/protocol/tunnel.ts";
import { LOG_LEVELS, type LogLevel } from "./log.ts";

export interface ShadowConfig {
  /** Always starts with "tunnel": every other role is reached through it. */
  roles: ShadowRoleName[];
  sessionId: string;
  /** The pod's IP from the downward API; empty when not given (a shadow started by hand). */
  podIP: string;
  logLevel: LogLevel;
  tunnel: {
    host: string;
    port: number;
    /** The one OpenSSH public key allowed in (checked fully when the tunnel starts). */
    authorizedKey: string;
  };
  env: Readonly<Record<string, string | undefined>>;
}

export class ShadowConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ShadowConfigError";
  }
}

/** argv: `--roles tunnel,dns` (or `--roles=...`) overrides the environment. */
export function readShadowConfig(env: Record<string, string | undefined>, argv: string[]): ShadowConfig {
  const roles = parseRoles(argValue(argv, "--roles") ?? env[SHADOW_ENV.roles] ?? "tunnel");

  const logLevel = (env[SHADOW_ENV.logLevel] ?? "info").toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new ShadowConfigError(`${SHADOW_ENV.logLevel}=${logLevel}: expected one of ${LOG_LEVELS.join(", ")}`);
  }

  const portText = env[SHADOW_ENV.tunnelPort] ?? String(SHADOW_TUNNEL_PORT);
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) {
    throw new ShadowConfigError(`${SHADOW_ENV.tunnelPort}=${portText}: expected a port number (0-65535)`);
  }

  const authorizedKey = (env[SHADOW_ENV.authorizedKey] ?? "").trim();
  if (!/^ssh-ed25519 [A-Za-z0-9+/]+=*(\s|$)/.test(authorizedKey)) {
    throw new ShadowConfigError(`${SHADOW_ENV.authorizedKey} must hold the session's "ssh-ed25519 AAAA..." public key`);
  }

  return {
    roles,
    sessionId: env[SHADOW_ENV.sessionId] ?? "",
    podIP: (env[SHADOW_ENV.podIP] ?? "").trim(),
    logLevel: logLevel as LogLevel,
    tunnel: { host: env[SHADOW_ENV.tunnelHost] || "0.0.0.0", port, authorizedKey },
    env,
  };
}

function parseRoles(text: string): ShadowRoleName[] {
  const names = text.split(",").map((name) => name.trim()).filter(Boolean);
  for (const name of names) {
    if (!(SHADOW_ROLES as readonly string[]).includes(name)) {
      throw new ShadowConfigError(`unknown shadow role "${name}" (known: ${SHADOW_ROLES.join(", ")})`);
    }
  }
  const roles = new Set<ShadowRoleName>(["tunnel", ...(names as ShadowRoleName[])]);
  return [...roles];
}

function argValue(argv: string[], flag: string): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === flag) {
      if (i + 1 >= argv.length) throw new ShadowConfigError(`${flag} needs a value`);
      return argv[i + 1];
    }
    if (argv[i]!.startsWith(flag + "=")) return argv[i]!.slice(flag.length + 1);
  }
  return undefined;
}
