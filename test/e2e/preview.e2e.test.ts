// preview against the real cluster: a new service backed by the shadow, served by the laptop,
// there during the session and gone after it, however it ends.

import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { eventually, kubectl, kubectlJson, requireCluster, run } from "./harness.ts";
import { LAPTOP_ANSWER, expectLaptopAnswers, leftovers, runKtctl, snapshot, startKtctl, startLaptopServer, stopAllKtctl, tempHome } from "./exchange-harness.ts";

const LOCAL_PORT = 28070;
const TEST_TIMEOUT_MS = 120_000;
const UP = /preview demo\/(\S+) is up \(session ([a-z0-9]+)\)/;

const { home, remove } = tempHome("preview");
let server: { stop(): Promise<void> };

beforeAll(async () => {
  await requireCluster();
  server = await startLaptopServer(LOCAL_PORT);
}, TEST_TIMEOUT_MS);

afterEach(() => stopAllKtctl(), TEST_TIMEOUT_MS);

afterAll(async () => {
  await server?.stop();
  remove();
});

async function serviceGone(name: string, sessionId: string) {
  await eventually(async () => {
    const r = await kubectl(["-n", "demo", "get", "service", name, "-o", "name"]);
    if (r.code === 0) throw new Error(`service ${name} still there`);
    const left = await leftovers(sessionId);
    if (left.length) throw new Error(`left behind: ${left.join(", ")}`);
  }, 40_000);
}

describe("preview", () => {
  test("a new service answered by the laptop; Ctrl-C removes it", async () => {
    const k = startKtctl(["preview", "web-preview", "--expose", `${LOCAL_PORT}:80`], home);
    const [, name, id] = await k.waitFor(UP);
    expect(name).toBe("web-preview");
    const service = await kubectlJson(["-n", "demo", "get", "service", "web-preview"]);
    expect(service.metadata.labels["ktctl.io/managed-by"]).toBe("ktctl");
    expect(service.spec.type).toBe("ClusterIP");
    await expectLaptopAnswers("web-preview.demo");
    k.proc.kill("SIGINT");
    expect(await k.exited).toBe(130);
    await serviceGone("web-preview", id!);
  }, TEST_TIMEOUT_MS);

  test("--external falls back to NodePort where no load balancer exists, and prints the address", async () => {
    const k = startKtctl(["preview", "web-external", "--external", "--lbWaitTime", "2", "--expose", `${LOCAL_PORT}:8080`], home);
    const [, , id] = await k.waitFor(UP);
    const service = await kubectlJson(["-n", "demo", "get", "service", "web-external"]);
    expect(service.spec.type).toBe("NodePort");
    const nodePort = service.spec.ports[0].nodePort;
    expect(k.output()).toContain(`from outside the cluster: 10.200.0.1:${nodePort}`);
    await expectLaptopAnswers("web-external.demo:8080");
    // From outside the cluster (this host, not a pod): the node port answers with the laptop too.
    await eventually(async () => {
      const r = await run(["curl", "-s", "--max-time", "3", `http://10.200.0.1:${nodePort}/`]);
      if (JSON.parse(r.stdout || "{}").pod !== LAPTOP_ANSWER) throw new Error(`node port answered ${r.code}: ${r.stdout}`);
    }, 20_000);
    k.proc.kill("SIGTERM");
    expect(await k.exited).toBe(143);
    await serviceGone("web-external", id!);
  }, TEST_TIMEOUT_MS);

  test("SIGKILL of ktctl: the watchdog removes the service", async () => {
    const k = startKtctl(["preview", "web-killed", "--expose", `${LOCAL_PORT}:80`], home);
    const [, , id] = await k.waitFor(UP);
    await expectLaptopAnswers("web-killed.demo");
    k.proc.kill("SIGKILL");
    await k.exited;
    await serviceGone("web-killed", id!);
  }, TEST_TIMEOUT_MS);

  test("--waitLocal waits for the local process before anything changes in the cluster", async () => {
    const late = LOCAL_PORT + 5;
    const k = startKtctl(["preview", "web-late", "--waitLocal", "--expose", `${late}:80`], home);
    await k.waitFor(new RegExp(`waiting for something to listen on 127\\.0\\.0\\.1:${late}`));
    expect((await kubectl(["-n", "demo", "get", "service", "web-late"])).code).not.toBe(0);
    const lateServer = await startLaptopServer(late);
    try {
      const [, , id] = await k.waitFor(UP);
      await expectLaptopAnswers("web-late.demo");
      k.proc.kill("SIGINT");
      expect(await k.exited).toBe(130);
      await serviceGone("web-late", id!);
    } finally {
      await lateServer.stop();
    }
  }, TEST_TIMEOUT_MS);

  test("an existing service ktctl did not create is never replaced", async () => {
    const before = await snapshot();
    const r = await runKtctl(["preview", "echo", "--expose", `${LOCAL_PORT}:80`], home);
    expect(r.code).toBe(10);
    expect(r.output).toContain("service demo/echo already exists and was not created by ktctl; preview will not replace it");
    expect(await snapshot()).toEqual(before);
  }, TEST_TIMEOUT_MS);
});
