// Driver plans (every OS, on any OS) and the plan executor with the real undo runners.

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseCidr } from "../../plugins/connect/net/cidr.ts";
import { formatPlan, PlanExecutor, type ConnectNetSpec, type HostFacts, type NetAction } from "../../plugins/connect/net/driver.ts";
import { createLinuxDriver, DNS_ADDRESS } from "../../plugins/connect/net/drivers/linux.ts";
import { createDarwinDriver, pfAnchorRules } from "../../plugins/connect/net/drivers/darwin.ts";
import { createWindowsDriver } from "../../plugins/connect/net/drivers/windows.ts";
import { createProxyDriver } from "../../plugins/connect/net/drivers/proxy.ts";
import { proxyUsage } from "../../core/laptop/proxy-usage.ts";
import { defaultMode, selectDriver } from "../../plugins/connect/net/drivers/index.ts";
import { clusterSearchDomains, connectResolvConf, parseResolvConf, upstreamsOf } from "../../plugins/connect/net/resolv-conf.ts";
import { withHostsBlock, withoutHostsBlock } from "../../plugins/connect/net/hosts-file.ts";
import { connectApi, localSession } from "./net-support.ts";

const { errors } = connectApi;

const spec: ConnectNetSpec = {
  sessionId: "abcd1234",
  namespace: "demo",
  domain: "cluster.local",
  capture: { capture: [parseCidr("10.96.0.0/16"), parseCidr("10.244.0.0/24")], exclude: [parseCidr("10.96.0.1/32")] },
  transparentPort: 41000,
  dns: { address: DNS_ADDRESS, port: 41053, searchDomains: clusterSearchDomains("demo", "cluster.local"), namespaces: ["demo", "demo2"] },
  hosts: [
    { address: "10.96.12.34", names: ["echo", "echo.demo", "echo.demo.svc", "echo.demo.svc.cluster.local"] },
    { address: "10.96.50.1", names: ["echo.demo2", "echo.demo2.svc", "echo.demo2.svc.cluster.local"] },
  ],
};

const linuxFacts = (over: Partial<HostFacts> = {}): HostFacts => ({
  platform: "linux",
  isRoot: true,
  tools: { nft: true, iptables: true, ip: true, resolvectl: false },
  resolvConf: { path: "/etc/resolv.conf", content: "nameserver 10.0.0.2\nsearch corp.example\noptions timeout:1\n", managedByResolved: false },
  hostsFile: { path: "/etc/hosts", content: "127.0.0.1\tlocalhost\n" },
  unroutedCidrs: ["10.244.0.0/24"],
  ...over,
});

const commandsOf = (actions: NetAction[]) => actions.flatMap((a) => (a.kind === "run" ? a.commands : [["write", a.path]]));

