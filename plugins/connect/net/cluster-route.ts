// Which way a proxied connection goes. Cluster names and cluster addresses go through the tunnel;
// everything else leaves the laptop directly, exactly as without ktctl, so ALL_PROXY can stay set
// for a whole program (its calls to the internet, VPN or corporate hosts are not sent into the cluster).
// Cluster names are handed on fully qualified: the shadow's search path is not the user's namespace
// when a shadow serves several namespaces.

import { connect } from "node:net";
import type { Duplex } from "node:stream";
import type { ErrorsApi, KtctlErrorInstance, OpenStream } from "../../../core/plugin-api.ts";
import { cidrContains, parseIPv4 } from "./cidr.ts";
import type { CaptureRanges } from "./cluster-cidrs.ts";
import { answerName, canonicalName, classifyName, dashIp, type ClusterName, type NameView, type NamingContext } from "./cluster-names.ts";

export interface ClusterRouteOptions {
  context: NamingContext;
  view: NameView;
  capture: CaptureRanges;
  /** Through the tunnel. */
  cluster: OpenStream;
  /** From the laptop itself (default: a TCP connection). */
  direct?: OpenStream;
  errors: ErrorsApi;
}

export function isCapturedAddress(ip: string, capture: CaptureRanges): boolean {
  const value = parseIPv4(ip);
  if (value === undefined) return false;
  return capture.capture.some((c) => cidrContains(c, value)) && !capture.exclude.some((c) => cidrContains(c, value));
}

/** The fully qualified form of a cluster name, as any pod's resolver answers it. */
export function qualifiedName(name: ClusterName, domain: string): string | undefined {
  switch (name.kind) {
    case "service":
      return `${name.service}.${name.namespace}.svc.${domain}`;
    case "endpoint":
      return `${name.endpoint}.${name.service}.${name.namespace}.svc.${domain}`;
    case "pod":
      return `${dashIp(name.ip)}.${name.namespace}.pod.${domain}`;
    default:
      return undefined;
  }
}

/** `reason` picks the proxy's answer to the client (SOCKS5 "host unreachable"), as for a DNS failure. */
export function notFoundError(errors: ErrorsApi, host: string): KtctlErrorInstance & { reason: "not-found" } {
  return Object.assign(new errors.KtctlError(`${host} is not a name in the cluster`, errors.ExitCode.notFound), { reason: "not-found" as const });
}

export const directStream: OpenStream = (host, port) =>
  new Promise<Duplex>((resolve, reject) => {
    const socket = connect({ host, port });
    socket.once("connect", () => {
      socket.off("error", reject);
      resolve(socket);
    });
    socket.once("error", reject);
  });

export function clusterRoute(options: ClusterRouteOptions): OpenStream {
  const direct = options.direct ?? directStream;
  return async (host, port) => {
    if (parseIPv4(host) !== undefined) return isCapturedAddress(host, options.capture) ? options.cluster(host, port) : direct(host, port);
    const classified = classifyName(host, options.context);
    const answer = await answerName(classified, options.view);
    if (answer.kind === "forward") return direct(host, port);
    if (answer.kind === "nxdomain" || answer.kind === "nodata") throw notFoundError(options.errors, host);
    return options.cluster(qualifiedName(classified!, canonicalName(options.context.domain)) ?? canonicalName(host), port);
  };
}
