// `ktctl forward` from the laptop, straight to the pods (the default) or through the shadow's tunnel
// (--via shadow): services, deployments (following a replaced pod), several ports, a port only the
// pod's loopback serves, and nothing left behind however it ends.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  DEMO_NS,
  eventually,
  kubectlOk,
  leftovers,
  podsOf,
  requireCluster,
  runInLaptop,
  startKtctl,
} from "./harness.ts";

beforeAll(requireCluster);
afterAll(async () => {
  // Whatever a failed test left, the next file must not inherit it.
  await eventually(async () => expect(await leftovers()).toEqual([]), 30_000);
});

const curlJson = async (url: string) => {
  const r = await runInLaptop(["curl", "-sf", "-m", "5", url]);
  if (r.code !== 0) throw new Error(`curl ${url}: exit ${r.code} ${r.stderr}`);
  return JSON.parse(r.stdout);
};

describe("forward", () => {
  test("svc/echo with two ports: HTTP and plain TCP answer on the laptop; Ctrl-C removes everything", async () => {
    const ktctl = startKtctl(["-n", DEMO_NS, "forward", "svc/echo", "18080:80", "19090:9090"]);
    try {
      await ktctl.waitForOutput(/Forwarding 127\.0\.0\.1:19090/);
      const answer = await curlJson("http://127.0.0.1:18080/through-ktctl");
      expect(answer.name).toBe("echo");
      expect(answer.path).toBe("/through-ktctl");
      const tcp = await runInLaptop(["sh", "-c", "printf 'ping-over-tunnel' | timeout 5 socat - TCP:127.0.0.1:19090,shut-down"]);
      expect(tcp.stdout).toBe("ping-over-tunnel");
      // Straight to the pods, as kubectl: no shadow pod, only the session's Lease (for status and clean).
      expect(await leftovers()).toEqual([expect.stringMatching(/^lease\.coordination\.k8s\.io\//)]);
      expect(ktctl.output()).not.toContain("Starting a shadow pod");
    } finally {
      expect(await ktctl.stop("SIGINT")).toBe(130);
    }
    await eventually(async () => expect(await leftovers()).toEqual([]), 20_000);
  });

  test("deployment/echo follows the pods when they are replaced", async () => {
    const ktctl = startKtctl(["-n", DEMO_NS, "forward", "deployment/echo", "18081:8080"]);
    try {
      await ktctl.waitForOutput(/Forwarding 127\.0\.0\.1:18081/);
      const before = await curlJson("http://127.0.0.1:18081/");
      const oldPods = (await podsOf("echo")).map((p) => p.name);
      expect(oldPods).toContain(before.pod);
      // Replace every pod of the deployment, as a rollout would.
      await kubectlOk(["-n", DEMO_NS, "rollout", "restart", "deployment/echo"]);
      await kubectlOk(["-n", DEMO_NS, "rollout", "status", "deployment/echo", "--timeout=90s"], { timeoutMs: 100_000 });
      const after = await eventually(async () => {
        const a = await curlJson("http://127.0.0.1:18081/");
        if (oldPods.includes(a.pod)) throw new Error(`still answered by old pod ${a.pod}`);
        return a;
      }, 30_000);
      expect(after.name).toBe("echo");
    } finally {
      await ktctl.stop("SIGTERM");
    }
    await eventually(async () => expect(await leftovers()).toEqual([]), 20_000);
  });

  test("SIGKILL of ktctl: the watchdog removes the shadow and the session lease", async () => {
    const ktctl = startKtctl(["-n", DEMO_NS, "forward", "svc/tcp-echo", "17000:7000", "--via", "shadow"]);
    await ktctl.waitForOutput(/Forwarding 127\.0\.0\.1:17000/);
    expect((await leftovers()).some((name) => name.startsWith("pod/"))).toBe(true);
    await ktctl.stop("SIGKILL");
    const started = Date.now();
    await eventually(async () => expect(await leftovers()).toEqual([]), 30_000);
    console.log(`watchdog cleaned up ${Date.now() - started} ms after SIGKILL`);
  });

  test("a port the pod serves only on its loopback: reached straight to the pod, as kubectl does; the shadow cannot", async () => {
    // busybox httpd in the toolbox pod, bound to 127.0.0.1 only: from the pod's network, not its IP.
    const serve = "mkdir -p /tmp/loopback-only && echo only-on-loopback > /tmp/loopback-only/index.html && httpd -p 127.0.0.1:7781 -h /tmp/loopback-only";
    await kubectlOk(["-n", DEMO_NS, "exec", "toolbox", "--", "sh", "-c", serve]);
    try {
      const direct = startKtctl(["-n", DEMO_NS, "forward", "pod/toolbox", "18083:7781"]);
      try {
        await direct.waitForOutput(/Forwarding 127\.0\.0\.1:18083/);
        const page = await runInLaptop(["curl", "-sf", "-m", "5", "http://127.0.0.1:18083/"]);
        expect(page.stdout.trim()).toBe("only-on-loopback");
      } finally {
        expect(await direct.stop("SIGINT")).toBe(130);
      }
      const viaShadow = startKtctl(["-n", DEMO_NS, "forward", "pod/toolbox", "18084:7781", "--via", "shadow"]);
      try {
        await viaShadow.waitForOutput(/Forwarding 127\.0\.0\.1:18084/);
        const refused = await runInLaptop(["curl", "-sf", "-m", "5", "http://127.0.0.1:18084/"]);
        expect(refused.code).not.toBe(0);
        await viaShadow.waitForOutput(/connection to pod\/toolbox:7781 failed/);
      } finally {
        expect(await viaShadow.stop("SIGINT")).toBe(130);
      }
    } finally {
      await kubectlOk(["-n", DEMO_NS, "exec", "toolbox", "--", "busybox", "killall", "httpd"]);
    }
    await eventually(async () => expect(await leftovers()).toEqual([]), 20_000);
  });

  test("a server that speaks first (a greeting, as SMTP, SSH or MySQL send) reaches a client that sends nothing", async () => {
    // busybox nc runs `echo` per accepted connection: the greeting, then the close.
    await kubectlOk(["-n", DEMO_NS, "exec", "toolbox", "--", "sh", "-c", "nc -ll -p 7782 -e echo greeting-first >/dev/null 2>&1 &"]);
    // Listening before the first connection, not assumed from how long ktctl takes to start.
    await eventually(() => kubectlOk(["-n", DEMO_NS, "exec", "toolbox", "--", "sh", "-c", "netstat -ltn | grep -q ':7782 '"]), 10_000, 200);
    try {
      const ktctl = startKtctl(["-n", DEMO_NS, "forward", "pod/toolbox", "18087:7782"]);
      try {
        await ktctl.waitForOutput(/Forwarding 127\.0\.0\.1:18087/);
        for (let i = 0; i < 3; i++) {
          const heard = await runInLaptop(["sh", "-c", "timeout 5 socat -u TCP:127.0.0.1:18087 -"]);
          expect(heard.stdout.trim()).toBe("greeting-first");
        }
      } finally {
        expect(await ktctl.stop("SIGINT")).toBe(130);
      }
    } finally {
      await kubectlOk(["-n", DEMO_NS, "exec", "toolbox", "--", "busybox", "killall", "nc"]);
    }
  });

  test("a service without a selector (its endpoints written by hand) is reached by its ClusterIP, through the shadow", async () => {
    // Endpoints that name no pod: nothing to port-forward to, so the default path hands it to the shadow.
    const [pod] = await podsOf("echo");
    const manifest = JSON.stringify({
      apiVersion: "v1",
      kind: "List",
      items: [
        { apiVersion: "v1", kind: "Service", metadata: { name: "echo-by-hand", namespace: DEMO_NS }, spec: { ports: [{ port: 80, targetPort: 8080 }] } },
        {
          apiVersion: "discovery.k8s.io/v1",
          kind: "EndpointSlice",
          metadata: { name: "echo-by-hand-1", namespace: DEMO_NS, labels: { "kubernetes.io/service-name": "echo-by-hand" } },
          addressType: "IPv4",
          ports: [{ port: 8080, protocol: "TCP" }],
          endpoints: [{ addresses: [pod!.ip] }],
        },
      ],
    });
    await kubectlOk(["apply", "-f", "-"], { stdin: manifest });
    try {
      const ktctl = startKtctl(["-n", DEMO_NS, "forward", "svc/echo-by-hand", "18086:80"]);
      try {
        await ktctl.waitForOutput(/Forwarding 127\.0\.0\.1:18086 -> service\/echo-by-hand:80 \(\d+\.\d+\.\d+\.\d+\)/);
        const answer = await curlJson("http://127.0.0.1:18086/by-hand");
        expect(answer.pod).toBe(pod!.name);
      } finally {
        expect(await ktctl.stop("SIGINT")).toBe(130);
      }
    } finally {
      await kubectlOk(["-n", DEMO_NS, "delete", "service/echo-by-hand", "endpointslice/echo-by-hand-1", "--ignore-not-found"]);
    }
    await eventually(async () => expect(await leftovers()).toEqual([]), 20_000);
  });

  test("--via with anything but pod or shadow: one line, exit 2, nothing started", async () => {
    await eventually(async () => expect(await leftovers()).toEqual([]), 20_000);
    const bad = startKtctl(["-n", DEMO_NS, "forward", "svc/echo", "18085:80", "--via", "ssh"]);
    expect(await bad.proc.exited).toBe(2);
    expect(bad.output().trim()).toBe('ktctl: --via must be pod or shadow, not "ssh"');
    expect(await leftovers()).toEqual([]);
  });

  test("--via shadow, the shadow pod deleted mid-session: the forward heals with a new one", async () => {
    // Through the shadow (the service by its ClusterIP): its connections depend on the shadow.
    const ktctl = startKtctl(["-n", DEMO_NS, "forward", "svc/echo", "18082:80", "--via", "shadow"]);
    try {
      await ktctl.waitForOutput(/Forwarding 127\.0\.0\.1:18082/);
      await curlJson("http://127.0.0.1:18082/");
      const [shadow] = (await kubectlOk(["-n", DEMO_NS, "get", "pods", "-l", "ktctl.io/managed-by=ktctl", "-o", "name"])).split("\n");
      await kubectlOk(["-n", DEMO_NS, "delete", shadow!, "--wait=false"]);
      const healed = await eventually(() => curlJson("http://127.0.0.1:18082/healed"), 45_000, 500);
      expect(healed.path).toBe("/healed");
    } finally {
      await ktctl.stop("SIGINT");
    }
    await eventually(async () => expect(await leftovers()).toEqual([]), 30_000);
  });
});
