// `ktctl mesh` on the real cluster, ktctl in the laptop namespace, requests from the toolbox pod:
// marked requests reach the developer's laptop and nothing else does, in HTTP/1.1, WebSocket, h2c
// and gRPC; two developers share one service; and whichever way a session ends (Ctrl-C, SIGTERM,
// SIGKILL, a dead laptop found by `ktctl clean`, the router pod deleted under it) the service comes
// back exactly as it was, nothing of ktctl's is left, and the other developer keeps working.

import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { DEMO_NS, eventually, kubectlJson, kubectlOk, requireCluster, waitFor } from "./harness.ts";
import { processGone, runKtctl, startKtctl, stopAllKtctl, tempHome, watchdogPid, type KtctlProcess } from "./exchange-harness.ts";
import {
  MESH_SERVICE,
  ask,
  deployMeshWorkload,
  meshLeftovers,
  meshSessions,
  originalPods,
  removeMeshWorkload,
  serviceState,
  startLaptopService,
  tcpRoundTrip,
  type Protocol,
} from "./mesh-harness.ts";

const PROTOCOLS: Protocol[] = ["http", "ws", "h2c", "grpc"];
const PORT_A = 18081;
const PORT_B = 18082;
const ALICE = { VERSION: "alice-e2e" };
const BOB = { "x-dev": "bob-e2e" };

