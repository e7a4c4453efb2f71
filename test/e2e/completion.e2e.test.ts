// Shell completion asks the real cluster, from the laptop, for the values kubectl completes.

import { beforeAll, describe, expect, test } from "bun:test";
import { DEMO_NS, KTCTL, KUBECONFIG, inLaptop, requireCluster, run } from "./harness.ts";

const candidates = async (...words: string[]) => {
  const r = await run(inLaptop([...KTCTL, "__complete", "--", "--kubeconfig", KUBECONFIG, ...words]));
  expect(r.code).toBe(0);
  return r.stdout.trim().split("\n").filter(Boolean);
};

beforeAll(requireCluster);

describe("completion against the cluster", () => {
  test("namespaces after -n", async () => {
    expect(await candidates("-n", "demo")).toEqual(expect.arrayContaining([DEMO_NS, "demo2"]));
  });
  test("services of the namespace for exchange and mesh, workloads by kind for forward", async () => {
    expect(await candidates("-n", DEMO_NS, "exchange", "")).toContain("echo");
    expect(await candidates("-n", DEMO_NS, "mesh", "ec")).toContain("echo");
    expect(await candidates("-n", DEMO_NS, "forward", "deployment/")).toContain("deployment/echo");
    expect(await candidates("-n", DEMO_NS, "forward", "pod/tool")).toEqual([expect.stringMatching(/^pod\/toolbox/)]);
  });
  test("contexts of the kubeconfig", async () => {
    expect((await candidates("--context", "")).length).toBeGreaterThan(0);
  });
  test("an unreachable kubeconfig offers no names from the cluster and does not fail", async () => {
    const r = await run(inLaptop([...KTCTL, "__complete", "--", "--kubeconfig", "/nonexistent", "exchange", ""]));
    expect(r.code).toBe(0);
    // Only what needs no cluster: the target kinds.
    expect(r.stdout.trim().split("\n")).toEqual(["deployment/", "pod/", "svc/"]);
    expect(r.stderr.trim()).toBe("");
  });
});
