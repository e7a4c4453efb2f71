import { describe, expect, test } from "bun:test";
import {
  cidrBounds,
  cidrContains,
  formatCidr,
  normalizeCidrs,
  parseCidr,
  parseCidrList,
  parseIPv4,
  subtractCidrs,
  tryParseCidr,
} from "../../plugins/connect/net/cidr.ts";
import {
  apiServerAddresses,
  captureRanges,
  podCidrsFromNodes,
  podCidrsFromPodIps,
  serviceCidrsFromMessage,
  serviceCidrsFromObjects,
} from "../../plugins/connect/net/cluster-cidrs.ts";
import { connectApi } from "./net-support.ts";

const cidrs = (...texts: string[]) => texts.map((t) => parseCidr(t));
const texts = (list: { base: number; prefix: number }[]) => list.map(formatCidr);

describe("cidr arithmetic", () => {
  test("parsing", () => {
    expect(parseIPv4("10.96.0.1")).toBe(0x0a600001);
    expect(parseIPv4("256.1.1.1")).toBeUndefined();
    expect(parseIPv4("01.1.1.1")).toBeUndefined();
    expect(formatCidr(parseCidr("10.96.12.34/16"))).toBe("10.96.0.0/16");
    expect(formatCidr(parseCidr("192.168.1.7"))).toBe("192.168.1.7/32");
    expect(tryParseCidr("10.0.0.0/33")).toBeUndefined();
    expect(tryParseCidr("fd00::/8")).toBeUndefined();
    expect(() => parseCidrList("10.0.0.0/8, nonsense", "--excludeIps", connectApi.errors)).toThrow('invalid --excludeIps "nonsense"');
    expect(texts(parseCidrList("10.1.0.0/16,,192.168.3.4", "--includeIps", connectApi.errors))).toEqual(["10.1.0.0/16", "192.168.3.4/32"]);
  });

  test("containment and normalisation", () => {
    expect(cidrContains(parseCidr("10.96.0.0/16"), parseIPv4("10.96.255.255")!)).toBe(true);
    expect(cidrContains(parseCidr("10.96.0.0/16"), parseIPv4("10.97.0.0")!)).toBe(false);
    expect(texts(normalizeCidrs(cidrs("10.96.1.0/24", "10.96.0.0/16", "10.96.0.0/16", "0.0.0.0/0")))).toEqual(["0.0.0.0/0"]);
    expect(texts(normalizeCidrs(cidrs("10.244.0.0/24", "10.96.0.0/16")))).toEqual(["10.96.0.0/16", "10.244.0.0/24"]);
  });

  test("subtracting a hole leaves the smallest set of ranges around it", () => {
    expect(texts(subtractCidrs(cidrs("10.96.0.0/16"), cidrs("10.96.0.1/32")))).toEqual([
      "10.96.0.0/32",
      "10.96.0.2/31",
      "10.96.0.4/30",
      "10.96.0.8/29",
      "10.96.0.16/28",
      "10.96.0.32/27",
      "10.96.0.64/26",
      "10.96.0.128/25",
      "10.96.1.0/24",
      "10.96.2.0/23",
      "10.96.4.0/22",
      "10.96.8.0/21",
      "10.96.16.0/20",
      "10.96.32.0/19",
      "10.96.64.0/18",
      "10.96.128.0/17",
    ]);
    expect(texts(subtractCidrs(cidrs("10.96.0.0/16", "10.244.0.0/24"), cidrs("10.0.0.0/8")))).toEqual([]);
    expect(texts(subtractCidrs(cidrs("10.244.0.0/24"), cidrs("192.168.0.0/16")))).toEqual(["10.244.0.0/24"]);
  });

  test("bounds for route syntaxes", () => {
    expect(cidrBounds(parseCidr("10.96.0.0/16"))).toEqual({ first: "10.96.0.0", last: "10.96.255.255", mask: "255.255.0.0" });
  });
});

