// The data paths against the real API server: the tunnel's direct streams over the SPDY
// port-forward (the default), SSH channels (KTCTL_TUNNEL_DIRECT=0), and the v4 WebSocket
// port-forward that older API servers speak (KTCTL_PORT_FORWARD=v4); and forward's streams straight
// to the pod (SPDY only: on v4 forward falls back to the tunnel). Each must carry bytes intact both ways, keep TCP's
// half-close, and say why a stream failed.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { readdirSync, readlinkSync } from "node:fs";
import type { Duplex } from "node:stream";
import { connectKube } from "../../core/kube/index.ts";
import { DEMO_NS, KUBECONFIG, eventually, leftovers, podsOf, requireCluster, runInLaptop, startKtctl } from "./harness.ts";

const SLOW = 120_000;
const MiB = 1024 * 1024;
const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

beforeAll(requireCluster);
afterAll(async () => {
  await eventually(async () => expect(await leftovers()).toEqual([]), 30_000);
});

/** 4 MiB through the forward's TCP echo port and back, then a half-closed exchange (socat shut-down). */
async function checkForward(env: Record<string, string>, port: number, direct: boolean | undefined, via: "pod" | "shadow" = "shadow"): Promise<void> {
  const ktctl = startKtctl(["--debug", "-n", DEMO_NS, "forward", "svc/echo", `${port}:9090`, "--via", via], env);
  try {
    await ktctl.waitForOutput(new RegExp(`Forwarding 127\\.0\\.0\\.1:${port}`));
    const path = via === "pod" && !env.KTCTL_PORT_FORWARD ? "straight to the pod" : "through the shadow";
    if (path === "through the shadow") {
      // Up front, before the forward is ready: --via shadow, or the warm-up found no SPDY (v4).
      const before = ktctl.output().split("Forwarding")[0]!;
      expect(before).toContain("tunnel: connected");
      if (via === "pod") expect(before).toContain("Starting a shadow pod: the API server's port-forward cannot carry TCP's half-close to the pod (v4 only)");
    }
    const script =
      `f=$(mktemp); head -c ${4 * MiB} /dev/urandom > "$f"; ` +
      `timeout 30 socat - TCP:127.0.0.1:${port},shut-down < "$f" | sha256sum; sha256sum < "$f"; rm -f "$f"`;
    const r = await runInLaptop(["sh", "-c", script], { timeoutMs: 60_000 });
    const [echoed, sent] = r.stdout.trim().split("\n");
    expect(echoed).toBe(sent!);
    const half = await runInLaptop(["sh", "-c", `printf 'half-closed' | timeout 5 socat - TCP:127.0.0.1:${port},shut-down`]);
    expect(half.stdout).toBe("half-closed");
    // Each connection took the path the test is about, and only that one.
    const paths = [...ktctl.output().matchAll(/connection to \S+, (straight to the pod|through the shadow)/g)].map((m) => m[1]);
    expect(paths).toEqual([path, path]);
    if (path === "through the shadow") expect(ktctl.output().includes("direct streams")).toBe(direct ?? true);
    else expect(ktctl.output()).not.toMatch(/Starting a shadow pod|tunnel: connected/);
  } finally {
    expect(await ktctl.stop("SIGINT")).toBe(130);
  }
}

describe("ktctl forward over each data path", () => {
  test("straight to the pod on the SPDY port-forward (forward's default)", () => checkForward({}, 18184, undefined, "pod"), SLOW);

  test("forward's default on a v4-only API server: through the shadow, whose SSH keeps the half-close v4 lacks", () =>
    checkForward({ KTCTL_PORT_FORWARD: "v4" }, 18185, false, "pod"), SLOW);

  test("the tunnel's direct streams on the SPDY port-forward (the tunnel's default)", () => checkForward({}, 18181, true), SLOW);

  test("SSH channels when direct streams are off", () => checkForward({ KTCTL_TUNNEL_DIRECT: "0" }, 18182, false), SLOW);

  test("SSH over the v4 WebSocket port-forward (what an API server without SPDY tunnelling gets)", () =>
    checkForward({ KTCTL_PORT_FORWARD: "v4" }, 18183, false), SLOW);
});

describe("kube.portForward over v4", () => {
  let pod: string;
  const previous = process.env.KTCTL_PORT_FORWARD;
  beforeAll(async () => {
    process.env.KTCTL_PORT_FORWARD = "v4";
    pod = (await podsOf("tcp-echo"))[0]!.name; // its plain TCP echo listens on 7000
  });
  afterAll(() => {
    if (previous === undefined) delete process.env.KTCTL_PORT_FORWARD;
    else process.env.KTCTL_PORT_FORWARD = previous;
  });

  test("8 MiB round-trips intact; a port nobody listens on is named", async () => {
    const kube = await connectKube({ kubeconfig: KUBECONFIG });
    const stream: Duplex = await kube.portForward(DEMO_NS, pod, 7000);
    const data = randomBytes(8 * MiB);
    const back: Buffer[] = [];
    let got = 0;
    const done = new Promise<void>((resolve, reject) => {
      stream.on("data", (c: Buffer) => {
        back.push(c);
        got += c.length;
        if (got >= data.length) resolve();
      });
      stream.on("error", reject);
    });
    stream.write(data);
    await done;
    expect(sha256(Buffer.concat(back))).toBe(sha256(data));
    stream.destroy();

    const refused = await kube.portForward(DEMO_NS, pod, 9999);
    refused.resume();
    refused.write("anyone?");
    const [error] = await once(refused, "error");
    expect(error.message).toBe(`port-forward to ${DEMO_NS}/${pod}:9999 failed: nothing listens on port 9999 in the pod (connection refused)`);
  }, SLOW);
});

describe("kube.podStreams", () => {
  /** Sockets this process holds (the API server connections among them), by inode. */
  const sockets = () => new Set(readdirSync("/proc/self/fd").map((fd) => readlinkOrEmpty(`/proc/self/fd/${fd}`)).filter((link) => link.startsWith("socket:")));
  /**
   * Sockets opened since `before`. Counted by identity, not as a difference of totals: a socket of
   * an earlier test that closes meanwhile (CI saw one) must not hide the one opened here.
   */
  const openedSince = (before: Set<string>) => [...sockets()].filter((socket) => !before.has(socket)).length;
  const readlinkOrEmpty = (path: string) => {
    try {
      return readlinkSync(path);
    } catch {
      return "";
    }
  };

  test("streams to one pod, even asked for at once, share one port-forward connection and each echoes its own bytes", async () => {
    const pod = (await podsOf("tcp-echo"))[0]!.name;
    const kube = await connectKube({ kubeconfig: KUBECONFIG });
    const pods = kube.podStreams();
    try {
      const before = sockets();
      const streams = await Promise.all(Array.from({ length: 8 }, () => pods.open({ namespace: DEMO_NS, name: pod }, 7000)));
      expect(openedSince(before)).toBe(1);
      const answers = await Promise.all(
        streams.map(async (stream, i) => {
          const chunks: Buffer[] = [];
          stream!.on("data", (chunk: Buffer) => chunks.push(chunk));
          stream!.end(`stream-${i}`);
          await once(stream!, "end");
          return Buffer.concat(chunks).toString();
        }),
      );
      expect(answers).toEqual(streams.map((_, i) => `stream-${i}`));
      // A later stream rides the same connection too.
      const later = await pods.open({ namespace: DEMO_NS, name: pod }, 7000);
      expect(openedSince(before)).toBe(1);
      later!.destroy();
    } finally {
      pods.close();
    }
  }, SLOW);
});
