// The router role of the shadow: serves a meshed service's ports and routes each request by its
// mark. Its configuration (ports, where the original pods are) comes from the environment at
// start; routes come later through the admin endpoint. It needs no capability: for target ports
// below 1024 ktctl sets the pod's namespaced (and "safe") sysctl net.ipv4.ip_unprivileged_port_start.

import { ContractError, ROUTER_CONFIG_ENV, validateRouterConfig, type RouterConfig } from "../../core/protocol/router.ts";
import { startAdmin } from "./admin.ts";
import { Router } from "./router.ts";
import { memoryFields } from "./stats.ts";
import type { RunningRole, ShadowContext } from "../roles.ts";

export function readRouterConfig(env: Readonly<Record<string, string | undefined>>): RouterConfig {
  const text = env[ROUTER_CONFIG_ENV];
  if (!text) throw new ContractError(`${ROUTER_CONFIG_ENV} is not set: the router role needs its ports and upstreams`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ContractError(`${ROUTER_CONFIG_ENV} is not valid JSON`);
  }
  return validateRouterConfig(parsed);
}

export async function start(ctx: ShadowContext): Promise<RunningRole> {
  const { log } = ctx;
  const config = readRouterConfig(ctx.config.env);
  const router = new Router(config, log);
  // Admin first: the pod turns ready when its service ports listen, and by then ktctl may push routes.
  const admin = await startAdmin(router, log, config.adminPort);
  await router.start().catch(async (error: NodeJS.ErrnoException) => {
    await admin.close();
    if (error.code === "EACCES") {
      throw new Error(`cannot listen on a port below 1024 (${error.message}): the pod needs sysctl net.ipv4.ip_unprivileged_port_start=0`);
    }
    throw error;
  });

  const logStats = () => {
    const { rssBytes, heapUsedBytes } = memoryFields();
    const c = router.counters;
    log.info("router.stats", {
      rssMiB: (rssBytes / 1048576).toFixed(1),
      heapMiB: (heapUsedBytes / 1048576).toFixed(1),
      routes: router.routes.size,
      connections: c.connections,
      requests: c.requests,
      routed: c.routed,
      fallbacks: c.fallbacks,
      upgrades: c.upgrades,
      errors: c.upstreamErrors,
    });
  };
  const statsTimer = config.statsIntervalMs > 0 ? setInterval(logStats, config.statsIntervalMs) : undefined;
  statsTimer?.unref?.();
  log.info("router.ready", { service: config.service, ports: config.listeners.map((l) => l.port).join(",") });

  return {
    async stop() {
      clearInterval(statsTimer);
      logStats();
      router.stop();
      await admin.close();
    },
  };
}
