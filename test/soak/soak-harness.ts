// What the soak stands on besides the e2e harness: a laptop network namespace of its own (a
// 15-minute connect holds the resolver and routes of its laptop, which would make every other test
// on the shared laptop wait), and the memory and descriptors of processes, read from /proc.

import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { API_SERVER, run } from "../e2e/harness.ts";

/** A laptop like the test cluster's: one veth, a route to the API server and nothing else. */
export interface SoakLaptop {
  name: string;
  hostInterface: string;
  /** The first three octets of its /30. */
  net: string;
  chain: string;
}

export const SOAK_LAPTOP: SoakLaptop = { name: "ktctl-soak-laptop", hostInterface: "ktctl-soakl0", net: "10.211.0", chain: "KTCTL-SOAK-LAPTOP" };

const apiServer = new URL(API_SERVER);

async function must(argv: string[]): Promise<void> {
  const r = await run(argv);
  if (r.code !== 0) throw new Error(`${argv.join(" ")} failed (${r.code}): ${r.stderr.trim()}`);
}

/** Creates the namespace (or refreshes its files and fence when it exists). */
export async function laptopUp(laptop: SoakLaptop): Promise<void> {
  const { name, hostInterface, net, chain } = laptop;
  const exists = (await run(["ip", "netns", "list"])).stdout.split("\n").some((l) => l.split(" ")[0] === name);
  if (!exists) {
    await must(["ip", "netns", "add", name]);
    await must(["ip", "link", "add", hostInterface, "type", "veth", "peer", "name", "eth0", "netns", name]);
    await must(["ip", "addr", "add", `${net}.1/30`, "dev", hostInterface]);
    await must(["ip", "link", "set", hostInterface, "up"]);
    await must(["ip", "-n", name, "addr", "add", `${net}.2/30`, "dev", "eth0"]);
    await must(["ip", "-n", name, "link", "set", "eth0", "up"]);
    await must(["ip", "-n", name, "link", "set", "lo", "up"]);
    await must(["ip", "-n", name, "route", "add", `${apiServer.hostname}/32`, "via", `${net}.1`]);
  }
  await must(["mkdir", "-p", `/etc/netns/${name}`]);
  await Bun.write(`/etc/netns/${name}/resolv.conf`, "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n");
  await Bun.write(`/etc/netns/${name}/hosts`, `127.0.0.1\tlocalhost\n::1\tlocalhost\n${net}.2\tlaptop\n`);
  // The API server and nothing else, as on the test laptop.
  if ((await run(["iptables", "-w", "-N", chain])).code !== 0) await must(["iptables", "-w", "-F", chain]);
  await must(["iptables", "-w", "-A", chain, "-p", "tcp", "-d", apiServer.hostname, "--dport", apiServer.port, "-j", "ACCEPT"]);
  await must(["iptables", "-w", "-A", chain, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"]);
  await must(["iptables", "-w", "-A", chain, "-j", "DROP"]);
  const ensure = async (table: string, rule: string[]) => {
    if ((await run(["iptables", "-w", "-C", table, ...rule])).code !== 0) await must(["iptables", "-w", "-I", table, "1", ...rule]);
  };
  await ensure("INPUT", ["-i", hostInterface, "-j", chain]);
  await ensure("FORWARD", ["-i", hostInterface, "-j", "DROP"]);
  await ensure("FORWARD", ["-o", hostInterface, "-j", "DROP"]);
}

/** Removes the namespace, its veth, fence and files (whatever of them exists). */
export async function laptopDown(laptop: SoakLaptop): Promise<void> {
  const { name, hostInterface, chain } = laptop;
  await run(["iptables", "-w", "-D", "INPUT", "-i", hostInterface, "-j", chain]);
  await run(["iptables", "-w", "-D", "FORWARD", "-i", hostInterface, "-j", "DROP"]);
  await run(["iptables", "-w", "-D", "FORWARD", "-o", hostInterface, "-j", "DROP"]);
  await run(["iptables", "-w", "-F", chain]);
  await run(["iptables", "-w", "-X", chain]);
  await run(["ip", "link", "del", hostInterface]);
  await run(["ip", "netns", "delete", name]);
  await run(["rm", "-rf", `/etc/netns/${name}`]);
}

export const inSoakLaptop = (laptop: SoakLaptop, argv: string[]): string[] => ["ip", "netns", "exec", laptop.name, ...argv];

export interface ProcessStats {
  pid: number;
  rssKiB: number;
  /** The anonymous part of the RSS (heap, stacks): the process's own memory, where a leak shows. */
  anonKiB: number;
  fds: number;
}

/** VmRSS, RssAnon and the number of open descriptors of a live process; undefined once it is gone. */
export function processStats(pid: number): ProcessStats | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0);
    return { pid, rssKiB: kib("VmRSS"), anonKiB: kib("RssAnon"), fds: readdirSync(`/proc/${pid}/fd`).length };
  } catch {
    return undefined;
  }
}

/** /proc/PID/stat fields after the command name (which may hold spaces and parentheses). */
const statFields = (pid: number): string[] => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
};

const livePids = (): number[] =>
  readdirSync("/proc")
    .filter((e) => /^\d+$/.test(e))
    .map(Number);

/** Direct children of a process (ktctl's watchdog is one while ktctl lives). */
export function childrenOf(pid: number): number[] {
  return livePids().filter((p) => {
    try {
      return Number(statFields(p)[1]) === pid;
    } catch {
      return false;
    }
  });
}

/** The process named `comm` in a pod's cgroup on this node (a pod's container, seen from the host). */
export function podProcess(podUid: string, comm: string): number | undefined {
  const marks = [podUid, podUid.replaceAll("-", "_")];
  return livePids().find((p) => {
    try {
      if (readFileSync(`/proc/${p}/comm`, "utf8").trim() !== comm) return false;
      const cgroup = readFileSync(`/proc/${p}/cgroup`, "utf8");
      return marks.some((m) => cgroup.includes(m));
    } catch {
      return false;
    }
  });
}

/** What a process runs (for the report): the executable's path. */
export function executableOf(pid: number): string {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return "?";
  }
}
