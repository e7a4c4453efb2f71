// Linux, as root. Capture is transparent: one nat rule set sends every TCP connection to the cluster
// ranges (minus the API server and --excludeIps) to ONE loopback listener on a port ktctl picked,
// which reads each connection's original destination (SO_ORIGINAL_DST, see original-dst.ts). No
// cluster port is ever bound on the laptop, so a local process on 8080 and a cluster service on
// 8080 live side by side. Any port, any pod, any namespace's ClusterIP works without per-service rules.
//
// nftables is preferred: the rules live in a table of their own, created and deleted as a whole, so
// the laptop's own tables are never edited. iptables (a chain of our own, one jump from nat OUTPUT)
// is the fallback where nft is missing.
//
// DNS, by --dnsMode: resolv.conf rewritten IN PLACE (bind mounts refuse a rename) to name the local
// server; or systemd-resolved, told through resolvectl about a dummy link that carries the cluster
// domains (needs `ip link add type dummy`); or the hosts file. The local server listens on a random
// port of 127.0.0.1; resolvers are given DNS_ADDRESS:53, which the same rule set redirects to it.

import { lstat, readFile, realpath } from "node:fs/promises";
import type { ErrorsApi } from "../../../../core/plugin-api.ts";
import { formatCidr, cidrBounds } from "../cidr.ts";
import { connectResolvConf, resolvConfSession } from "../resolv-conf.ts";
import { hostsBlockSessions, withHostsBlock } from "../hosts-file.ts";
import { fileHeldByOtherConnect, spawnRunner, type CommandRunner, type ConnectNetSpec, type HostFacts, type NetAction, type NetDriver, type NetPlan } from "../driver.ts";

/** The address resolvers are given for the local DNS server; all of 127/8 is loopback on Linux. */
export const DNS_ADDRESS = "127.19.0.53";

export type LinuxDnsMode = "auto" | "resolvconf" | "resolved" | "hosts" | "none";

export interface LinuxDriverOptions {
  /** "system": DNS per dnsMode; "hosts": the hosts file. */
  variant: "system" | "hosts";
  /** The plugin API's errors: refusals are KtctlErrors with their exit codes. */
  errors: ErrorsApi;
  dnsMode?: LinuxDnsMode;
  resolvConfPath?: string;
  hostsPath?: string;
  runner?: CommandRunner;
}

/** Name of the nft table / iptables chain of a session. */
export const ruleSetName = (sessionId: string) => ({ table: `ktctl_${sessionId}`, chain: `KTCTL-${sessionId.toUpperCase()}` });
/** Dummy link carrying the cluster DNS settings for systemd-resolved (at most 15 characters). */
export const resolvedLinkName = (sessionId: string) => `ktctl${sessionId.slice(0, 8)}`;

export function createLinuxDriver(options: LinuxDriverOptions): NetDriver {
  const resolvConfPath = options.resolvConfPath ?? "/etc/resolv.conf";
  const hostsPath = options.hostsPath ?? "/etc/hosts";
  const runner = options.runner ?? spawnRunner;
  const dnsMode: LinuxDnsMode = options.variant === "hosts" ? "hosts" : (options.dnsMode ?? "auto");
  const { errors } = options;

  return {
    name: options.variant === "hosts" ? "linux-hosts" : "linux-system",
    capture: "transparent",

    async probe(spec) {
      const tools: Record<string, boolean> = {};
      for (const tool of ["nft", "iptables", "ip", "resolvectl"]) tools[tool] = Bun.which(tool) !== null;
      const facts: HostFacts = { platform: "linux", isRoot: process.getuid?.() === 0, tools };
      if (dnsMode !== "hosts" && dnsMode !== "none") facts.resolvConf = await readResolvConf(resolvConfPath);
      if (dnsMode === "hosts") facts.hostsFile = { path: await realOrSame(hostsPath), content: await readFile(hostsPath, "utf8").catch(() => "") };
      if (tools.ip) facts.unroutedCidrs = await unrouted(spec, runner);
      return facts;
    },

    prepare(spec, facts) {
      if (!facts.isRoot) {
        throw new errors.KtctlError("connect in system or hosts mode needs root on Linux", errors.ExitCode.forbidden, "run it with sudo, or use --mode proxy (no root needed)");
      }
      if (spec.transparentPort === undefined) throw new Error("linux driver: the transparent listener port is missing");
      // The capture and the routes go in together; DNS turns to ktctl only after them (the capture
      // carries its queries), so that no name fails to resolve in between.
      const actions: NetAction[] = [captureAction(spec, facts, errors), ...(facts.unroutedCidrs ?? []).map(loopbackRouteAction)].map((action) => ({
        ...action,
        independent: true,
      }));
      const notes: string[] = [];
      const method = dnsMethod(dnsMode, facts, errors);
      if (method === "resolvconf") actions.push(resolvConfAction(spec, facts, errors));
      else if (method === "resolved") {
        actions.push(...resolvedActions(spec));
        notes.push("systemd-resolved routes the cluster domains to ktctl's DNS server through a dummy link");
      } else if (method === "hosts") actions.push(hostsAction(spec, facts, errors));
      else notes.push("DNS is left alone (--dnsMode none): reach services by ClusterIP or pod IP");
      return { driver: this.name, actions, notes } satisfies NetPlan;
    },

    refresh(spec, facts) {
      // Transparent capture and the DNS server follow the index by themselves; only the hosts block is a copy.
      return dnsMethod(dnsMode, facts, errors) === "hosts" ? [hostsAction(spec, facts, errors)] : [];
    },
  };
}

