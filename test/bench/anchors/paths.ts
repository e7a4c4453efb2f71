// Where the benchmark anchors (kt-connect v0.3.7, kubefwd) were built: KTCTL_BENCH_ANCHORS, a cache
// outside the repo filled by test/bench/anchors/build.sh. Nothing of either project is committed.
import { existsSync } from "node:fs";
import { join } from "node:path";

/** The benchmarks' own laptop namespace (test/bench/anchors/netns.sh). */
export const BENCH_LAPTOP_NS = "ktctl-bench-laptop";

export const KT_SHADOW_IMAGE = "ktctl-bench.local/kt-connect-shadow:v0.3.7";
export const KT_ROUTER_IMAGE = "ktctl-bench.local/kt-connect-router:v0.3.7";

/** The anchors cache, or undefined when KTCTL_BENCH_ANCHORS is unset. */
export function anchorsDir(): string | undefined {
  return process.env.KTCTL_BENCH_ANCHORS || undefined;
}

/** The path of one built anchor binary (kt-ktctl, kubefwd), or why it is not there. */
export function anchorBinary(name: "kt-ktctl" | "kubefwd"): { path: string } | { missing: string } {
  const dir = anchorsDir();
  if (!dir) return { missing: "KTCTL_BENCH_ANCHORS is not set (see test/bench/anchors/build.sh)" };
  const path = join(dir, "bin", name);
  return existsSync(path) ? { path } : { missing: `${path} is missing: run KTCTL_BENCH_ANCHORS=${dir} test/bench/anchors/build.sh` };
}

/** Where build.sh leaves kt-connect's images as OCI archives (a restarted test cluster has lost them). */
export const ktImageArchives = (dir: string) => [
  { image: KT_SHADOW_IMAGE, archive: join(dir, "images", "kt-shadow.tar") },
  { image: KT_ROUTER_IMAGE, archive: join(dir, "images", "kt-router.tar") },
];
