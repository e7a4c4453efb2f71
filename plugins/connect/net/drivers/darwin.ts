// macOS, as root. pf cannot hand a user-space program a connection's original destination without
// the DIOCNATLOOK ioctl, so capture is MAPPED: each cluster target (ClusterIP:port, pod IP:port)
// gets its own loopback listener on a port ktctl picked, and a pf anchor redirects the target to
// it. Outgoing packets to the cluster ranges are routed to lo0 by a `route-to` rule so the `rdr`
// rules (which only see packets arriving on an interface) apply. The anchor is reloaded whenever
// the mappings change; unloading it (pfctl -F all on the anchor) is the undo.
//
// DNS: /etc/resolver/<domain> and /etc/resolver/<namespace> files send those names to the local
// server, on its real port (macOS resolver files take a `port`). Short names need a search domain,
// which /etc/resolver cannot add system-wide: on macOS use name.namespace or the FQDN.

import { lstat } from "node:fs/promises";
import type { ErrorsApi } from "../../../../core/plugin-api.ts";
import { formatCidr } from "../cidr.ts";
import { spawnRunner, type CommandRunner, type ConnectNetSpec, type HostFacts, type NetAction, type NetDriver } from "../driver.ts";

export interface DarwinDriverOptions {
  /** The plugin API's errors: refusals are KtctlErrors with their exit codes. */
  errors: ErrorsApi;
  runner?: CommandRunner;
  resolverDir?: string;
  anchorDir?: string;
}

export const pfAnchorName = (sessionId: string) => `com.apple/ktctl-${sessionId}`;

export function pfAnchorRules(spec: ConnectNetSpec): string {
  const lines = [`# ktctl connect ${spec.sessionId}`];
  for (const m of spec.mappings ?? []) {
    lines.push(`rdr pass on lo0 inet proto tcp from any to ${m.target.host} port ${m.target.port} -> ${m.listen.host} port ${m.listen.port}`);
  }
  // Excluded addresses leave by their normal route; `quick` makes the first match final.
  for (const hole of spec.capture.exclude) lines.push(`pass out quick inet proto tcp from any to ${formatCidr(hole)}`);
  if (spec.capture.capture.length) {
    lines.push(`pass out quick route-to lo0 inet proto tcp from any to { ${spec.capture.capture.map(formatCidr).join(", ")} } keep state`);
  }
  return `${lines.join("\n")}\n`;
}

export function createDarwinDriver(options: DarwinDriverOptions): NetDriver {
  const { errors } = options;
  const runner = options.runner ?? spawnRunner;
  const resolverDir = options.resolverDir ?? "/etc/resolver";
  const anchorDir = options.anchorDir ?? "/etc/pf.anchors";

  const anchorActions = (spec: ConnectNetSpec): NetAction[] => {
    const anchor = pfAnchorName(spec.sessionId);
    const file = `${anchorDir}/ktctl-${spec.sessionId}`;
    return [
      { kind: "write-file", describe: `write pf rules for ${spec.mappings?.length ?? 0} cluster targets`, path: file, content: pfAnchorRules(spec) },
      {
        kind: "run",
        describe: `load the pf anchor ${anchor}`,
        commands: [["pfctl", "-a", anchor, "-f", file]],
        undo: [["pfctl", "-a", anchor, "-F", "all"]],
        undoKey: "pf-anchor",
      },
    ];
  };

  return {
    name: "darwin",
    capture: "mapped",

    async probe() {
      const info = await runner(["pfctl", "-s", "info"]);
      return {
        platform: "darwin",
        isRoot: process.getuid?.() === 0,
        tools: { pfctl: Bun.which("pfctl") !== null },
        pfEnabled: /Status:\s*Enabled/i.test(info.stdout),
        resolverDirExists: await lstat(resolverDir).then(
          (s) => s.isDirectory(),
          () => false,
        ),
      } satisfies HostFacts;
    },

    prepare(spec, facts) {
      if (!facts.isRoot) throw new errors.KtctlError("connect in system mode needs root on macOS", errors.ExitCode.forbidden, "run it with sudo, or use --mode proxy");
      const actions: NetAction[] = [];
      if (!facts.pfEnabled) actions.push({ kind: "run", describe: "enable pf", commands: [["pfctl", "-e"]], undo: [["pfctl", "-d"]], tolerate: ["pf not enabled"] });
      actions.push(...anchorActions(spec));
      if (spec.dns) {
        if (!facts.resolverDirExists) {
          actions.push({ kind: "run", describe: `create ${resolverDir}`, commands: [["mkdir", resolverDir]], undo: [["rmdir", resolverDir]], tolerate: ["Directory not empty"] });
        }
        for (const zone of [spec.domain, ...spec.dns.namespaces]) {
          actions.push({
            kind: "write-file",
            describe: `send *.${zone} to ktctl's DNS server`,
            path: `${resolverDir}/${zone}`,
            content: `# ktctl connect ${spec.sessionId}\nnameserver 127.0.0.1\nport ${spec.dns.port}\n`,
          });
        }
        actions.push(flushAction());
      }
      return {
        driver: "darwin",
        actions,
        notes: ["short service names need a search domain, which macOS cannot add system-wide: use name.namespace or the full name"],
      };
    },

    refresh(spec) {
      return anchorActions(spec);
    },
  };
}

function flushAction(): NetAction {
  const flush = [["dscacheutil", "-flushcache"], ["killall", "-HUP", "mDNSResponder"]];
  return { kind: "run", describe: "flush the macOS DNS cache", commands: flush, undo: flush, undoKey: "dns-flush" };
}