describe("linux system driver", () => {
  test("nftables: one table, one transaction; API server excluded; DNS redirected; loopback route where none exists", () => {
    const plan = createLinuxDriver({ errors, variant: "system" }).prepare(spec, linuxFacts());
    expect(commandsOf(plan.actions)).toEqual([
      [
        "nft",
        "add table ip ktctl_abcd1234 ; add chain ip ktctl_abcd1234 output { type nat hook output priority -100 ; } ; " +
          "add rule ip ktctl_abcd1234 output ip daddr 10.96.0.1/32 return ; " +
          "add rule ip ktctl_abcd1234 output ip daddr 127.19.0.53 udp dport 53 redirect to :41053 ; " +
          "add rule ip ktctl_abcd1234 output ip daddr 127.19.0.53 tcp dport 53 redirect to :41053 ; " +
          "add rule ip ktctl_abcd1234 output ip daddr { 10.96.0.0/16, 10.244.0.0/24 } meta l4proto tcp redirect to :41000",
      ],
      ["ip", "-4", "route", "add", "10.244.0.0/24", "dev", "lo", "src", "127.0.0.1"],
      ["write", "/etc/resolv.conf"],
    ]);
    const [rules, route, resolv] = plan.actions;
    expect(rules!.kind === "run" && rules!.undo).toEqual([["nft", "delete", "table", "ip", "ktctl_abcd1234"]]);
    expect(route!.kind === "run" && route!.undo).toEqual([["ip", "-4", "route", "del", "10.244.0.0/24", "dev", "lo", "src", "127.0.0.1"]]);
    expect(resolv!.kind === "write-file" && resolv!.content).toBe(
      "# ktctl connect (session abcd1234): cluster names are answered locally; this file is restored on exit\n" +
        "nameserver 127.19.0.53\n" +
        "search demo.svc.cluster.local svc.cluster.local cluster.local corp.example\n" +
        "# ktctl: nameserver 10.0.0.2\n" +
        "options timeout:1\n",
    );
  });

  test("iptables fallback: own chain, one jump, undone in reverse", () => {
    const plan = createLinuxDriver({ errors, variant: "system", dnsMode: "none" }).prepare(spec, linuxFacts({ tools: { iptables: true, ip: true }, unroutedCidrs: [] }));
    expect(plan.actions).toHaveLength(1);
    const [rules] = plan.actions;
    if (rules!.kind !== "run") throw new Error("expected commands");
    const ipt = (...a: string[]) => ["iptables", "-w", "5", "-t", "nat", ...a];
    expect(rules!.commands).toEqual([
      ipt("-N", "KTCTL-ABCD1234"),
      ipt("-A", "KTCTL-ABCD1234", "-d", "10.96.0.1/32", "-j", "RETURN"),
      ipt("-A", "KTCTL-ABCD1234", "-d", "127.19.0.53/32", "-p", "udp", "--dport", "53", "-j", "REDIRECT", "--to-ports", "41053"),
      ipt("-A", "KTCTL-ABCD1234", "-d", "127.19.0.53/32", "-p", "tcp", "--dport", "53", "-j", "REDIRECT", "--to-ports", "41053"),
      ipt("-A", "KTCTL-ABCD1234", "-d", "10.96.0.0/16", "-p", "tcp", "-j", "REDIRECT", "--to-ports", "41000"),
      ipt("-A", "KTCTL-ABCD1234", "-d", "10.244.0.0/24", "-p", "tcp", "-j", "REDIRECT", "--to-ports", "41000"),
      ipt("-I", "OUTPUT", "1", "-j", "KTCTL-ABCD1234"),
    ]);
    expect(rules!.undo).toEqual([ipt("-D", "OUTPUT", "-j", "KTCTL-ABCD1234"), ipt("-F", "KTCTL-ABCD1234"), ipt("-X", "KTCTL-ABCD1234")]);
    expect(plan.notes[0]).toContain("DNS is left alone");
  });

  test("systemd-resolved: chosen automatically when it owns resolv.conf; a dummy link carries the domains", () => {
    const facts = linuxFacts({
      tools: { nft: true, ip: true, resolvectl: true },
      resolvConf: { path: "/run/systemd/resolve/stub-resolv.conf", content: "nameserver 127.0.0.53\n", managedByResolved: true },
      unroutedCidrs: [],
    });
    const plan = createLinuxDriver({ errors, variant: "system" }).prepare(spec, facts);
    expect(commandsOf(plan.actions).slice(1)).toEqual([
      ["ip", "link", "add", "ktctlabcd1234", "type", "dummy"],
      ["ip", "link", "set", "ktctlabcd1234", "up"],
      ["resolvectl", "dns", "ktctlabcd1234", "127.19.0.53"],
      ["resolvectl", "domain", "ktctlabcd1234", "demo.svc.cluster.local", "svc.cluster.local", "cluster.local", "~demo", "~demo2"],
      ["resolvectl", "default-route", "ktctlabcd1234", "false"],
    ]);
    expect(plan.actions.slice(1).map((a) => a.kind === "run" && a.undo)).toEqual([[["ip", "link", "del", "ktctlabcd1234"]], [["resolvectl", "revert", "ktctlabcd1234"]]]);
    expect(() => createLinuxDriver({ errors, variant: "system", dnsMode: "resolved" }).prepare(spec, linuxFacts())).toThrow("needs resolvectl");
  });

  test("not root: a clear refusal that points at proxy mode; no nat tool: likewise", () => {
    expect(() => createLinuxDriver({ errors, variant: "system" }).prepare(spec, linuxFacts({ isRoot: false }))).toThrow("needs root");
    expect(() => createLinuxDriver({ errors, variant: "system" }).prepare(spec, linuxFacts({ tools: { ip: true } }))).toThrow("neither nft nor iptables");
  });
});

