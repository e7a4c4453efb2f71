// The laptop side of a serving session: is anything listening on the LOCAL ports? A session that
// takes a service over while nothing answers locally only breaks the service for everyone else.

import { ExitCode, KtctlError } from "../errors.ts";
import type { LocalListenerWait, PluginApi } from "../plugin-api.ts";

/** How often a waiting check tries the port again: there is no event for "someone started listening". */
const RETRY_MS = 250;

/**
 * Fails (naming every silent port) unless something listens on each local port; with `wait`,
 * waits for them instead, up to `waitSeconds` (0: until interrupted).
 */
export async function requireLocalListeners(
  api: Pick<PluginApi, "logger" | "isLocalPortListening">,
  host: string,
  ports: number[],
  wait: LocalListenerWait,
): Promise<void> {
  const silent = async () => (await Promise.all(ports.map(async (p) => ((await api.isLocalPortListening(p, host)) ? undefined : p)))).filter((p): p is number => p !== undefined);
  let missing = await silent();
  if (!missing.length) return;
  const list = missing.map((p) => `${host}:${p}`).join(", ");
  if (!wait.enabled) {
    throw new KtctlError(
      `nothing is listening on ${list} on this machine`,
      ExitCode.usage,
      `start your local service first, or pass ${wait.flag} to wait for it`,
    );
  }
  api.logger.info(`waiting for something to listen on ${list}${wait.seconds ? ` (up to ${wait.seconds}s)` : ""}; Ctrl-C to give up`);
  const deadline = wait.seconds ? Date.now() + wait.seconds * 1000 : Infinity;
  while (missing.length) {
    if (Date.now() > deadline) {
      throw new KtctlError(`nothing listened on ${missing.map((p) => `${host}:${p}`).join(", ")} within ${wait.seconds}s`, ExitCode.timeout);
    }
    await Bun.sleep(RETRY_MS);
    missing = await silent();
  }
  api.logger.success(`local ${ports.length > 1 ? "ports are" : "port is"} listening`);
}
