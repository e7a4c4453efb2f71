// Windows, as administrator. Windows has no nat OUTPUT hook, and routes cannot point at loopback, so
// capture is MAPPED and name-based: every service gets a loopback address of its own (all of 127/8
// is loopback on Windows), ktctl listens there on the service's ports, and the hosts file maps each
// name form to that address. Windows lets a specific address bind a port that a local process holds
// on 0.0.0.0, so a developer's own 8080 is not disturbed. The hosts file is honoured by every
// runtime (Java, .NET, Go, Node) and by VPN clients' resolvers, unlike interface DNS (kt-connect #457).
// ClusterIPs and pod IPs by address need --mode proxy on Windows.

import type { ErrorsApi } from "../../../../core/plugin-api.ts";
import { hostsBlockSessions, withHostsBlock } from "../hosts-file.ts";
import { fileHeldByOtherConnect, spawnRunner, type CommandRunner, type ConnectNetSpec, type HostFacts, type NetAction, type NetDriver } from "../driver.ts";
import { readFile } from "node:fs/promises";

export const WINDOWS_HOSTS = "C:\\Windows\\System32\\drivers\\etc\\hosts";

export interface WindowsDriverOptions {
  /** The plugin API's errors: refusals are KtctlErrors with their exit codes. */
  errors: ErrorsApi;
  runner?: CommandRunner;
  hostsPath?: string;
}

export function createWindowsDriver(options: WindowsDriverOptions): NetDriver {
  const { errors } = options;
  const runner = options.runner ?? spawnRunner;
  const hostsPath = options.hostsPath ?? WINDOWS_HOSTS;

  const hostsActions = (spec: ConnectNetSpec, facts: HostFacts): NetAction[] => {
    const holder = hostsBlockSessions(facts.hostsFile!.content).find((id) => id !== spec.sessionId);
    if (holder) throw fileHeldByOtherConnect(errors, facts.hostsFile!.path, holder);
    return [
      {
        kind: "write-file",
        describe: `add the cluster names to ${facts.hostsFile!.path}`,
        path: facts.hostsFile!.path,
        // Windows tools write CRLF; keep the file's own line ends.
        content: withCrlfIfUsed(facts.hostsFile!.content, withHostsBlock(facts.hostsFile!.content.replace(/\r\n/g, "\n"), spec.hosts ?? [], spec.sessionId)),
      },
      { kind: "run", describe: "flush the Windows DNS cache", commands: [["ipconfig", "/flushdns"]], undo: [["ipconfig", "/flushdns"]], undoKey: "dns-flush" },
    ];
  };

  return {
    name: "windows",
    capture: "mapped",

    async probe() {
      // `net session` succeeds only in an elevated prompt: the usual administrator check.
      const elevated = await runner(["net", "session"]);
      return {
        platform: "win32",
        isRoot: elevated.code === 0,
        tools: {},
        hostsFile: { path: hostsPath, content: await readFile(hostsPath, "utf8").catch(() => "") },
      } satisfies HostFacts;
    },

    prepare(spec, facts) {
      if (!facts.isRoot) {
        throw new errors.KtctlError("connect in system mode needs an administrator prompt on Windows", errors.ExitCode.forbidden, "run it as administrator, or use --mode proxy");
      }
      return {
        driver: "windows",
        actions: hostsActions(spec, facts),
        notes: ["ClusterIPs and pod IPs by address are reachable on Windows through --mode proxy only; names work for every service"],
      };
    },

    refresh(spec, facts) {
      return hostsActions(spec, facts);
    },
  };
}

function withCrlfIfUsed(original: string, text: string): string {
  return original.includes("\r\n") ? text.replace(/\r?\n/g, "\r\n") : text;
}