describe("one connect at a time per DNS file", () => {
  const otherResolv = connectResolvConf("nameserver 10.0.0.2\n", { nameserver: DNS_ADDRESS, searchFirst: ["demo.svc.cluster.local"], sessionId: "zzzz9999" });
  const otherHosts = withHostsBlock("127.0.0.1\tlocalhost\n", [{ address: "10.96.1.1", names: ["x"] }], "zzzz9999");

  test("resolv.conf or hosts changed by another connect: refused (a conflict), naming the session and the way out", () => {
    const system = () => createLinuxDriver({ errors, variant: "system", dnsMode: "resolvconf" }).prepare(spec, linuxFacts({ resolvConf: { path: "/etc/resolv.conf", content: otherResolv, managedByResolved: false } }));
    expect(system).toThrow("/etc/resolv.conf is already changed by ktctl connect session zzzz9999");
    try {
      system();
    } catch (error: any) {
      expect(error.exitCode).toBe(10);
      expect(error.hint).toContain("--mode proxy");
      expect(error.hint).toContain("ktctl clean --localOnly");
    }
    expect(() => createLinuxDriver({ errors, variant: "hosts" }).prepare(spec, linuxFacts({ hostsFile: { path: "/etc/hosts", content: otherHosts } }))).toThrow(
      "/etc/hosts is already changed by ktctl connect session zzzz9999",
    );
    const windowsFacts: HostFacts = { platform: "win32", isRoot: true, tools: {}, hostsFile: { path: "C:\\hosts", content: otherHosts.replace(/\n/g, "\r\n") } };
    expect(() => createWindowsDriver({ errors }).prepare(spec, windowsFacts)).toThrow("already changed by ktctl connect session zzzz9999");
  });

  test("its own marks, and DNS methods that touch neither file, are no conflict", () => {
    const own = connectResolvConf("nameserver 10.0.0.2\n", { nameserver: DNS_ADDRESS, searchFirst: [], sessionId: spec.sessionId });
    expect(() => createLinuxDriver({ errors, variant: "system" }).prepare(spec, linuxFacts({ resolvConf: { path: "/etc/resolv.conf", content: own, managedByResolved: false } }))).not.toThrow();
    const ownHosts = withHostsBlock("127.0.0.1\tlocalhost\n", [], spec.sessionId);
    expect(() => createLinuxDriver({ errors, variant: "hosts" }).prepare(spec, linuxFacts({ hostsFile: { path: "/etc/hosts", content: ownHosts } }))).not.toThrow();
    const held = linuxFacts({ resolvConf: { path: "/etc/resolv.conf", content: otherResolv, managedByResolved: false }, hostsFile: { path: "/etc/hosts", content: otherHosts } });
    expect(() => createLinuxDriver({ errors, variant: "system", dnsMode: "none" }).prepare(spec, held)).not.toThrow();
  });
});

describe("linux hosts driver", () => {
  test("capture plus a marked hosts block; refresh rewrites only the block", () => {
    const driver = createLinuxDriver({ errors, variant: "hosts" });
    const facts = linuxFacts({ unroutedCidrs: [] });
    const plan = driver.prepare({ ...spec, dns: undefined }, facts);
    expect(plan.driver).toBe("linux-hosts");
    const hosts = plan.actions[1]!;
    expect(hosts.kind === "write-file" && hosts.content).toBe(
      "127.0.0.1\tlocalhost\n" +
        "# BEGIN ktctl connect abcd1234\n" +
        "# cluster names, kept current while ktctl connect runs; removed on exit\n" +
        "10.96.12.34\techo echo.demo echo.demo.svc echo.demo.svc.cluster.local\n" +
        "10.96.50.1\techo.demo2 echo.demo2.svc echo.demo2.svc.cluster.local\n" +
        "# END ktctl connect abcd1234\n",
    );
    const later = driver.refresh({ ...spec, hosts: [{ address: "10.96.1.1", names: ["new"] }] }, facts);
    expect(later).toHaveLength(1);
    expect(later[0]!.kind === "write-file" && later[0]!.content).toBe(
      "127.0.0.1\tlocalhost\n# BEGIN ktctl connect abcd1234\n# cluster names, kept current while ktctl connect runs; removed on exit\n10.96.1.1\tnew\n# END ktctl connect abcd1234\n",
    );
    expect(createLinuxDriver({ errors, variant: "system" }).refresh(spec, facts)).toEqual([]);
  });
});

