// The `spring run` flags, checked before anything starts (so bad input leaves nothing behind).

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { GlobalOptions, Kube, PluginApi } from "../../core/plugin-api.ts";
import { parseProperties, parseYamlProperties, type ResolvedSources } from "./property-sources.ts";
import { SPRING_MODES, type SpringMode } from "./spring-env.ts";

export interface RunOptions {
  app?: string;
  profile?: string;
  mode: SpringMode;
  exchange?: string;
  mesh?: string;
  versionMark?: string;
  /** The app's port on this machine (--expose LOCAL[:REMOTE]). */
  expose?: number;
  /** The service port it stands in for. */
  exposeRemote?: number;
  command: string[];
}

const NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export function parseRunOptions(api: PluginApi, args: Record<string, unknown>, rawArgs: readonly string[], host: { platform: string; isRoot: boolean }): RunOptions {
  const { KtctlError, ExitCode } = api.errors;
  const usage = (message: string, hint?: string) => new KtctlError(message, ExitCode.usage, hint);
  const text = (key: string) => (args[key] === undefined || args[key] === "" ? undefined : String(args[key]));

  const dashes = rawArgs.indexOf("--");
  const command = dashes === -1 ? [] : rawArgs.slice(dashes + 1);
  if (!command.length) throw usage("COMMAND missing: ktctl spring run [flags] -- COMMAND...", 'e.g. ktctl spring run -- ./mvnw spring-boot:run, or -- java -jar target/app.jar');

  const mode = (text("mode") ?? (host.platform === "linux" && host.isRoot ? "system" : "proxy")) as SpringMode;
  if (!SPRING_MODES.includes(mode)) throw usage(`invalid --mode "${mode}": expected ${SPRING_MODES.join(", ")}`);

  const app = text("app");
  if (app !== undefined && !NAME.test(app)) throw usage(`invalid --app "${app}": expected a ConfigMap name (lower-case letters, digits, -)`);
  const exchange = text("exchange");
  const mesh = text("mesh");
  if (exchange && mesh) throw usage("--exchange and --mesh cannot be combined: exchange takes all of the service's traffic, mesh the marked part");
  for (const [flag, value] of [["--exchange", exchange], ["--mesh", mesh]] as const) {
    if (value !== undefined && !NAME.test(value)) throw usage(`invalid ${flag} "${value}": expected a service name`);
  }
  const versionMark = text("versionMark");
  if (versionMark && !mesh) throw usage("--versionMark goes with --mesh SERVICE");

  let expose: number | undefined;
  let exposeRemote: number | undefined;
  const exposeText = text("expose");
  if (exposeText !== undefined) {
    const ports = api.parsePorts(exposeText);
    if (ports.length !== 1) throw usage(`invalid --expose "${exposeText}": expected one PORT or LOCAL:REMOTE`);
    expose = ports[0]!.local;
    exposeRemote = exposeText.includes(":") ? ports[0]!.remote : undefined;
  }
  const profile = text("profile");
  return { app, profile, mode, exchange, mesh, versionMark, expose, exposeRemote, command };
}

/** The global flags again, for the ktctl children (same kubeconfig, context, namespace, image...). */
export function globalFlags(global: GlobalOptions): string[] {
  return Object.entries(global).flatMap(([key, value]) => {
    if (value === undefined || value === false || value === "") return [];
    return value === true ? [`--${key}`] : [`--${key}`, String(value)];
  });
}

/** `${NAME:default}` as Spring resolves it from the environment (enough for server.port). */
const placeholder = (value: string) => value.replace(/\$\{([^}:]+)(?::([^}]*))?\}/g, (_, name: string, fallback?: string) => process.env[name.toUpperCase().replace(/[.-]/g, "_")] ?? process.env[name] ?? fallback ?? "");

/** The app's port: server.port from the cluster's sources, else the project's own application file, else Spring's 8080. */
export function localServerPort(sources: ResolvedSources | undefined, cwd = process.cwd()): number {
  const fromEnv = process.env.SERVER_PORT;
  const fromCluster = sources?.properties.get("server.port")?.value;
  let fromFile: string | undefined;
  for (const name of ["application.properties", "application.yaml", "application.yml"]) {
    const path = join(cwd, "src/main/resources", name);
    if (fromFile !== undefined || !existsSync(path)) continue;
    const text = readFileSync(path, "utf8");
    fromFile = (name.endsWith(".properties") ? parseProperties(text) : parseYamlProperties(text, [])).get("server.port");
  }
  const port = Number(placeholder(fromEnv ?? fromCluster ?? fromFile ?? "8080"));
  return Number.isInteger(port) && port > 0 && port < 65536 ? port : 8080;
}

/** The service port the app stands in for: the one whose targetPort is the app's port, or the only one. */
export async function servicePortFor(api: PluginApi, kube: Kube, namespace: string, service: string, appPort: number): Promise<number> {
  const { KtctlError, ExitCode } = api.errors;
  const object = await kube.get(`/api/v1/namespaces/${encodeURIComponent(namespace)}/services/${encodeURIComponent(service)}`);
  if (!object) throw new KtctlError(`service ${service} not found in namespace ${namespace}`, ExitCode.notFound);
  const ports: { port: number; targetPort?: number | string }[] = object.spec?.ports ?? [];
  const match = ports.find((p) => p.targetPort === appPort) ?? ports.find((p) => p.port === appPort) ?? (ports.length === 1 ? ports[0] : undefined);
  if (!match) {
    throw new KtctlError(`cannot tell which port of service ${service} the app on port ${appPort} stands in for`, ExitCode.usage, `say it: --expose ${appPort}:SERVICE_PORT (ports: ${ports.map((p) => p.port).join(", ")})`);
  }
  return match.port;
}