function dnsMethod(mode: LinuxDnsMode, facts: HostFacts, errors: ErrorsApi): "resolvconf" | "resolved" | "hosts" | "none" {
  if (mode === "hosts" || mode === "none" || mode === "resolvconf") return mode;
  if (mode === "resolved") {
    if (!facts.tools.resolvectl) throw new errors.KtctlError("--dnsMode resolved needs resolvectl (systemd-resolved)", errors.ExitCode.usage);
    return "resolved";
  }
  // auto: a resolv.conf that systemd-resolved owns would be overwritten under us; tell resolved instead.
  return facts.resolvConf?.managedByResolved && facts.tools.resolvectl ? "resolved" : "resolvconf";
}

// --- capture ---------------------------------------------------------------------------------

export function captureAction(spec: ConnectNetSpec, facts: HostFacts, errors: ErrorsApi): NetAction {
  const capture = spec.capture.capture.map(formatCidr);
  const exclude = spec.capture.exclude.map(formatCidr);
  const dnsPort = spec.dns?.port;
  const describe = `capture TCP to ${capture.join(", ") || "nothing"} (except ${exclude.join(", ") || "nothing"}) to 127.0.0.1:${spec.transparentPort}`;
  if (facts.tools.nft) {
    const { table } = ruleSetName(spec.sessionId);
    const rules = [
      `add table ip ${table}`,
      `add chain ip ${table} output { type nat hook output priority -100 ; }`,
      ...exclude.map((cidr) => `add rule ip ${table} output ip daddr ${cidr} return`),
      ...(dnsPort
        ? [
            `add rule ip ${table} output ip daddr ${DNS_ADDRESS} udp dport 53 redirect to :${dnsPort}`,
            `add rule ip ${table} output ip daddr ${DNS_ADDRESS} tcp dport 53 redirect to :${dnsPort}`,
          ]
        : []),
      ...(capture.length ? [`add rule ip ${table} output ip daddr { ${capture.join(", ")} } meta l4proto tcp redirect to :${spec.transparentPort}`] : []),
    ];
    // One nft invocation is one transaction: all rules or none.
    return { kind: "run", describe: `${describe} (nftables table ${table})`, commands: [["nft", rules.join(" ; ")]], undo: [["nft", "delete", "table", "ip", table]] };
  }
  if (facts.tools.iptables) {
    const { chain } = ruleSetName(spec.sessionId);
    const ipt = (...args: string[]) => ["iptables", "-w", "5", "-t", "nat", ...args];
    const commands = [
      ipt("-N", chain),
      ...exclude.map((cidr) => ipt("-A", chain, "-d", cidr, "-j", "RETURN")),
      ...(dnsPort
        ? ["udp", "tcp"].map((proto) => ipt("-A", chain, "-d", `${DNS_ADDRESS}/32`, "-p", proto, "--dport", "53", "-j", "REDIRECT", "--to-ports", String(dnsPort)))
        : []),
      ...capture.map((cidr) => ipt("-A", chain, "-d", cidr, "-p", "tcp", "-j", "REDIRECT", "--to-ports", String(spec.transparentPort))),
      ipt("-I", "OUTPUT", "1", "-j", chain),
    ];
    const undo = [ipt("-D", "OUTPUT", "-j", chain), ipt("-F", chain), ipt("-X", chain)];
    return { kind: "run", describe: `${describe} (iptables chain ${chain})`, commands, undo };
  }
  throw new errors.KtctlError("neither nft nor iptables is installed; system capture needs one of them", errors.ExitCode.failure, "install nftables, or use --mode proxy");
}

