// exchange in selector mode against the real cluster, ktctl in the laptop namespace: the toolbox pod
// asks http://echo.demo/ and gets the LAPTOP's answer during the session and the original pods'
// answer after it, however the session ends; the service comes back exactly and nothing is left.

import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { clusterIpOf, eventually, kubectl, kubectlJson, requireCluster, runInLaptop, runInPod } from "./harness.ts";
import {
  echoPodNames,
  expectLaptopAnswers,
  expectRestored,
  processGone,
  runKtctl,
  snapshot,
  startKtctl,
  startLaptopServer,
  stopAllKtctl,
  tempHome,
  watchdogPid,
  type KtctlProcess,
} from "./exchange-harness.ts";

const LOCAL_PORT = 28080;
/** Bounds on whole scenarios; every wait inside has its own, shorter bound. */
const TEST_TIMEOUT_MS = 120_000;
const EXPOSE = ["--expose", `${LOCAL_PORT}:80`];
/** A short lease for the scenarios where everything on the laptop dies. */
const SHORT_LEASE = { KTCTL_SESSION_LEASE_SECONDS: "4" };
const EXCHANGED = /exchanged svc\/echo in [\d.]+s \(selector mode, session ([a-z0-9]+)\)/;

const { home, remove } = tempHome("exchange");
/** Another machine: it knows nothing of this laptop's processes, only the cluster's leases and records. */
const elsewhere = tempHome("exchange-elsewhere");
let server: { stop(): Promise<void> };
let before: Awaited<ReturnType<typeof snapshot>>;

beforeAll(async () => {
  await requireCluster();
  server = await startLaptopServer(LOCAL_PORT);
  before = await snapshot();
}, TEST_TIMEOUT_MS);

afterEach(() => stopAllKtctl(), TEST_TIMEOUT_MS);

afterAll(async () => {
  await server?.stop();
  remove();
  elsewhere.remove();
});

/** Starts an exchange of svc/echo and waits until the laptop answers in the cluster. */
async function exchangeEcho(env: Record<string, string> = {}, extraArgs: string[] = []): Promise<{ k: KtctlProcess; id: string }> {
  const k = startKtctl(["exchange", "echo", ...EXPOSE, ...extraArgs], home, env);
  const [, id] = await k.waitFor(EXCHANGED);
  await expectLaptopAnswers();
  // The service points at the shadow only and carries the undo record.
  const svc = await kubectlJson(["-n", "demo", "get", "service", "echo"]);
  expect(svc.spec.selector).toEqual({ "ktctl.io/session": id!, "ktctl.io/role": "exchange-echo" });
  expect(JSON.parse(svc.metadata.annotations["ktctl.io/undo"]).undo.fields).toEqual([{ path: ["spec", "selector"], value: before.service.selector }]);
  return { k, id: id! };
}

/**
 * Kills ktctl and its watchdog outright, in one go (ktctl would start a new watchdog if it saw the
 * old one die): only the cluster's records are left.
 */
async function killEverything(k: KtctlProcess, id: string): Promise<void> {
  const watchdog = watchdogPid(home, id);
  process.kill(watchdog, "SIGKILL");
  k.proc.kill("SIGKILL");
  await processGone(watchdog);
  await k.exited;
}

describe("exchange: checks before anything changes", () => {
  test("a LOCAL port nothing listens on is refused, naming it", async () => {
    const r = await runKtctl(["exchange", "echo", "--expose", "28999:80"], home);
    expect(r.code).toBe(2);
    expect(r.output).toContain("nothing is listening on 127.0.0.1:28999 on this machine");
    expect(r.output).toContain("--waitLocal");
  }, TEST_TIMEOUT_MS);

  test("a REMOTE port the service does not serve is refused, listing its ports", async () => {
    const r = await runKtctl(["exchange", "svc/echo", "--expose", `${LOCAL_PORT}:8080`], home);
    expect(r.code).toBe(2);
    expect(r.output).toContain("service echo has no port 8080");
    expect(r.output).toContain("ports served: echo: 80 (http -> http), 8081 (http-alt), 9090 (tcp -> tcp)");
    expect(await snapshot()).toEqual(before);
  }, TEST_TIMEOUT_MS);
});