describe("darwin driver (plan only)", () => {
  const mapped: ConnectNetSpec = {
    ...spec,
    transparentPort: undefined,
    mappings: [
      { target: { host: "10.96.12.34", port: 80 }, listen: { host: "127.0.0.1", port: 42001 } },
      { target: { host: "10.244.0.7", port: 8080 }, listen: { host: "127.0.0.1", port: 42002 } },
    ],
  };

  test("pf anchor with rdr per target and route-to lo0; resolver files on the server's port", () => {
    expect(pfAnchorRules(mapped)).toBe(
      "# ktctl connect abcd1234\n" +
        "rdr pass on lo0 inet proto tcp from any to 10.96.12.34 port 80 -> 127.0.0.1 port 42001\n" +
        "rdr pass on lo0 inet proto tcp from any to 10.244.0.7 port 8080 -> 127.0.0.1 port 42002\n" +
        "pass out quick inet proto tcp from any to 10.96.0.1/32\n" +
        "pass out quick route-to lo0 inet proto tcp from any to { 10.96.0.0/16, 10.244.0.0/24 } keep state\n",
    );
    const plan = createDarwinDriver({ errors }).prepare(mapped, { platform: "darwin", isRoot: true, tools: {}, pfEnabled: false, resolverDirExists: false });
    expect(commandsOf(plan.actions)).toEqual([
      ["pfctl", "-e"],
      ["write", "/etc/pf.anchors/ktctl-abcd1234"],
      ["pfctl", "-a", "com.apple/ktctl-abcd1234", "-f", "/etc/pf.anchors/ktctl-abcd1234"],
      ["mkdir", "/etc/resolver"],
      ["write", "/etc/resolver/cluster.local"],
      ["write", "/etc/resolver/demo"],
      ["write", "/etc/resolver/demo2"],
      ["dscacheutil", "-flushcache"],
      ["killall", "-HUP", "mDNSResponder"],
    ]);
    const resolver = plan.actions.find((a) => a.kind === "write-file" && a.path === "/etc/resolver/cluster.local");
    expect(resolver?.kind === "write-file" && resolver.content).toBe("# ktctl connect abcd1234\nnameserver 127.0.0.1\nport 41053\n");
    const refresh = createDarwinDriver({ errors }).refresh(mapped, { platform: "darwin", isRoot: true, tools: {} });
    expect(refresh.map((a) => (a.kind === "run" ? a.undoKey : a.path))).toEqual(["/etc/pf.anchors/ktctl-abcd1234", "pf-anchor"]);
  });
});

describe("windows driver (plan only)", () => {
  test("hosts block in CRLF with per-service loopback addresses, DNS cache flushed", () => {
    const facts: HostFacts = { platform: "win32", isRoot: true, tools: {}, hostsFile: { path: "C:\\Windows\\System32\\drivers\\etc\\hosts", content: "# hosts\r\n127.0.0.1 localhost\r\n" } };
    const plan = createWindowsDriver({ errors }).prepare({ ...spec, hosts: [{ address: "127.20.0.1", names: ["echo", "echo.demo"] }] }, facts);
    const [hosts, flush] = plan.actions;
    expect(hosts!.kind === "write-file" && hosts!.content).toBe(
      "# hosts\r\n127.0.0.1 localhost\r\n# BEGIN ktctl connect abcd1234\r\n# cluster names, kept current while ktctl connect runs; removed on exit\r\n127.20.0.1\techo echo.demo\r\n# END ktctl connect abcd1234\r\n",
    );
    expect(flush!.kind === "run" && flush!.commands).toEqual([["ipconfig", "/flushdns"]]);
    expect(() => createWindowsDriver({ errors }).prepare(spec, { ...facts, isRoot: false })).toThrow("administrator");
  });
});

