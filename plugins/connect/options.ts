// The connect flags, parsed and checked in one place (pure, so every refusal is unit-tested).

import type { PluginApi } from "../../core/plugin-api.ts";
import { parseCidrList, type Cidr } from "./net/cidr.ts";
import { DEFAULT_CLUSTER_DOMAIN } from "./net/cluster-names.ts";
import { CONNECT_MODES, DNS_MODES, defaultMode, type ConnectMode } from "./net/drivers/index.ts";
import type { LinuxDnsMode } from "./net/drivers/linux.ts";

export const DEFAULT_PROXY_PORT = 2223;

/** How connections reach the cluster: the shadow (the default), or straight to the pod where ktctl knows it. */
export const CONNECT_PATHS = ["shadow", "pod"] as const;
export type ConnectPath = (typeof CONNECT_PATHS)[number];

export interface ConnectOptions {
  mode: ConnectMode;
  dnsMode: LinuxDnsMode;
  /** Namespaces indexed from the start besides the connect namespace (`--dnsMode hosts:a,b`). */
  extraNamespaces: string[];
  proxyPort: number;
  disablePodIp: boolean;
  include: Cidr[];
  exclude: Cidr[];
  clusterDomain: string;
  shareShadow: boolean;
  via: ConnectPath;
  dryRun: boolean;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function parseConnectOptions(
  args: Record<string, unknown>,
  errors: PluginApi["errors"],
  host: { platform: string; isRoot: boolean },
): ConnectOptions {
  const { KtctlError, ExitCode } = errors;
  const usage = (message: string, hint?: string) => new KtctlError(message, ExitCode.usage, hint);

  const modeText = args.mode === undefined || args.mode === "" ? defaultMode(host.platform, host.isRoot) : String(args.mode);
  if (!(CONNECT_MODES as readonly string[]).includes(modeText)) throw usage(`invalid --mode "${modeText}": expected ${CONNECT_MODES.join(", ")}`);
  let mode = modeText as ConnectMode;

  let dnsText = args.dnsMode === undefined || args.dnsMode === "" ? "auto" : String(args.dnsMode);
  let extraNamespaces: string[] = [];
  // kt-connect's form: hosts:<ns,...> puts the services of these namespaces in the hosts file too.
  const hostsList = /^hosts:(.*)$/.exec(dnsText);
  if (hostsList) {
    extraNamespaces = hostsList[1]!.split(",").map((ns) => ns.trim()).filter(Boolean);
    const bad = extraNamespaces.find((ns) => !DNS_LABEL.test(ns));
    if (bad !== undefined || !extraNamespaces.length) throw usage(`invalid --dnsMode "${dnsText}": expected hosts:NAMESPACE[,NAMESPACE...]`);
    dnsText = "hosts";
  }
  if (!(DNS_MODES as readonly string[]).includes(dnsText)) throw usage(`invalid --dnsMode "${dnsText}": expected ${DNS_MODES.join(", ")} or hosts:NS,...`);
  const dnsMode = dnsText as LinuxDnsMode;
  if (dnsMode === "hosts" && mode === "system") mode = "hosts";
  if (mode === "hosts" && dnsMode !== "auto" && dnsMode !== "hosts") throw usage(`--mode hosts writes the hosts file; it cannot be combined with --dnsMode ${dnsMode}`);
  if (mode === "proxy" && dnsMode !== "auto") throw usage("--dnsMode has no effect with --mode proxy: names are resolved by ktctl and the cluster");

  const portText = String(args.proxyPort ?? DEFAULT_PROXY_PORT);
  const proxyPort = Number(portText);
  if (!/^\d+$/.test(portText) || proxyPort > 65535) throw usage(`invalid --proxyPort "${portText}": expected 0-65535 (0 picks a free port)`);

  const via = String(args.via ?? "shadow") as ConnectPath;
  if (!CONNECT_PATHS.includes(via)) throw usage(`invalid --via "${via}": expected ${CONNECT_PATHS.join(" or ")}`);

  const clusterDomain = String(args.clusterDomain ?? DEFAULT_CLUSTER_DOMAIN).replace(/\.$/, "").toLowerCase();
  if (!DOMAIN.test(clusterDomain)) throw usage(`invalid --clusterDomain "${args.clusterDomain}"`);

  return {
    mode,
    dnsMode,
    extraNamespaces,
    proxyPort,
    disablePodIp: Boolean(args.disablePodIp),
    include: parseCidrList(args.includeIps === undefined ? undefined : String(args.includeIps), "--includeIps", errors),
    exclude: parseCidrList(args.excludeIps === undefined ? undefined : String(args.excludeIps), "--excludeIps", errors),
    clusterDomain,
    shareShadow: Boolean(args.shareShadow),
    via,
    dryRun: Boolean(args.dryRun),
  };
}