/**
 * A local connect() to an address without a route fails before netfilter sees it. Where the
 * laptop has no route for a cluster range, one through loopback (source 127.0.0.1, the listener's
 * own address) lets the redirect happen.
 */
export function loopbackRouteAction(cidr: string): NetAction {
  return {
    kind: "run",
    describe: `route ${cidr} through loopback (the laptop has no route for it)`,
    commands: [["ip", "-4", "route", "add", cidr, "dev", "lo", "src", "127.0.0.1"]],
    undo: [["ip", "-4", "route", "del", cidr, "dev", "lo", "src", "127.0.0.1"]],
  };
}

async function unrouted(spec: ConnectNetSpec, runner: CommandRunner): Promise<string[]> {
  // One `ip route get` per range, all at once: each is a process start on connect's way to ready.
  const answers = await Promise.all(
    spec.capture.capture.map((cidr) => {
      // A host address inside the range (the network address itself is not a valid destination).
      const probe = cidr.prefix >= 31 ? cidrBounds(cidr).first : cidrBounds({ base: cidr.base + 1, prefix: 32 }).first;
      return runner(["ip", "-4", "route", "get", probe]);
    }),
  );
  return spec.capture.capture.filter((_, i) => answers[i]!.code !== 0).map(formatCidr);
}

// --- DNS -------------------------------------------------------------------------------------

async function realOrSame(path: string): Promise<string> {
  return realpath(path).catch(() => path);
}

async function readResolvConf(path: string): Promise<HostFacts["resolvConf"]> {
  const stat = await lstat(path).catch(() => undefined);
  const real = stat?.isSymbolicLink() ? await realOrSame(path) : path;
  const content = await readFile(real, "utf8").catch(() => "");
  return { path: real, content, managedByResolved: real.startsWith("/run/systemd/resolve/") };
}

export function resolvConfAction(spec: ConnectNetSpec, facts: HostFacts, errors: ErrorsApi): NetAction {
  if (!spec.dns) throw new Error("linux driver: DNS server missing");
  const file = facts.resolvConf!;
  const holder = resolvConfSession(file.content);
  if (holder && holder !== spec.sessionId) throw fileHeldByOtherConnect(errors, file.path, holder);
  return {
    kind: "write-file",
    describe: `point ${file.path} at ktctl's DNS server ${DNS_ADDRESS}`,
    path: file.path,
    content: connectResolvConf(file.content, { nameserver: DNS_ADDRESS, searchFirst: spec.dns.searchDomains, sessionId: spec.sessionId }),
  };
}

/**
 * systemd-resolved: a dummy link gets ktctl's server and the cluster domains. Search domains make
 * short names work (resolved applies them to single-label names); routing domains (~ns) send
 * `svc.ns` to us. Deleting the link drops everything resolved was told about it.
 */
export function resolvedActions(spec: ConnectNetSpec): NetAction[] {
  if (!spec.dns) throw new Error("linux driver: DNS server missing");
  const link = resolvedLinkName(spec.sessionId);
  const routing = spec.dns.namespaces.map((ns) => `~${ns}`);
  return [
    {
      kind: "run",
      describe: `create dummy link ${link} for systemd-resolved`,
      commands: [
        ["ip", "link", "add", link, "type", "dummy"],
        ["ip", "link", "set", link, "up"],
      ],
      undo: [["ip", "link", "del", link]],
    },
    {
      kind: "run",
      describe: `route ${spec.domain} and the namespaces' names to ${DNS_ADDRESS} in systemd-resolved`,
      commands: [
        ["resolvectl", "dns", link, DNS_ADDRESS],
        ["resolvectl", "domain", link, ...spec.dns.searchDomains, ...routing],
        ["resolvectl", "default-route", link, "false"],
      ],
      undo: [["resolvectl", "revert", link]],
    },
  ];
}

export function hostsAction(spec: ConnectNetSpec, facts: HostFacts, errors: ErrorsApi): NetAction {
  const file = facts.hostsFile!;
  const holder = hostsBlockSessions(file.content).find((id) => id !== spec.sessionId);
  if (holder) throw fileHeldByOtherConnect(errors, file.path, holder);
  return {
    kind: "write-file",
    describe: `add the cluster names to ${file.path}`,
    path: file.path,
    content: withHostsBlock(file.content, spec.hosts ?? [], spec.sessionId),
  };
}
