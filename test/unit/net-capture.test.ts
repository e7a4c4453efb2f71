// Transparent capture for real, without a cluster: a scratch network namespace (root only), nftables,
// SO_ORIGINAL_DST through bun:ffi, the DNS server behind the system resolver, and curl. The files
// `ip netns exec` bind-mounts (resolv.conf, hosts) are the ones a rename cannot replace, as on the
// laptop namespace of the e2e tests. Skipped when not root or without `ip netns`/nft/curl.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";

const isRoot = process.getuid?.() === 0;
const tools = ["ip", "nft", "curl"].every((t) => Bun.which(t) !== null);
const netns = `ktctl-unit-${process.pid}`;
const etc = `/etc/netns/${netns}`;
const helper = join(import.meta.dir, "net-capture-helper.ts");
const RESOLV = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n";
const HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost\n";

async function sh(argv: string[]) {
  const proc = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe", timeout: 60_000 });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`${argv.join(" ")} exited ${code}: ${stderr}`);
  return stdout;
}

describe.skipIf(!isRoot || !tools)("linux capture in a scratch network namespace", () => {
  beforeAll(async () => {
    await mkdir(etc, { recursive: true });
    await writeFile(join(etc, "resolv.conf"), RESOLV);
    await writeFile(join(etc, "hosts"), HOSTS);
    await sh(["ip", "netns", "add", netns]);
    await sh(["ip", "-n", netns, "link", "set", "lo", "up"]);
  });
  afterAll(async () => {
    await sh(["ip", "netns", "del", netns]).catch(() => undefined);
    await rm(etc, { recursive: true, force: true });
  });

  for (const mode of ["system", "hosts"] as const) {
    test(`${mode} mode: names, ClusterIP, pod IP through one listener; local 8080 untouched; everything restored`, async () => {
      const out = JSON.parse(await sh(["ip", "netns", "exec", netns, process.execPath, helper, mode]));
      const answers = out.answers;
      expect(answers.fqdn).toBe("cluster 10.96.12.34:8080");
      expect(answers.otherNamespace).toBe("cluster 10.96.50.1:80");
      expect(answers.clusterIp).toBe("cluster 10.96.12.34:9090");
      expect(answers.podIp).toBe("cluster 10.244.0.7:8080");
      expect(answers.local8080).toBe("local 8080");
      expect(answers.apiServerNotCaptured).toStartWith("curl exit");
      expect(answers.short).toBe("cluster 10.96.12.34:80");
      expect(out.opened).not.toContain("10.96.0.1:443");
      // Neither range has a route in a bare namespace: both went through loopback routes.
      expect(out.unrouted).toEqual(["10.96.0.0/16", "10.244.0.0/24"]);
      expect(out.during.nft).toContain("table ip ktctl_unit0001");
      if (mode === "system") expect(out.during.resolv).toContain("nameserver 127.19.0.53");
      else expect(out.during.hosts).toContain("10.96.50.1\techo.demo2 echo.demo2.svc echo.demo2.svc.cluster.local");
      // Restored byte for byte, and the bind-mounted files are the namespace's own.
      expect(out.after).toEqual(out.before);
      expect(out.before.resolv).toBe(RESOLV);
      expect(out.before.hosts).toBe(HOSTS);
      expect(await Bun.file(join(etc, "resolv.conf")).text()).toBe(RESOLV);
      expect(await Bun.file(join(etc, "hosts")).text()).toBe(HOSTS);
    });
  }
});
