// The test cluster itself: a real node runs pods, CoreDNS answers inside the cluster, and the laptop
// namespace reaches the API server and nothing else. Every other e2e test relies on this boundary.

import { beforeAll, describe, expect, test } from "bun:test";
import {
  API_SERVER,
  DEMO_NS,
  KUBECONFIG,
  clusterIpOf,
  eventually,
  inLaptop,
  kubectlJson,
  laptopCanConnect,
  podsOf,
  requireCluster,
  runInLaptop,
  runInPod,
} from "./harness.ts";

beforeAll(requireCluster);

describe("test cluster", () => {
  test("the node is Ready and the echo Deployment's replicas run", async () => {
    const node = await kubectlJson<any>(["get", "node", "ktctl-node"]);
    const ready = node.status.conditions.find((c: any) => c.type === "Ready");
    expect(ready.status).toBe("True");
    expect((await podsOf("echo")).length).toBe(2);
  });

  test("a pod resolves echo.demo.svc.cluster.local through CoreDNS and reaches it", async () => {
    const lookup = await runInPod(["nslookup", "echo.demo.svc.cluster.local"]);
    expect(lookup.stdout).toContain(await clusterIpOf("echo"));
    const answer = await runInPod(["wget", "-q", "-O", "-", "http://echo.demo.svc.cluster.local/hello"]);
    expect(answer.code).toBe(0);
    expect(JSON.parse(answer.stdout).name).toBe("echo");
  });

  test("a pod reaches another pod by IP and the plain TCP echo service", async () => {
    const [pod] = await podsOf("echo");
    const byIp = await runInPod(["wget", "-q", "-O", "-", `http://${pod!.ip}:8080/`]);
    expect(JSON.parse(byIp.stdout).pod).toBe(pod!.name);
    const tcp = await runInPod(["sh", "-c", "echo ping-tcp | nc -w 2 tcp-echo 7000"]);
    expect(tcp.stdout.trim()).toBe("ping-tcp");
  });
});

describe("laptop boundary", () => {
  test("the API server answers from the laptop", async () => {
    const r = await runInLaptop(["kubectl", "--kubeconfig", KUBECONFIG, "get", "--raw", "/readyz"]);
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe("ok");
    expect(await laptopCanConnect(new URL(API_SERVER).hostname, 6443)).toBe(true);
  });

  test("a pod IP, a ClusterIP and the cluster DNS do not answer from the laptop", async () => {
    const [pod] = await podsOf("echo");
    expect(await laptopCanConnect(pod!.ip, 8080)).toBe(false);
    expect(await laptopCanConnect(await clusterIpOf("echo"), 80)).toBe(false);
    const dns = await runInLaptop(["dig", "+time=1", "+tries=1", "@10.96.0.10", "echo.demo.svc.cluster.local"]);
    expect(dns.stdout).not.toContain("status: NOERROR");
    const byName = await runInLaptop(["getent", "hosts", "echo.demo.svc.cluster.local"]);
    expect(byName.code).not.toBe(0);
  });

  test("kubectl port-forward to a pod works from the laptop", async () => {
    const [pod] = await podsOf("echo");
    const forward = Bun.spawn(
      inLaptop(["kubectl", "--kubeconfig", KUBECONFIG, "-n", DEMO_NS, "port-forward", `pod/${pod!.name}`, "18080:8080"]),
      { stdout: "pipe", stderr: "pipe" },
    );
    try {
      // kubectl prints "Forwarding from" once its listener is up: wait on that line.
      const reader = forward.stdout.getReader();
      let seen = "";
      while (!seen.includes("Forwarding from")) {
        const { value, done } = await reader.read();
        if (done) throw new Error("kubectl port-forward exited early");
        seen += new TextDecoder().decode(value);
      }
      const r = await eventually(async () => {
        const res = await runInLaptop(["curl", "-sf", "http://127.0.0.1:18080/via-port-forward"]);
        if (res.code !== 0) throw new Error(res.stderr);
        return res;
      }, 10_000);
      expect(JSON.parse(r.stdout).pod).toBe(pod!.name);
    } finally {
      forward.kill();
      await forward.exited;
    }
  });
});
