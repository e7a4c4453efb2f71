// `ktctl version` against the real cluster: the shadow image on the node, shadows of another
// version flagged, and a cluster that does not answer reported without delay. Uses a namespace of
// its own, so no other test's shadows are involved.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_SHADOW_IMAGE, VERSION } from "../../core/protocol/version.ts";
import { inLaptop, KTCTL, ktctlInLaptop, kubectl, kubectlOk, KUBECONFIG, requireCluster, run } from "./harness.ts";

const NS = "ktctl-version-e2e";
const OLD_SHADOW = {
  apiVersion: "v1",
  kind: "Pod",
  metadata: {
    name: "ktctl-old-tunnel",
    namespace: NS,
    labels: { "ktctl.io/managed-by": "ktctl", "ktctl.io/role": "tunnel", "ktctl.io/session": "old" },
    annotations: { "ktctl.io/version": "0.0.1" },
  },
  // Never pulled: the pod only has to exist, as a shadow left by an older ktctl would.
  spec: { containers: [{ name: "shadow", image: "docker.io/ktctl/shadow:0.0.1", imagePullPolicy: "Never" }] },
};

beforeAll(async () => {
  await requireCluster();
  await kubectl(["delete", "namespace", NS, "--ignore-not-found", "--wait=true"]);
  await kubectlOk(["create", "namespace", NS]);
});
afterAll(async () => {
  await kubectl(["delete", "namespace", NS, "--ignore-not-found", "--wait=false"]);
});

describe("ktctl version with a kubeconfig", () => {
  test("the image this ktctl uses is on the node; no shadows, no warning", async () => {
    const r = await run(ktctlInLaptop(["version", "-n", NS]));
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`shadow image    ${DEFAULT_SHADOW_IMAGE}`);
    expect(r.stdout).toMatch(new RegExp(`^cluster +context \\S+, namespace ${NS}$`, "m"));
    expect(r.stdout).toMatch(/^image pullable +yes \(present on 1 of 1 node\)$/m);
    expect(r.stdout).toMatch(/^shadows +none in the namespace$/m);
    expect(r.stderr).toBe("");
  });

  test("a shadow of another ktctl version is listed with a warning", async () => {
    await run(["kubectl", "--kubeconfig", KUBECONFIG, "apply", "-f", "-"], { stdin: JSON.stringify(OLD_SHADOW) });
    const r = await run(ktctlInLaptop(["version", "-n", NS]));
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ {2}ktctl-old-tunnel {2}tunnel {2}ktctl 0\.0\.1 {2}docker\.io\/ktctl\/shadow:0\.0\.1 {2}\S+$/m);
    expect(r.stderr).toBe(`ktctl: warning: shadow ktctl-old-tunnel is from ktctl 0.0.1, this is ktctl ${VERSION}: end its session (ktctl clean) before mixing versions\n`);
    const json = JSON.parse((await run(ktctlInLaptop(["version", "-n", NS, "-o", "json"]))).stdout);
    expect(json.cluster.shadows).toEqual([expect.objectContaining({ name: "ktctl-old-tunnel", version: "0.0.1" })]);
    expect(json.cluster.image.pullable).toBe("yes");
  });

  test("--client does not look at the cluster; an unreachable cluster is a line, not a failure", async () => {
    const client = await run(ktctlInLaptop(["version", "--client", "-n", NS]));
    expect(client.stdout).not.toContain("cluster");
    const dir = await mkdtemp(join(tmpdir(), "ktctl-version-"));
    try {
      const config = (await Bun.file(KUBECONFIG).text()).replace(/server: \S+/g, "server: https://127.0.0.1:1");
      await Bun.write(join(dir, "kubeconfig"), config);
      const started = performance.now();
      const r = await run(inLaptop([...KTCTL, "--kubeconfig", join(dir, "kubeconfig"), "version"]));
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^cluster +unreachable \(.+\)$/m);
      expect(performance.now() - started).toBeLessThan(6000);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