describe("exchange --mode selector", () => {
  test("Ctrl-C (SIGINT) restores the service; --envFile and --connect serve the local process", async () => {
    const envFile = join(home, "echo.env");
    const { k, id } = await exchangeEcho({}, ["--envFile", envFile, "--connect"]);
    // The environment the echo container gets from the kubelet, and the proxy of this session.
    expect(statSync(envFile).mode & 0o777).toBe(0o600);
    const env = Object.fromEntries(
      readFileSync(envFile, "utf8")
        .split("\n")
        .filter((l) => l && !l.startsWith("#"))
        .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );
    expect(env.GREETING).toBe("hello-from-cluster");
    expect(env.DATABASE_URL).toBe("postgres://db.demo:5432/app");
    expect(env.POD_NAMESPACE).toBe("demo");
    expect((await echoPodNames()).includes(env.POD_NAME!)).toBe(true);
    expect(env.ECHO_SERVICE_HOST).toBe(await clusterIpOf("echo"));
    expect(env.ECHO_SERVICE_PORT_HTTP).toBe("80");
    const proxy = k.output().match(/proxy on (127\.0\.0\.1:\d+)/)![1]!;
    expect(env.HTTP_PROXY).toBe(`http://${proxy}`);
    // Not one-way: the laptop reaches the cluster through the same session.
    const through = await runInLaptop(["curl", "-s", "--max-time", "5", "-x", `http://${proxy}`, "http://echo.demo2/"]);
    expect(JSON.parse(through.stdout).namespace).toBe("demo2");
    k.proc.kill("SIGINT");
    expect(await k.exited).toBe(130);
    await expectRestored(before, id);
  }, TEST_TIMEOUT_MS);

  test("SIGTERM restores the service", async () => {
    const { k, id } = await exchangeEcho();
    k.proc.kill("SIGTERM");
    expect(await k.exited).toBe(143);
    await expectRestored(before, id);
  }, TEST_TIMEOUT_MS);

  test("SIGKILL of ktctl: the watchdog restores the service", async () => {
    const { k, id } = await exchangeEcho();
    k.proc.kill("SIGKILL");
    await k.exited;
    await expectRestored(before, id);
  }, TEST_TIMEOUT_MS);

  test("SIGKILL of ktctl and its watchdog: ktctl clean restores once the lease expired", async () => {
    const { k, id } = await exchangeEcho(SHORT_LEASE);
    await killEverything(k, id);
    // Until the lease expires (by the API server's clock) clean leaves the session alone.
    await eventually(async () => {
      const r = await runKtctl(["clean"], elsewhere.home);
      if (r.code !== 0) throw new Error(r.output);
      if (!r.output.includes(`session ${id}: cleaned`)) throw new Error(`not cleaned yet:\n${r.output}`);
    }, 40_000, 500);
    await expectRestored(before, id);
  }, TEST_TIMEOUT_MS);

  test("the shadow pod deleted mid-session: the session heals, then restores", async () => {
    const { k, id } = await exchangeEcho();
    const shadows = await kubectlJson<{ items: any[] }>(["-n", "demo", "get", "pods", "-l", `ktctl.io/session=${id}`]);
    expect(shadows.items.length).toBe(1);
    const first = shadows.items[0].metadata.name;
    await kubectl(["-n", "demo", "delete", "pod", first, "--wait=false"]);
    // A new shadow under the same selector; the laptop answers again through it.
    await eventually(async () => {
      const pods = await kubectlJson<{ items: any[] }>(["-n", "demo", "get", "pods", "-l", `ktctl.io/session=${id}`]);
      const running = pods.items.filter((p) => p.metadata.name !== first && p.status?.phase === "Running");
      if (!running.length) throw new Error("no replacement shadow yet");
    }, 40_000);
    await expectLaptopAnswers(undefined, 40_000);
    k.proc.kill("SIGINT");
    expect(await k.exited).toBe(130);
    await expectRestored(before, id);
  }, TEST_TIMEOUT_MS);
});

/** What each tunnel link carried from the cluster, as ktctl --debug says when the link ends. */
function linkTallies(output: string): { reverse: number; ssh: number }[] {
  return [...output.matchAll(/the link carried \d+ connections from the cluster: (\d+) on reverse streams, (\d+) over SSH/g)].map((m) => ({
    reverse: Number(m[1]),
    ssh: Number(m[2]),
  }));
}

/** `count` requests from the toolbox pod, one after another, each on a new connection. */
async function requestsFromPod(count: number): Promise<void> {
  const r = await runInPod(["sh", "-c", `for i in $(seq ${count}); do wget -qO- http://echo.demo/ | grep -q laptop || exit 1; done`]);
  expect(r.code).toBe(0);
}

