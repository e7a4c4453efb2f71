// A stand-in for a ktctl mode, run as its own process by session.e2e.test.ts so the test can kill it.
//   bun session-fixture.ts start <kubeconfig> <namespace> <targetConfigMap> <laptopFile> [leaseSeconds]
//     starts a session with three steps (create a ConfigMap, change the target ConfigMap's data,
//     change a laptop file), prints READY <json> and waits for a signal;
//   bun session-fixture.ts __watchdog <id>
//     the watchdog, reached exactly as the real binary reaches it.

import { createConsola } from "consola";
import { connectKube } from "../../core/kube/index.ts";
import { startSession } from "../../core/session/session.ts";
import { WATCHDOG_COMMAND, runWatchdog } from "../../core/session/watchdog.ts";
import { makeSteps } from "./session-steps.ts";

const CLI = new URL("../../core/cli/main.ts", import.meta.url).pathname;
const logger = createConsola({ level: process.env.KTCTL_E2E_DEBUG ? 4 : 3, formatOptions: { date: false } });
const [command, ...rest] = process.argv.slice(2);

if (command === WATCHDOG_COMMAND) {
  await runWatchdog(rest, { logger, kube: (global) => connectKube(global) });
  process.exit();
}

if (command !== "start") throw new Error(`unknown fixture command ${command}`);
const [kubeconfig, namespace, target, laptopFile, leaseSeconds] = rest as [string, string, string, string, string?];
const kube = await connectKube({ kubeconfig, namespace });
const session = await startSession({
  kube,
  mode: "e2e",
  target: `configmap/${target}`,
  global: { kubeconfig, namespace },
  logger,
  leaseDurationSeconds: leaseSeconds ? Number(leaseSeconds) : undefined,
  // KTCTL_E2E_WATCHDOG=cli: the watchdog is the real CLI's hidden command instead of this script.
  watchdog: process.env.KTCTL_E2E_WATCHDOG === "cli" ? (id) => [process.execPath, CLI, WATCHDOG_COMMAND, id] : undefined,
});

const { created } = await makeSteps(session, kube, namespace, target, laptopFile);

// A real mode keeps running on its listeners and tunnel; this stand-in has nothing else to run on.
setInterval(() => undefined, 60_000);
console.log(`READY ${JSON.stringify({ id: session.id, pid: process.pid, watchdogPid: session.watchdogPid, created })}`);
const reason = await session.ended;
logger.debug(`fixture ending: ${reason}`);
