// The shadow: ktctl's in-cluster agent. Reads its roles and settings from the environment
// (names in core/protocol/tunnel.ts), starts the roles, and stops them on SIGTERM.

import { releaseStartPages, whenIdle } from "../core/protocol/start-pages.ts";
import { ENDPOINT_LINGER_MS } from "../core/protocol/tunnel.ts";
import { VERSION } from "../core/protocol/version.ts";
import { readShadowConfig, ShadowConfigError } from "./config.ts";
import { ControlHandlers } from "./control.ts";
import { createShadowLog } from "./log.ts";
import { ROLE_LOADERS, type RunningRole, type ShadowContext } from "./roles.ts";

/** Upper bound on a graceful stop; Kubernetes sends SIGKILL after its own grace period anyway. */
const STOP_TIMEOUT_MS = 5_000;
async function main(): Promise<void> {
  let config;
  try {
    config = readShadowConfig(process.env, process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof ShadowConfigError)) throw error;
    process.stderr.write(`shadow: ${error.message}\n`);
    process.exit(2);
  }

  const log = createShadowLog(config.logLevel);
  const ctx: ShadowContext = { config, log, control: new ControlHandlers(), version: VERSION };
  const running: { name: string; role: RunningRole }[] = [];
  let stopping = false;

  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    // Asked before stopping: a host that ended its session has closed its link first, so a shadow
    // its own session deletes leaves at once; one deleted under a live session lingers.
    const endpoint = running.some(({ role }) => role.servesEndpoint?.());
    log.info("shadow.stopping", { signal, endpoint });
    const timeout = setTimeout(() => {
      log.warn("shadow.stop-timeout", { ms: STOP_TIMEOUT_MS });
      process.exit(0);
    }, STOP_TIMEOUT_MS);
    timeout.unref();
    for (const { name, role } of running.reverse()) {
      await role.stop().catch((error: Error) => log.warn("role.stop-failed", { role: name, error: error.message }));
    }
    clearTimeout(timeout);
    if (endpoint) {
      // Nothing listens any more, so the kernel resets each connection that still comes.
      log.info("shadow.lingering", { ms: ENDPOINT_LINGER_MS });
      await Bun.sleep(ENDPOINT_LINGER_MS);
    }
    log.info("shadow.stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));

  log.info("shadow.starting", {
    version: ctx.version,
    roles: config.roles.join(","),
    session: config.sessionId || undefined,
    uid: process.getuid?.(),
  });
  for (const name of config.roles) {
    const load = ROLE_LOADERS[name];
    if (!load) {
      log.error("role.unavailable", { role: name, error: "this shadow build does not include the role" });
      process.exit(2);
    }
    try {
      running.push({ name, role: await (await load())(ctx) });
    } catch (error) {
      log.error("role.failed", { role: name, error: (error as Error).message });
      process.exit(1);
    }
  }
  log.info("shadow.ready", { ms: Math.round(performance.now()) });
  // What only the start needed goes back to the kernel once the shadow is idle (after the host's
  // first link and whatever traffic came at once); see core/protocol/start-pages.ts.
  whenIdle(() => {
    releaseStartPages().then(
      (released) => released && log.debug("shadow.start-pages-released", { rssKiB: released.beforeKiB, nowKiB: released.afterKiB }),
      (error: Error) => log.debug("shadow.start-pages-kept", { error: error.message }),
    );
  });
}

await main();
