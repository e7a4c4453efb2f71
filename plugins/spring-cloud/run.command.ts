// `ktctl spring run [--app NAME] [--profile P] [--mode system|proxy|hosts]
//                   [--exchange SVC | --mesh SVC --versionMark MARK] [--expose PORT] -- COMMAND...`
// One command instead of three terminals: connects to the namespace (a `ktctl connect` child), then,
// with --exchange, starts `ktctl exchange --waitLocal` so the workload's environment is known before
// COMMAND starts; starts COMMAND with what Spring Cloud Kubernetes needs; with --mesh, meshes once the
// app listens. Ctrl-C: COMMAND stops first, then the sessions, last-started first. COMMAND's exit
// code becomes ktctl's.

import { spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join, dirname } from "node:path";
import type { CommandFactory, GlobalOptions, PluginApi } from "../../core/plugin-api.ts";
import { startChildSession, type ChildSession } from "./child-session.ts";
import { describeLookup, foundAny, readClusterSources } from "./cluster-sources.ts";
import { writeSessionKubeconfig, type SessionKubeconfigFile } from "./session-kubeconfig.ts";
import { SPRING_MODES, springEnvironment, workloadEnvironment } from "./spring-env.ts";
import { globalFlags, localServerPort, parseRunOptions, servicePortFor, type RunOptions } from "./run-options.ts";

const STOP_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
type StopSignal = (typeof STOP_SIGNALS)[number];
const SIGNAL_NUMBER: Record<StopSignal, number> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

const run: CommandFactory = (api) =>
  api.defineCommand({
    meta: { name: "run", description: "Run a Spring Cloud Kubernetes app here as in the namespace: ktctl spring run [flags] -- COMMAND..." },
    args: {
      ...api.globalArgs,
      app: { type: "string", valueHint: "name", description: "spring.application.name: the ConfigMaps/Secrets it reads (default: the app's own)" },
      profile: { type: "string", valueHint: "p1,p2", description: "Active Spring profiles (SPRING_PROFILES_ACTIVE)" },
      mode: { type: "string", valueHint: SPRING_MODES.join("|"), description: "How the app reaches the cluster: system (root), hosts (names only), proxy (the JVM through ktctl's proxy; no root)" },
      exchange: { type: "string", valueHint: "service", description: "Once the app listens, the service's traffic goes to it; the workload's environment goes into COMMAND's" },
      mesh: { type: "string", valueHint: "service", description: "Once the app listens, the service's marked requests go to it" },
      versionMark: { type: "string", valueHint: "[KEY:]VALUE", description: "With --mesh: the header that marks your requests" },
      expose: { type: "string", valueHint: "port", description: "The app's port for --exchange/--mesh (default: server.port, else 8080)" },
    },
    async run({ args, rawArgs }) {
      const options = parseRunOptions(api, args as Record<string, unknown>, rawArgs, { platform: process.platform, isRoot: process.getuid?.() === 0 });
      const global = api.globalOptions(args as Record<string, unknown>);
      process.exit(await runSpring(api, options, global));
    },
  });

export default run;