describe("ktctl mesh", () => {
  const home = tempHome("mesh");
  let laptops: { stop(): Promise<void> }[] = [];
  let before: unknown;

  const startMesh = async (mark: string, port: number, extra: string[] = [], env: Record<string, string> = {}, ktctlHome = home.home) => {
    const k = startKtctl(["mesh", MESH_SERVICE, "--expose", `${port}:80`, "--versionMark", mark, ...extra], ktctlHome, env);
    await k.waitFor(/\bMARK \S/, 120_000);
    return { k, session: k.output().match(/\(session ([a-z][a-z0-9]+)\)/)![1]! };
  };

  /**
   * ktctl reports ready once the service's EndpointSlices name the router; kube-proxy programs
   * that into the node's rules within its sync period, which no API shows, so the first request
   * may still take the old path for a moment.
   */
  const settle = async (headers: Record<string, string>, expected: string, path = "/") => {
    await eventually(async () => {
      const pod = await ask("http", headers, { path });
      if (pod !== expected) throw new Error(`answered by ${pod}`);
    }, 15_000);
  };

  const expectOriginal = async (pod: string) => expect(await originalPods()).toContain(pod);

  /** The service is exactly as before, nothing of the mesh is left, and the original pods answer. */
  const expectRestored = async () => {
    await eventually(async () => {
      const now = await serviceState();
      if (JSON.stringify(now) !== JSON.stringify(before)) throw new Error(`service not restored:\n${JSON.stringify(now)}\n!=\n${JSON.stringify(before)}`);
    }, 40_000);
    await eventually(async () => {
      const left = await meshLeftovers();
      if (left.length) throw new Error(`left behind: ${left.join(", ")}`);
    }, 60_000);
    await expectOriginal(await ask("http", ALICE));
  };

  const stop = async (k: KtctlProcess, signal: "SIGINT" | "SIGTERM") => {
    k.proc.kill(signal);
    return k.exited;
  };

  beforeAll(async () => {
    await requireCluster();
    await deployMeshWorkload();
    laptops = await Promise.all([startLaptopService("laptop-a", PORT_A), startLaptopService("laptop-b", PORT_B)]);
    before = await serviceState();
  }, 180_000);

  // A test that failed half way must not leave its developers in the next test's mesh.
  afterEach(() => stopAllKtctl(), 120_000);

  afterAll(async () => {
    await stopAllKtctl();
    await Promise.all(laptops.map((l) => l.stop()));
    await removeMeshWorkload();
    home.remove();
  }, 120_000);

  test(
    "HTTP/1.1, WebSocket, h2c and gRPC: marked requests reach the laptop, the rest the original pods; Ctrl-C restores",
    async () => {
      const { k } = await startMesh("alice-e2e", PORT_A);
      await settle(ALICE, "laptop-a");
      expect(k.output()).toContain("curl -H 'VERSION: alice-e2e' http://mesh-e2e.demo/");
      for (const protocol of PROTOCOLS) {
        expect(await ask(protocol, ALICE)).toBe("laptop-a");
        await expectOriginal(await ask(protocol));
        await expectOriginal(await ask(protocol, { VERSION: "someone-else" }));
      }
      // Ports the developer did not expose, and plain TCP, stay with the original pods.
      await expectOriginal(await ask("http", ALICE, { port: 8081 }));
      expect(await tcpRoundTrip("hello-tcp")).toBe("hello-tcp");
      expect(await stop(k, "SIGINT")).toBe(130);
      await expectRestored();
    },
    240_000,
  );

  test(
    "two developers with their own marks each get only their own requests; one leaves (SIGTERM), the other keeps working",
    async () => {
      const a = await startMesh("alice-e2e", PORT_A);
      const b = await startMesh("x-dev:bob-e2e", PORT_B);
      await settle(ALICE, "laptop-a");
      expect(new Set(await meshSessions())).toEqual(new Set([a.session, b.session]));
      for (const protocol of PROTOCOLS) {
        expect(await ask(protocol, ALICE)).toBe("laptop-a");
        expect(await ask(protocol, BOB)).toBe("laptop-b");
        await expectOriginal(await ask(protocol));
      }
      // A mark is header AND value: Bob's value under Alice's header is nobody's.
      await expectOriginal(await ask("http", { VERSION: "bob-e2e" }));

      // Bob's requests keep coming while Alice leaves; every one must reach Bob.
      let leaving = true;
      const bobDuringLeave = (async () => {
        const pods: string[] = [];
        while (leaving) pods.push(await ask("http", BOB));
        return pods;
      })();
      expect(await stop(a.k, "SIGTERM")).toBe(143);
      leaving = false;
      const pods = await bobDuringLeave;
      expect(pods.length).toBeGreaterThan(0);
      expect(new Set(pods)).toEqual(new Set(["laptop-b"]));

      expect(await meshSessions()).toEqual([b.session]);
      const svc = await kubectlJson(["-n", DEMO_NS, "get", "service", MESH_SERVICE]);
      expect(svc.metadata.labels["ktctl.io/session"]).toBe(b.session); // Bob holds the mesh now
      for (const protocol of PROTOCOLS) {
        expect(await ask(protocol, BOB)).toBe("laptop-b");
        await expectOriginal(await ask(protocol, ALICE));
      }
      expect(await stop(b.k, "SIGINT")).toBe(130);
      await expectRestored();
    },
    300_000,
  );

  test(
    "two developers starting at the same moment: one creates the mesh, the other joins; a taken mark is refused; both leave at once",
    async () => {
      const [a, b] = await Promise.all([startMesh("alice-e2e", PORT_A), startMesh("x-dev:bob-e2e", PORT_B)]);
      await settle(ALICE, "laptop-a");
      await settle(BOB, "laptop-b");
      expect(new Set(await meshSessions())).toEqual(new Set([a.session, b.session]));
      const routers = await kubectlJson<{ items: any[] }>(["-n", DEMO_NS, "get", "deployments", "-l", `ktctl.io/role=mesh-router-${MESH_SERVICE}`]);
      expect(routers.items.length).toBe(1);
      for (const protocol of ["h2c", "grpc"] as Protocol[]) {
        expect(await ask(protocol, ALICE)).toBe("laptop-a");
        expect(await ask(protocol, BOB)).toBe("laptop-b");
      }

      const taken = await runKtctl(["mesh", MESH_SERVICE, "--expose", "18083:80", "--versionMark", "alice-e2e"], home.home);
      expect(taken.code).toBe(10);
      expect(taken.output).toContain("is already routed for");
      expect(new Set(await meshSessions())).toEqual(new Set([a.session, b.session]));
      expect(await ask("http", ALICE)).toBe("laptop-a");

      const codes = await Promise.all([stop(a.k, "SIGINT"), stop(b.k, "SIGTERM")]);
      expect(codes).toEqual([130, 143]);
      await expectRestored();
    },
    300_000,
  );

  test(
    "SIGKILL: the watchdog takes the dead developer's route out, the other developer is not disturbed",
    async () => {
      const a = await startMesh("alice-e2e", PORT_A);
      const b = await startMesh("x-dev:bob-e2e", PORT_B);
      await settle(BOB, "laptop-b");
      a.k.proc.kill("SIGKILL");
      await a.k.exited;
      await eventually(async () => {
        if ((await meshSessions()).includes(a.session)) throw new Error("the killed session is still in the mesh");
      }, 60_000);
      await eventually(async () => {
        const left = (await meshLeftovers()).filter((name) => name.includes(a.session));
        if (left.length) throw new Error(`left behind: ${left.join(", ")}`);
      }, 60_000);
      await expectOriginal(await ask("http", ALICE));
      await expectOriginal(await ask("grpc", ALICE));
      expect(await ask("http", BOB)).toBe("laptop-b");
      expect(await ask("grpc", BOB)).toBe("laptop-b");
      expect(await stop(b.k, "SIGTERM")).toBe(143);
      await expectRestored();
    },
    300_000,
  );

  test(
    "laptop gone (ktctl and its watchdog killed): marked requests fall back to the original pods, and after the lease expires `ktctl clean` removes the route",
    async () => {
      const lostHome = tempHome("mesh-lost");
      const cleanerHome = tempHome("mesh-cleaner");
      try {
        const a = await startMesh("alice-e2e", PORT_A, [], {}, lostHome.home);
        const b = await startMesh("x-dev:bob-e2e", PORT_B);
        await settle(BOB, "laptop-b");
        // Frozen first, so it cannot start a new watchdog when it sees this one die (and, frozen, it
        // cannot reap the watchdog either: the watchdog is gone only once ktctl is).
        a.k.proc.kill("SIGSTOP");
        const watchdog = watchdogPid(lostHome.home, a.session);
        process.kill(watchdog, "SIGKILL");
        a.k.proc.kill("SIGKILL");
        await a.k.exited;
        await processGone(watchdog);

        // Nobody unwinds Alice now. Her requests must still be answered (by the original pods, once
        // her shadow's listener gives up), and Bob's must not notice anything.
        const killed = performance.now();
        await eventually(async () => expectOriginal(await ask("http", ALICE)), 90_000, 1_000);
        console.log(`mesh e2e: a lost laptop's marked requests reach the original pods ${((performance.now() - killed) / 1000).toFixed(1)} s after it died`);
        expect(await ask("http", BOB)).toBe("laptop-b");
        expect(await meshSessions()).toContain(a.session);

        // `clean` from another machine may act only once the lease has expired by the server's clock.
        await eventually(
          async () => {
            const r = await runKtctl(["clean"], cleanerHome.home);
            if (r.code !== 0) throw new Error(`clean failed: ${r.output}`);
            if ((await meshSessions()).includes(a.session)) throw new Error("lease not expired yet");
          },
          120_000,
          3_000,
        );
        await eventually(async () => {
          const left = (await meshLeftovers()).filter((name) => name.includes(a.session));
          if (left.length) throw new Error(`left behind: ${left.join(", ")}`);
        }, 60_000);
        expect(await ask("http", BOB)).toBe("laptop-b");
        expect(await ask("ws", BOB)).toBe("laptop-b");
        await expectOriginal(await ask("http"));
        expect(await stop(b.k, "SIGINT")).toBe(130);
        await expectRestored();
      } finally {
        lostHome.remove();
        cleanerHome.remove();
      }
    },
    420_000,
  );

  test(
    "router pod deleted mid-session: a new router takes over, the route comes back; a path-prefix route",
    async () => {
      const a = await startMesh("alice-e2e", PORT_A, ["--path", "/api"]);
      await settle(ALICE, "laptop-a", "/api/users");
      await expectOriginal(await ask("http", ALICE, { path: "/web" }));
      const routerPods = await kubectlJson<{ items: any[] }>(["-n", DEMO_NS, "get", "pods", "-l", `ktctl.io/role=mesh-router-${MESH_SERVICE}`]);
      expect(routerPods.items.length).toBe(1);
      const old = routerPods.items[0].metadata.name;
      await kubectlOk(["-n", DEMO_NS, "delete", "pod", old, "--wait=false"]);
      await waitFor([`pod/${old}`, "--for=delete"], DEMO_NS, 60);
      // Only the new router pod is left: it started empty, so the route there was put back by ktctl.
      await eventually(async () => {
        const pod = await ask("http", ALICE, { path: "/api/users" });
        if (pod !== "laptop-a") throw new Error(`answered by ${pod}`);
      }, 90_000, 500);
      const now = await kubectlJson<{ items: any[] }>(["-n", DEMO_NS, "get", "pods", "-l", `ktctl.io/role=mesh-router-${MESH_SERVICE}`]);
      expect(now.items.map((p) => p.metadata.name)).not.toContain(old);
      expect(now.items.length).toBe(1);
      for (const protocol of PROTOCOLS) await expectOriginal(await ask(protocol));
      expect(await ask("grpc", ALICE)).not.toBe("laptop-a"); // gRPC paths are not under /api
      expect(await stop(a.k, "SIGINT")).toBe(130);
      await expectRestored();
    },
    300_000,
  );

  test(
    "manual mode: only the developer's shadow, among the service's pods, labelled with the mark",
    async () => {
      const { k, session } = await startMesh("version:carol-e2e", PORT_A, ["--mode", "manual"]);
      const shadows = await kubectlJson<{ items: any[] }>(["-n", DEMO_NS, "get", "pods", "-l", `ktctl.io/session=${session}`]);
      expect(shadows.items.length).toBe(1);
      const shadow = shadows.items[0];
      expect(shadow.metadata.labels.app).toBe(MESH_SERVICE);
      expect(shadow.metadata.labels.version).toBe("carol-e2e");
      await eventually(async () => {
        const slices = await kubectlJson<{ items: any[] }>(["-n", DEMO_NS, "get", "endpointslices", "-l", `kubernetes.io/service-name=${MESH_SERVICE}`]);
        const addresses = slices.items.flatMap((s) => (s.endpoints ?? []).filter((e: any) => e.conditions?.ready).flatMap((e: any) => e.addresses));
        if (!addresses.includes(shadow.status.podIP)) throw new Error("the shadow is not an endpoint of the service yet");
      }, 60_000);
      expect(JSON.stringify(await serviceState())).toBe(JSON.stringify(before)); // no router, the service untouched
      expect(await stop(k, "SIGINT")).toBe(130);
      await expectRestored();
    },
    240_000,
  );
});