describe("cluster ranges", () => {
  test("the service range from the API server's refusal of a foreign cluster IP", () => {
    // The wording of kube-apiserver (legacy allocator and ServiceCIDR allocator).
    const legacy =
      'Service "ktctl-range-probe-x" is invalid: spec.clusterIPs: Invalid value: []string{"203.0.113.1"}: failed to allocate IP 203.0.113.1: provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/16';
    expect(texts(serviceCidrsFromMessage(legacy))).toEqual(["10.96.0.0/16"]);
    // Verbatim from kube-apiserver 1.34 (test/cluster), through core/kube's error text.
    const v134 =
      'create services failed: The Service "ktctl-range-probe-wpsm5" is invalid: spec.clusterIPs: Invalid value: ["203.0.113.1"]: failed to allocate IP 203.0.113.1: the provided IP (203.0.113.1) is not in the valid range. The range of valid IPs is 10.96.0.0/16';
    expect(texts(serviceCidrsFromMessage(v134))).toEqual(["10.96.0.0/16"]);
    const multi = "spec.clusterIPs: Invalid value: \"203.0.113.1\": failed to allocate IP 203.0.113.1: the provided IP (203.0.113.1) is not in the valid range. The range of valid IPs is 10.96.0.0/16, 10.100.0.0/24";
    expect(texts(serviceCidrsFromMessage(multi))).toEqual(["10.96.0.0/16", "10.100.0.0/24"]);
    expect(serviceCidrsFromMessage("forbidden: cannot create services in namespace demo (RBAC)")).toEqual([]);
  });

  test("ServiceCIDR objects and node pod ranges; IPv6 and terminating ranges ignored", () => {
    const objects = [
      { spec: { cidrs: ["10.96.0.0/16", "fd00:10:96::/108"] } },
      { spec: { cidrs: ["10.100.0.0/24"] } },
      { metadata: { deletionTimestamp: "2025-01-01T00:00:00Z" }, spec: { cidrs: ["10.200.0.0/24"] } },
    ];
    expect(texts(serviceCidrsFromObjects(objects))).toEqual(["10.96.0.0/16", "10.100.0.0/24"]);
    const nodes = [{ spec: { podCIDR: "10.244.0.0/24", podCIDRs: ["10.244.0.0/24", "fd00:10:244::/64"] } }, { spec: { podCIDR: "10.244.1.0/24" } }, { spec: {} }];
    expect(texts(podCidrsFromNodes(nodes))).toEqual(["10.244.0.0/24", "10.244.1.0/24"]);
  });

  test("pod-IP fallback: /16 around pod IPs, host-network pods left out", () => {
    const pods = [
      { status: { podIP: "192.168.5.9", podIPs: [{ ip: "192.168.5.9" }] } },
      { status: { podIP: "192.168.77.3" } },
      { spec: { hostNetwork: true }, status: { podIP: "10.0.0.5" } },
      { status: {} },
    ];
    expect(texts(podCidrsFromPodIps(pods))).toEqual(["192.168.0.0/16"]);
  });

  test("what is captured: the API server is never, --excludeIps holes, --includeIps added, --disablePodIp", () => {
    const ranges = { serviceCidrs: cidrs("10.96.0.0/16"), podCidrs: cidrs("10.244.0.0/24"), serviceSource: "dry-run-message", podSource: "node-pod-cidrs" } as const;
    const plan = captureRanges({ ranges, disablePodIp: false, include: cidrs("172.30.0.0/16"), exclude: cidrs("10.96.9.0/24", "192.168.0.0/16"), apiServerIps: ["10.96.0.1", "10.200.0.1"] });
    expect(texts(plan.capture)).toEqual(["10.96.0.0/16", "10.244.0.0/24", "172.30.0.0/16"]);
    // Holes outside every captured range are pointless rules: left out.
    expect(texts(plan.exclude)).toEqual(["10.96.0.1/32", "10.96.9.0/24"]);
    const noPods = captureRanges({ ranges, disablePodIp: true, include: [], exclude: [], apiServerIps: [] });
    expect(texts(noPods.capture)).toEqual(["10.96.0.0/16"]);
  });

  test("API server address from the kubeconfig URL", async () => {
    expect(await apiServerAddresses("https://10.200.0.1:6443")).toEqual(["10.200.0.1"]);
    expect(await apiServerAddresses("https://api.example.test:6443", async () => ["192.0.2.10", "fe80::1"])).toEqual(["192.0.2.10"]);
    expect(await apiServerAddresses("https://[fd00::1]:6443")).toEqual([]);
    expect(await apiServerAddresses("https://gone.example.test", async () => Promise.reject(new Error("ENOTFOUND")))).toEqual([]);
  });
});
