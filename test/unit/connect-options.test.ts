import { describe, expect, test } from "bun:test";
import { ExitCode, KtctlError } from "../../core/errors.ts";
import { formatCidr } from "../../plugins/connect/net/cidr.ts";
import { parseConnectOptions } from "../../plugins/connect/options.ts";
import plugin from "../../plugins/connect/index.ts";
import { connectApi } from "./net-support.ts";

const { errors } = connectApi;
const linuxRoot = { platform: "linux", isRoot: true };
const parse = (args: Record<string, unknown>, host = linuxRoot) => parseConnectOptions(args, errors, host);

describe("connect options", () => {
  test("defaults: system as root on Linux, proxy otherwise", () => {
    expect(parse({})).toMatchObject({ mode: "system", dnsMode: "auto", proxyPort: 2223, clusterDomain: "cluster.local", disablePodIp: false, via: "shadow", dryRun: false });
    expect(parse({}, { platform: "linux", isRoot: false }).mode).toBe("proxy");
    expect(parse({}, { platform: "darwin", isRoot: true }).mode).toBe("proxy");
    expect(parse({}, { platform: "win32", isRoot: true }).mode).toBe("proxy");
  });

  test("kt-connect's hosts:<ns,...> form; system + hosts DNS is hosts mode", () => {
    expect(parse({ dnsMode: "hosts:demo,demo2" })).toMatchObject({ mode: "hosts", dnsMode: "hosts", extraNamespaces: ["demo", "demo2"] });
    expect(parse({ mode: "system", dnsMode: "hosts" }).mode).toBe("hosts");
    expect(parse({ dnsMode: "resolved" }).dnsMode).toBe("resolved");
  });

  test("ranges, port, domain", () => {
    const o = parse({ includeIps: "172.30.0.0/16", excludeIps: "10.96.0.0/24, 192.168.1.1", proxyPort: "0", clusterDomain: "Corp.Internal." });
    expect(o.include.map(formatCidr)).toEqual(["172.30.0.0/16"]);
    expect(o.exclude.map(formatCidr)).toEqual(["10.96.0.0/24", "192.168.1.1/32"]);
    expect(o.proxyPort).toBe(0);
    expect(o.clusterDomain).toBe("corp.internal");
    expect(parse({ via: "pod" }).via).toBe("pod");
  });

  test("refusals are usage errors that name the flag", () => {
    const refused = (args: Record<string, unknown>, text: string) => {
      let error: unknown;
      try {
        parse(args);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(KtctlError);
      expect((error as KtctlError).exitCode).toBe(ExitCode.usage);
      expect((error as KtctlError).message).toContain(text);
    };
    refused({ mode: "tun2socks" }, 'invalid --mode "tun2socks"');
    refused({ dnsMode: "podDNS" }, 'invalid --dnsMode "podDNS"');
    refused({ dnsMode: "hosts:" }, "expected hosts:NAMESPACE");
    refused({ dnsMode: "hosts:Bad_NS" }, "expected hosts:NAMESPACE");
    refused({ mode: "hosts", dnsMode: "resolvconf" }, "cannot be combined");
    refused({ mode: "proxy", dnsMode: "none" }, "no effect with --mode proxy");
    refused({ proxyPort: "70000" }, 'invalid --proxyPort "70000"');
    refused({ proxyPort: "x" }, 'invalid --proxyPort "x"');
    refused({ excludeIps: "10.0.0.0/40" }, 'invalid --excludeIps "10.0.0.0/40"');
    refused({ clusterDomain: "bad domain" }, "invalid --clusterDomain");
    refused({ via: "pods" }, 'invalid --via "pods": expected shadow or pod');
  });

  test("the plugin follows the contract: name, API version, a lazy command", async () => {
    expect(plugin.name).toBe("connect");
    expect(plugin.apiVersion).toBe(1);
    const factory = await plugin.commands.connect();
    expect(typeof factory).toBe("function");
  });
});