describe("exchange: the cluster's connections ride reverse streams", () => {
  test("they do, not SSH channels, and again once a deleted shadow is replaced", async () => {
    const { k, id } = await exchangeEcho({}, ["--debug"]);
    expect(k.output()).toContain("reverse streams)");
    await requestsFromPod(20);
    const first = (await kubectlJson<{ items: any[] }>(["-n", "demo", "get", "pods", "-l", `ktctl.io/session=${id}`])).items[0].metadata.name;
    await kubectl(["-n", "demo", "delete", "pod", first, "--wait=false"]);
    // The link to the deleted shadow ends, saying what it carried: everything sequential rode reverse streams.
    await eventually(async () => {
      if (linkTallies(k.output()).length === 0) throw new Error("the first link has not ended yet");
    }, 40_000);
    const [firstLink] = linkTallies(k.output());
    expect(firstLink!.reverse).toBeGreaterThanOrEqual(20);
    expect(firstLink!.ssh).toBe(0);
    await expectLaptopAnswers(undefined, 40_000);
    // The new link's pool may be a moment behind its first connections (they fall back to SSH);
    // sequential requests after that all find a waiting stream.
    await requestsFromPod(20);
    k.proc.kill("SIGINT");
    expect(await k.exited).toBe(130);
    const tallies = linkTallies(k.output());
    expect(k.output()).toMatch(/tunnel: reconnected after \d+ ms \(shadow \S+ on \S+, direct streams, reverse streams\)/);
    expect(tallies.at(-1)!.reverse).toBeGreaterThanOrEqual(20);
    await expectRestored(before, id);
  }, TEST_TIMEOUT_MS);

  test("KTCTL_TUNNEL_REVERSE=0: the same traffic over SSH channels, as with an older shadow", async () => {
    const { k, id } = await exchangeEcho({ KTCTL_TUNNEL_REVERSE: "0" }, ["--debug"]);
    expect(k.output()).not.toContain("reverse streams");
    await requestsFromPod(10);
    k.proc.kill("SIGINT");
    expect(await k.exited).toBe(130);
    const [tally] = linkTallies(k.output());
    expect(tally!.reverse).toBe(0);
    expect(tally!.ssh).toBeGreaterThanOrEqual(10);
    await expectRestored(before, id);
  }, TEST_TIMEOUT_MS);
});

describe("exchange is exclusive", () => {
  test("a second session is refused with the owner and age; a dead owner is taken over cleanly", async () => {
    const first = await exchangeEcho(SHORT_LEASE);
    const refused = await runKtctl(["exchange", "echo", ...EXPOSE], elsewhere.home);
    expect(refused.code).toBe(10);
    expect(refused.output).toMatch(new RegExp(`service demo/echo is already taken by \\S+@\\S+ \\(session ${first.id}, exchange, started \\d+s ago\\)`));

    await killEverything(first.k, first.id);
    // Once the dead session's lease expires, the next exchange restores it first and takes over.
    let second: KtctlProcess | undefined;
    await eventually(async () => {
      const attempt = startKtctl(["exchange", "echo", ...EXPOSE], elsewhere.home);
      const outcome = await attempt.waitFor(EXCHANGED, 60_000).then(
        () => "started",
        () => "exited",
      );
      if (outcome === "exited") throw new Error(attempt.output());
      second = attempt;
    }, 40_000, 500);
    const [, secondId] = await second!.waitFor(EXCHANGED);
    expect(second!.output()).toContain(`session ${first.id} of`);
    expect(secondId).not.toBe(first.id);
    await expectLaptopAnswers();
    second!.proc.kill("SIGINT");
    expect(await second!.exited).toBe(130);
    await expectRestored(before, first.id);
    await expectRestored(before, secondId!);
  }, TEST_TIMEOUT_MS);
});

describe("recover", () => {
  test("puts the service back from the cluster's records alone", async () => {
    const { k, id } = await exchangeEcho(SHORT_LEASE);
    await killEverything(k, id);
    const alive = await runKtctl(["recover", "echo"], elsewhere.home);
    expect(alive.code).toBe(10);
    expect(alive.output).toContain(`is held by`);
    expect(alive.output).toContain(`session ${id}`);
    // No journal needed: the undo record on the service is enough.
    const forced = await runKtctl(["recover", "echo", "--force"], elsewhere.home);
    expect(forced.code).toBe(0);
    expect((await snapshot()).service).toEqual(before.service);
    // The dead session's shadow and lease go with clean once its lease expires.
    await eventually(async () => {
      const r = await runKtctl(["clean"], elsewhere.home);
      if (!r.output.includes(`session ${id}: cleaned`)) throw new Error(`not cleaned yet:\n${r.output}`);
    }, 40_000, 500);
    await expectRestored(before, id);
    const nothing = await runKtctl(["recover", "echo"], elsewhere.home);
    expect(nothing.code).toBe(0);
    expect(nothing.output).toContain("carries no ktctl record");
  }, TEST_TIMEOUT_MS);
});
