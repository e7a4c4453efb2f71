// exchange --mode scale against the real cluster: the deployment goes to 0, the shadow carries its
// pod labels and answers for the laptop; on exit the replicas come back (ktctl waits until they are
// ready) and the deployment and service are exactly as before.

import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { kubectlJson, requireCluster } from "./harness.ts";
import {
  echoPodNames,
  expectLaptopAnswers,
  expectRestored,
  snapshot,
  startKtctl,
  startLaptopServer,
  stopAllKtctl,
  tempHome,
  type KtctlProcess,
} from "./exchange-harness.ts";

const LOCAL_PORT = 28090;
const TEST_TIMEOUT_MS = 120_000;
const EXCHANGED = /exchanged deployment\/echo in [\d.]+s \(scale mode, session ([a-z0-9]+)\)/;

const { home, remove } = tempHome("exchange-scale");
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
});

async function exchangeByScaling(): Promise<{ k: KtctlProcess; id: string }> {
  const k = startKtctl(["exchange", "deployment/echo", "--mode", "scale", "--expose", `${LOCAL_PORT}:80`], home);
  const [, id] = await k.waitFor(EXCHANGED);
  await expectLaptopAnswers();
  const deployment = await kubectlJson(["-n", "demo", "get", "deployment", "echo"]);
  expect(deployment.spec.replicas).toBe(0);
  expect(JSON.parse(deployment.metadata.annotations["ktctl.io/undo"]).undo.replicas).toBe(before.deployment.replicas);
  // The service is untouched but for the session's mark; the shadow carries the pod labels.
  const service = await kubectlJson(["-n", "demo", "get", "service", "echo"]);
  expect(service.spec.selector).toEqual(before.service.selector);
  expect(service.metadata.labels["ktctl.io/session"]).toBe(id!);
  const shadows = await kubectlJson<{ items: any[] }>(["-n", "demo", "get", "pods", "-l", `ktctl.io/session=${id}`]);
  expect(shadows.items.map((p) => p.metadata.labels)).toEqual([expect.objectContaining(before.deployment.templateLabels)]);
  expect(await echoPodNames()).toEqual([]);
  return { k, id: id! };
}

describe("exchange --mode scale", () => {
  test("Ctrl-C brings the replicas back, waits until they are ready, then removes the shadow", async () => {
    const { k, id } = await exchangeByScaling();
    k.proc.kill("SIGINT");
    expect(await k.exited).toBe(130);
    // ktctl reported the replicas coming back and exited only once all were ready.
    expect(k.output()).toMatch(new RegExp(`deployment demo/echo: ${before.deployment.replicas}/${before.deployment.replicas} ready`));
    const deployment = await kubectlJson(["-n", "demo", "get", "deployment", "echo"]);
    expect(deployment.status.readyReplicas).toBe(before.deployment.replicas);
    await expectRestored(before, id);
  }, TEST_TIMEOUT_MS);

  test("SIGKILL of ktctl: the watchdog scales the deployment back", async () => {
    const { k, id } = await exchangeByScaling();
    k.proc.kill("SIGKILL");
    await k.exited;
    await expectRestored(before, id, 60_000);
  }, TEST_TIMEOUT_MS);
});