describe("proxy driver and choice of driver", () => {
  test("proxy: no changes, the settings to use", () => {
    const plan = createProxyDriver(connectApi.proxy.instructions).prepare({ ...spec, proxy: { host: "127.0.0.1", port: 2223 } }, { platform: "linux", isRoot: false, tools: {} });
    expect(plan.actions).toEqual([]);
    expect(plan.notes).toContain("export ALL_PROXY=socks5h://127.0.0.1:2223");
    expect(proxyUsage("127.0.0.1", 2223).jvmFlags).toEqual([
      "-DsocksProxyHost=127.0.0.1",
      "-DsocksProxyPort=2223",
      "-Dhttp.proxyHost=127.0.0.1",
      "-Dhttp.proxyPort=2223",
      "-Dhttps.proxyHost=127.0.0.1",
      "-Dhttps.proxyPort=2223",
    ]);
  });

  test("defaults and selection", () => {
    expect(defaultMode("linux", true)).toBe("system");
    expect(defaultMode("linux", false)).toBe("proxy");
    expect(defaultMode("darwin", true)).toBe("proxy");
    expect(selectDriver({ mode: "hosts", platform: "linux" }, connectApi).name).toBe("linux-hosts");
    expect(selectDriver({ mode: "system", platform: "win32" }, connectApi).name).toBe("windows");
    expect(selectDriver({ mode: "system", platform: "darwin" }, connectApi).name).toBe("darwin");
    expect(() => selectDriver({ mode: "hosts", platform: "darwin" }, connectApi)).toThrow("not available on macOS");
  });

  test("formatPlan shows commands, files and undos", () => {
    const text = formatPlan(createLinuxDriver({ errors, variant: "system" }).prepare(spec, linuxFacts()));
    expect(text).toContain("driver: linux-system");
    expect(text).toContain("$ ip -4 route add 10.244.0.0/24 dev lo src 127.0.0.1");
    expect(text).toContain("undo: nft delete table ip ktctl_abcd1234");
    expect(text).toContain("| nameserver 127.19.0.53");
    expect(text).toContain("undo: restore the original bytes of /etc/resolv.conf");
  });
});

describe("resolv.conf and hosts texts", () => {
  test("parse: last search wins, comments ignored; upstreams exclude our own address", () => {
    const conf = parseResolvConf("# c\nnameserver 10.0.0.2 ; x\nnameserver fe80::1%eth0\ndomain a.example\nsearch b.example c.example\noptions ndots:2 rotate\nnameserver 127.19.0.53\n");
    expect(conf).toEqual({ nameservers: ["10.0.0.2", "fe80::1%eth0", "127.19.0.53"], search: ["b.example", "c.example"], options: ["ndots:2", "rotate"] });
    expect(upstreamsOf(conf, ["127.19.0.53"])).toEqual([
      { host: "10.0.0.2", port: 53 },
      { host: "fe80::1", port: 53 },
    ]);
    expect(upstreamsOf(parseResolvConf(""), [])).toEqual([{ host: "127.0.0.1", port: 53 }]);
  });

  test("connect's resolv.conf without any search line", () => {
    expect(connectResolvConf("nameserver 127.0.0.1\n", { nameserver: "127.19.0.53", searchFirst: ["demo.svc.cluster.local"], sessionId: "s1" })).toBe(
      "# ktctl connect (session s1): cluster names are answered locally; this file is restored on exit\nnameserver 127.19.0.53\nsearch demo.svc.cluster.local\n# ktctl: nameserver 127.0.0.1\n",
    );
  });

  test("hosts block: replaced, not stacked; removal gives the original back; files without a final newline", () => {
    const original = "127.0.0.1 localhost";
    const once = withHostsBlock(original, [{ address: "10.0.0.1", names: ["a"] }], "s1");
    const twice = withHostsBlock(once, [{ address: "10.0.0.2", names: ["b"] }], "s1");
    expect(twice.match(/BEGIN/g)?.length).toBe(1);
    expect(twice).toContain("10.0.0.2\tb");
    expect(withoutHostsBlock(twice, "s1")).toBe("127.0.0.1 localhost\n");
    const many = withHostsBlock("", [{ address: "10.0.0.3", names: Array.from({ length: 10 }, (_, i) => `n${i}`) }], "s1");
    expect(many.split("\n").filter((l) => l.startsWith("10.0.0.3"))).toHaveLength(2);
  });
});

