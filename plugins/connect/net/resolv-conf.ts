// resolv.conf as connect reads and writes it. The original resolvers become the DNS server's
// upstreams; the file connect writes names only the local server, so no query can slip past it
// (with `options rotate` a second nameserver would get every other cluster name).

import { isIPv4 } from "./cidr.ts";
import type { Upstream } from "./dns-server.ts";

export interface ResolvConf {
  nameservers: string[];
  search: string[];
  options: string[];
}

/** glibc's reading: the last `search` or `domain` line wins; comments start with # or ;. */
export function parseResolvConf(text: string): ResolvConf {
  const conf: ResolvConf = { nameservers: [], search: [], options: [] };
  for (const raw of text.split("\n")) {
    const line = raw.replace(/[#;].*$/, "").trim();
    if (!line) continue;
    const [keyword, ...values] = line.split(/\s+/);
    if (keyword === "nameserver" && values[0]) conf.nameservers.push(values[0]);
    else if (keyword === "search" || keyword === "domain") conf.search = values;
    else if (keyword === "options") conf.options.push(...values);
  }
  return conf;
}

/**
 * Where non-cluster queries go: the original nameservers, minus connect's own address (left behind by
 * a ktctl that was killed before it could restore the file, it would make the server ask itself).
 * No nameserver means the resolver library's default, the local host.
 */
export function upstreamsOf(conf: ResolvConf, ownAddresses: string[]): Upstream[] {
  const servers = conf.nameservers.length ? conf.nameservers : ["127.0.0.1"];
  return servers
    .map((server) => server.replace(/%.*$/, "")) // fe80::1%eth0: the zone is not an address
    .filter((server) => !ownAddresses.includes(server) && (isIPv4(server) || server.includes(":")))
    .map((host) => ({ host, port: 53 }));
}

export const RESOLV_MARK = "# ktctl connect";

/** The session whose connect wrote this resolv.conf (its marked header), if any. */
export function resolvConfSession(text: string): string | undefined {
  return /^# ktctl connect \(session ([a-z0-9]+)\)/m.exec(text)?.[1];
}

export interface ConnectResolvConfOptions {
  /** The address the local DNS server answers on (port 53). */
  nameserver: string;
  /** Search domains put first, e.g. demo.svc.cluster.local svc.cluster.local cluster.local. */
  searchFirst: string[];
  sessionId: string;
}

/**
 * The file while connect runs: a marked header, the local server as the only nameserver, cluster
 * search domains ahead of the original ones, the original nameservers kept as comments (a reader
 * sees what will come back), every other line as it was.
 */
export function connectResolvConf(original: string, options: ConnectResolvConfOptions): string {
  const conf = parseResolvConf(original);
  const search = [...new Set([...options.searchFirst, ...conf.search])];
  const kept: string[] = [];
  for (const line of original.split("\n")) {
    const keyword = line.trim().split(/\s+/)[0];
    if (keyword === "nameserver") kept.push(`# ktctl: ${line.trim()}`);
    else if (keyword === "search" || keyword === "domain") continue;
    else kept.push(line);
  }
  while (kept.length && kept[kept.length - 1] === "") kept.pop();
  return [
    `${RESOLV_MARK} (session ${options.sessionId}): cluster names are answered locally; this file is restored on exit`,
    `nameserver ${options.nameserver}`,
    `search ${search.join(" ")}`,
    ...kept,
    "",
  ].join("\n");
}

/** Search domains a pod of `namespace` has, in its order. */
export const clusterSearchDomains = (namespace: string, domain: string): string[] => [`${namespace}.svc.${domain}`, `svc.${domain}`, domain];