async function runSpring(api: PluginApi, options: RunOptions, global: GlobalOptions): Promise<number> {
  const { KtctlError, ExitCode } = api.errors;
  const kube = await api.kube(global);
  const namespace = kube.namespace; // settled once, from -n or the context
  const profiles = options.profile ? options.profile.split(",").map((p) => p.trim()).filter(Boolean) : [];
  const sources = options.app ? await readClusterSources(api, kube, namespace, options.app, profiles) : undefined;
  if (sources && !foundAny(sources)) {
    throw new KtctlError(`no configuration for app "${options.app}": looked for ${describeLookup(sources)}`, ExitCode.notFound, "--app is spring.application.name; leave it out to use the app's own");
  }
  const appPort = options.expose ?? localServerPort(sources);
  const target = options.exchange ?? options.mesh;
  const servicePort = target ? (options.exposeRemote ?? (await servicePortFor(api, kube, namespace, target, appPort))) : undefined;

  const write = (line: string) => process.stderr.write(`${line}\n`);
  const say = (line: string) => api.logger.info(`spring: ${line}`);
  const children: ChildSession[] = [];
  let kubeconfig: SessionKubeconfigFile | undefined;
  let command: ChildProcess | undefined;
  let commandExit: Promise<number> | undefined;

  // A stop asked for at any point (Ctrl-C while connecting too) ends what has started, in order.
  let stopSignal: StopSignal | undefined;
  let onStop!: (signal: StopSignal) => void;
  const stopped = new Promise<StopSignal>((resolve) => (onStop = resolve));
  const handler = (signal: StopSignal) => () => {
    if (stopSignal) {
      // A second Ctrl-C: COMMAND does not want to stop; it is killed, the sessions still restore.
      command?.kill("SIGKILL");
      return;
    }
    stopSignal = signal;
    onStop(signal);
  };
  const handlers = STOP_SIGNALS.map((s) => [s, handler(s)] as const);
  for (const [s, h] of handlers) process.on(s, h);
  const untilStopped = <T>(step: Promise<T>): Promise<T> =>
    Promise.race([step, stopped.then((s) => Promise.reject(new KtctlError(`stopped (${s}) before the app was ready`, 128 + SIGNAL_NUMBER[s])))]);

  const teardown = async () => {
    if (command && command.exitCode === null && command.signalCode === null) command.kill(stopSignal ?? "SIGTERM");
    if (commandExit) await commandExit;
    for (const child of [...children].reverse()) {
      say(`stopping ${child.label}`);
      await child.stop();
    }
    await kubeconfig?.remove();
    for (const [s, h] of handlers) process.off(s, h);
  };

  try {
    kubeconfig = await writeSessionKubeconfig(kube, namespace);
    const started = performance.now();
    const flags = globalFlags({ ...global, namespace });

    // 1. the namespace, reachable as the mode says
    const connect = startChildSession(api, "connect", ["connect", "--mode", options.mode, ...(options.mode === "proxy" ? ["--proxyPort", "0"] : []), ...flags], write);
    children.push(connect);
    const proxyPort = options.mode === "proxy" ? Number((await untilStopped(connect.waitFor(/proxy on 127\.0\.0\.1:(\d+)/)))[1]) : undefined;
    await untilStopped(connect.waitFor(/Connected to namespace \S+ in/));
    say(`connected to ${namespace} (${options.mode} mode) in ${((performance.now() - started) / 1000).toFixed(1)}s`);

    // 2. exchange: the workload's environment first (COMMAND starts with it), the traffic once the app listens
    let workloadEnv: Record<string, string> = {};
    if (options.exchange) {
      const envFile = join(dirname(kubeconfig.path), "workload-env.json");
      const exchange = startChildSession(
        api,
        "exchange",
        ["exchange", options.exchange, "--expose", `${appPort}:${servicePort}`, "--waitLocal", "--envFile", envFile, ...flags],
        write,
      );
      children.push(exchange);
      await untilStopped(exchange.waitFor(/wrote \d+ variables/));
      workloadEnv = workloadEnvironment(JSON.parse(await readFile(envFile, "utf8")));
    }

    // 3. COMMAND, in the terminal's foreground (Ctrl-C reaches it directly)
    const proxyUsage = proxyPort === undefined ? undefined : { host: "127.0.0.1", port: proxyPort, ...api.proxy.usage("127.0.0.1", proxyPort) };
    const springEnv = springEnvironment({
      namespace,
      kubeconfigPath: kubeconfig.path,
      mode: options.mode,
      app: options.app,
      profile: options.profile,
      proxy: proxyUsage,
      direct: [new URL(kube.server).hostname],
      javaToolOptions: process.env.JAVA_TOOL_OPTIONS,
    });
    say(`starting ${options.command.join(" ")} (${Object.keys(springEnv).join(", ")}${Object.keys(workloadEnv).length ? ` and ${Object.keys(workloadEnv).length} variables of the workload` : ""})`);
    command = spawn(options.command[0]!, options.command.slice(1), { stdio: "inherit", env: { ...process.env, ...workloadEnv, ...springEnv } });
    const spawned = command;
    commandExit = new Promise<number>((resolve) => {
      spawned.once("error", (error) => {
        write(`ktctl: cannot start ${options.command[0]}: ${api.errors.text(error)}`);
        resolve(127);
      });
      spawned.once("exit", (code, signal) => resolve(code ?? 128 + (signal ? (SIGNAL_NUMBER[signal as StopSignal] ?? 9) : 1)));
    });
    const commandEnded = commandExit.then((code) => Promise.reject(new KtctlError(`${options.command[0]} exited (${code}) before it listened on port ${appPort}`, code || ExitCode.failure)));
    commandEnded.catch(() => undefined); // only awaited while waiting for the app to listen

    // 4. mesh: once the app listens, its marked requests
    if (options.mesh) {
      await untilStopped(Promise.race([waitForListener(api, appPort, stopped), commandEnded]));
      const mesh = startChildSession(
        api,
        "mesh",
        ["mesh", options.mesh, "--expose", `${appPort}:${servicePort}`, ...(options.versionMark ? ["--versionMark", options.versionMark] : []), ...flags],
        write,
      );
      children.push(mesh);
      await untilStopped(Promise.race([mesh.waitFor(/Meshed service|joined the pods of service/), commandEnded]));
    }
    if (options.exchange) await untilStopped(Promise.race([children.at(-1)!.waitFor(/exchanged .* in [\d.]+s/), commandEnded]));

    // 5. until COMMAND ends, a stop is asked for, or a session ends under it
    const sessionLost = Promise.race(children.map((c) => c.exited.then(() => c)));
    const end = await Promise.race([
      commandExit.then((code) => ({ type: "command" as const, code })),
      stopped.then((signal) => ({ type: "signal" as const, signal })),
      sessionLost.then((child) => ({ type: "session" as const, child })),
    ]);
    if (end.type === "session") {
      write(`ktctl: the ${end.child.label} session ended (exit ${await end.child.exited}); stopping ${options.command[0]}`);
      children.splice(children.indexOf(end.child), 1);
    }
    await teardown();
    const code = await commandExit;
    return end.type === "session" && code === 0 ? ExitCode.failure : code;
  } catch (error) {
    await teardown();
    throw error;
  }
}

/** Resolves once something accepts connections on the app's port (or a stop is asked for). */
async function waitForListener(api: PluginApi, port: number, stopped: Promise<unknown>): Promise<void> {
  let stop = false;
  void stopped.then(() => (stop = true));
  // No event says "a process started listening": each attempt is a real connection to the port.
  while (!stop && !(await api.isLocalPortListening(port))) await new Promise((resolve) => setTimeout(resolve, 200));
}