describe("PlanExecutor with the real undo runners", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "ktctl-net-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("files are written in place and come back byte for byte; refresh adds no step; commands undone last first", async () => {
    const file = join(dir, "hosts");
    const original = Buffer.from("127.0.0.1 localhost\n# no final newline, odd bytes: \u00e9");
    await writeFile(file, original);
    const inode = (await stat(file)).ino;
    const log = join(dir, "log");
    const session = localSession();
    const executor = new PlanExecutor(session, connectApi);
    await executor.apply([
      { kind: "run", describe: "first", commands: [["sh", "-c", `echo do1 >> ${log}`]], undo: [["sh", "-c", `echo undo1 >> ${log}`]] },
      { kind: "write-file", describe: "hosts", path: file, content: "new content\n" },
      { kind: "run", describe: "reload", commands: [["sh", "-c", `echo do2 >> ${log}`]], undo: [["sh", "-c", `echo undo2 >> ${log}`]], undoKey: "reload" },
    ]);
    expect(await readFile(file, "utf8")).toBe("new content\n");
    expect((await stat(file)).ino).toBe(inode); // in place: bind mounts stay intact
    await executor.apply([
      { kind: "write-file", describe: "hosts", path: file, content: "newer content\n" },
      { kind: "run", describe: "reload", commands: [["sh", "-c", `echo do3 >> ${log}`]], undo: [["sh", "-c", `echo undo3 >> ${log}`]], undoKey: "reload" },
    ]);
    expect(session.journal.map((s) => s.describe)).toEqual(["first", "hosts", "reload"]);
    expect(await readFile(file, "utf8")).toBe("newer content\n");

    await session.close();
    expect((await readFile(file)).equals(original)).toBe(true);
    expect((await readFile(log, "utf8")).split("\n").filter(Boolean)).toEqual(["do1", "do2", "do3", "undo2", "undo1"]);
  });

  test("a failing command is undone at once and reported with its first error line", async () => {
    const log = join(dir, "log");
    const session = localSession();
    const executor = new PlanExecutor(session, connectApi);
    const failing: NetAction = {
      kind: "run",
      describe: "half done",
      commands: [["sh", "-c", `echo did >> ${log}`], ["sh", "-c", "echo 'Error: no such table' >&2; exit 1"]],
      undo: [["sh", "-c", `echo undone >> ${log}`]],
    };
    await expect(executor.apply([failing])).rejects.toThrow("failed: Error: no such table");
    expect((await readFile(log, "utf8")).split("\n").filter(Boolean)).toEqual(["did", "undone"]);
    expect(session.journal).toEqual([]);
  });

  // Each waits (at most 5 s) for the other's mark: run one after the other, the first would fail.
  const meetsOther = (dir: string, mine: string, other: string) => [
    "sh",
    "-c",
    `touch ${join(dir, mine)}; for i in $(seq 500); do [ -e ${join(dir, other)} ] && exit 0; sleep 0.01; done; echo "never met ${other}" >&2; exit 1`,
  ];

  test("independent neighbours run at the same time; the next action waits for all of them", async () => {
    const log = join(dir, "log");
    const session = localSession();
    await new PlanExecutor(session, connectApi).apply([
      { kind: "run", describe: "a", commands: [meetsOther(dir, "a", "b"), ["sh", "-c", `echo a >> ${log}`]], undo: [], independent: true },
      { kind: "run", describe: "b", commands: [meetsOther(dir, "b", "a"), ["sh", "-c", `echo b >> ${log}`]], undo: [], independent: true },
      { kind: "run", describe: "after", commands: [["sh", "-c", `echo after >> ${log}`]], undo: [] },
    ]);
    const lines = (await readFile(log, "utf8")).split("\n").filter(Boolean);
    expect(lines.slice(0, 2).sort()).toEqual(["a", "b"]);
    expect(lines[2]).toBe("after");
    expect(session.journal.map((s) => s.describe).sort()).toEqual(["a", "after", "b"]);
  });

  test("when one of a batch fails, apply answers only once the others are done, and nothing after them runs", async () => {
    const log = join(dir, "log");
    const session = localSession();
    const applying = new PlanExecutor(session, connectApi).apply([
      { kind: "run", describe: "fails", commands: [["sh", "-c", `touch ${join(dir, "failed")}; echo 'no such table' >&2; exit 1`]], undo: [], independent: true },
      { kind: "run", describe: "slow", commands: [meetsOther(dir, "slow", "failed"), ["sh", "-c", `echo slow >> ${log}`]], undo: [["sh", "-c", `echo undo-slow >> ${log}`]], independent: true },
      { kind: "run", describe: "never", commands: [["sh", "-c", `echo never >> ${log}`]], undo: [] },
    ]);
    await expect(applying).rejects.toThrow("no such table");
    expect((await readFile(log, "utf8")).split("\n").filter(Boolean)).toEqual(["slow"]);
    expect(session.journal.map((s) => s.describe)).toEqual(["slow"]);
    await session.close();
    expect((await readFile(log, "utf8")).split("\n").filter(Boolean)).toEqual(["slow", "undo-slow"]);
  });
});
