import { describe, expect, test } from "bun:test";
import { clusterReport, normalizeImage } from "../../core/cli/version/cluster-report.ts";

const IMAGE = "docker.io/ktctl/shadow:1.0.0";
const node = (...names: string[]) => ({ metadata: { name: "n" }, status: { images: [{ names }] } });
const pod = (name: string, image: string, extra: { version?: string; phase?: string; waiting?: { reason: string; message?: string } } = {}) => ({
  metadata: { name, labels: { "ktctl.io/role": "tunnel", "ktctl.io/session": "s1" }, annotations: (extra.version ? { "ktctl.io/version": extra.version } : {}) as Record<string, string> },
  spec: { containers: [{ image }] },
  status: { phase: extra.phase ?? "Running", containerStatuses: extra.waiting ? [{ state: { waiting: extra.waiting } }] : [] },
});

describe("normalizeImage", () => {
  test("short names are docker.io's, a missing tag is latest", () => {
    expect(normalizeImage("ktctl/shadow:1")).toBe("docker.io/ktctl/shadow:1");
    expect(normalizeImage("busybox")).toBe("docker.io/library/busybox:latest");
    expect(normalizeImage("localhost:5000/shadow")).toBe("localhost:5000/shadow:latest");
    expect(normalizeImage(IMAGE)).toBe(IMAGE);
  });
});

describe("clusterReport", () => {
  test("an image on a node is pullable; no shadows, no warnings", () => {
    expect(clusterReport({ image: IMAGE, version: "1.0.0", nodes: [node("ktctl/shadow:1.0.0"), node("other:1")], pods: [] })).toEqual({
      image: { pullable: "yes", detail: "present on 1 of 2 nodes" },
      shadows: [],
      warnings: [],
    });
  });

  test("on no node: unknown, not a failure; without node access: unknown, saying why", () => {
    expect(clusterReport({ image: IMAGE, version: "1.0.0", nodes: [node("other:1")], pods: [] }).image.pullable).toBe("unknown");
    expect(clusterReport({ image: IMAGE, version: "1.0.0", nodes: { error: "forbidden" }, pods: [] }).image).toEqual({ pullable: "unknown", detail: "cannot list nodes (forbidden)" });
  });

  test("a shadow that cannot pull the image makes it not pullable, with a warning", () => {
    const report = clusterReport({ image: IMAGE, version: "1.0.0", nodes: [], pods: [pod("ktctl-a-tunnel", IMAGE, { version: "1.0.0", phase: "Pending", waiting: { reason: "ImagePullBackOff", message: "not found" } })] });
    expect(report.image).toEqual({ pullable: "no", detail: "ImagePullBackOff: not found" });
    expect(report.shadows[0]!.state).toBe("ImagePullBackOff");
    expect(report.warnings).toEqual([`the shadow image ${IMAGE} cannot be pulled: ImagePullBackOff: not found (load it onto the nodes, or pass --image)`]);
  });

  test("shadows of another version or image are listed with a clear warning", () => {
    const report = clusterReport({
      image: IMAGE,
      version: "1.0.0",
      nodes: [node(IMAGE)],
      pods: [pod("ktctl-old-tunnel", "docker.io/ktctl/shadow:0.9.0"), pod("ktctl-mine-tunnel", "registry.example.com/shadow:1.0.0", { version: "1.0.0" }), pod("ktctl-ok-tunnel", IMAGE, { version: "1.0.0" })],
    });
    expect(report.shadows.map((s) => [s.name, s.version, s.role, s.session])).toEqual([
      ["ktctl-old-tunnel", "0.9.0", "tunnel", "s1"],
      ["ktctl-mine-tunnel", "1.0.0", "tunnel", "s1"],
      ["ktctl-ok-tunnel", "1.0.0", "tunnel", "s1"],
    ]);
    expect(report.warnings).toEqual([
      "shadow ktctl-old-tunnel is from ktctl 0.9.0, this is ktctl 1.0.0: end its session (ktctl clean) before mixing versions",
      `shadow ktctl-mine-tunnel runs registry.example.com/shadow:1.0.0, this ktctl would start ${IMAGE}`,
    ]);
  });
});
