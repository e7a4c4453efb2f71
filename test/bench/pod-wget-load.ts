// The load the exchange benchmarks put on a service from inside the cluster: busybox `wget`s from
// the toolbox pod, a new connection (and a new process) per request, in sequential loops.
import { DEMO_NS, runInPod } from "../e2e/harness.ts";

export interface WgetLoad {
  /** Requests made: `total` rounded up to a multiple of `parallel`. */
  requests: number;
  rps: number;
  /** Wall time per request of one loop. */
  meanMs: number;
  failures: number;
}

/** `total` requests to `url` in `parallel` loops; wall time by the pod's clock (/proc/uptime, 10 ms). */
export async function wgetLoad(url: string, total: number, parallel: number): Promise<WgetLoad> {
  const each = Math.ceil(total / parallel);
  const script = `
    one() { i=0; f=0; while [ $i -lt ${each} ]; do wget -qO- ${url} >/dev/null 2>&1 || f=$((f+1)); i=$((i+1)); done; echo $f; }
    start=$(cut -d' ' -f1 /proc/uptime)
    for p in $(seq ${parallel}); do one > /tmp/ktctl-bench-$p & done; wait
    end=$(cut -d' ' -f1 /proc/uptime)
    echo "$start $end $(cat /tmp/ktctl-bench-* | awk '{s+=$1} END {print s}')"; rm -f /tmp/ktctl-bench-*`;
  const r = await runInPod(["sh", "-c", script], "toolbox", DEMO_NS, { timeoutMs: 600_000 });
  const [start, end, failures] = r.stdout.trim().split(/\s+/).map(Number) as [number, number, number];
  const seconds = end - start;
  const requests = each * parallel;
  return { requests, rps: requests / seconds, meanMs: (seconds * 1000 * parallel) / requests, failures };
}
