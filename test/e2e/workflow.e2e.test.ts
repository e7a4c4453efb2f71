// The acceptance test: the daily workflow of a real kt-connect user (a Spring Cloud team with one
// namespace per branch, ../shared/seeds), with their command lines as they wrote them — only the
// namespace (feature-N -> demo), the service names and the exposed port's remote side adapted to
// the test cluster. ktctl runs on the "laptop"; the cluster side is seen from the toolbox pod.
//
//   ktctl connect  --kubeconfig .kubeconfig --namespace feature-N --excludeIps 10.0.8.101/32 --debug
//   ktctl exchange serviceA --kubeconfig .kubeconfig --namespace feature-N --expose 12001 --debug
//   ktctl mesh     serviceA --kubeconfig .kubeconfig --namespace feature-N --expose 12001 --debug --versionMark test-version
//   ktctl preview  serviceB --kubeconfig .kubeconfig --namespace feature-N --expose 12001

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startLaptopServer } from "./exchange-harness.ts";
import { DEMO_NS, KTCTL, KUBECONFIG, eventually, inLaptop, kubectlJson, leftovers, requireCluster, runInLaptop, runInPod } from "./harness.ts";

let project: string;
let laptopServer: { stop(): Promise<void> };
const LOCAL_PORT = 12001;

beforeAll(async () => {
  await requireCluster();
  // The user keeps the kubeconfig their ops team gave them next to their project: `.kubeconfig`.
  project = mkdtempSync(join(tmpdir(), "ktctl-workflow-"));
  copyFileSync(KUBECONFIG, join(project, ".kubeconfig"));
  laptopServer = await startLaptopServer(LOCAL_PORT, "laptop-serviceA");
});

afterAll(async () => {
  await laptopServer?.stop();
  rmSync(project, { recursive: true, force: true });
  await eventually(async () => expect(await leftovers()).toEqual([]), 45_000);
});

/** ktctl as the user types it, from their project directory on the laptop. */
function ktctl(args: string[]) {
  const proc = Bun.spawn(inLaptop([...KTCTL, ...args]), {
    cwd: project,
    env: { ...process.env, KTCTL_HOME: project },
    stdout: "pipe",
    stderr: "pipe",
  });
  let text = "";
  const decoder = new TextDecoder();
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  };
  const pumped = Promise.all([pump(proc.stdout as ReadableStream<Uint8Array>), pump(proc.stderr as ReadableStream<Uint8Array>)]);
  return {
    output: () => text,
    async stop() {
      proc.kill("SIGINT");
      const code = await proc.exited;
      await pumped;
      return code;
    },
  };
}

/** What a pod of the namespace gets from a URL (wget in the toolbox), as parsed JSON. */
async function fromCluster(url: string, header?: string): Promise<any> {
  const r = await runInPod(["wget", "-q", "-O", "-", ...(header ? ["--header", header] : []), url], "toolbox", DEMO_NS, { timeoutMs: 15_000 });
  if (r.code !== 0) throw new Error(`wget ${url}: ${r.code} ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const serviceSpec = async () => (await kubectlJson<any>(["-n", DEMO_NS, "get", "service", "echo"])).spec;

describe("a kt-connect user's day, with ktctl", () => {
  test("connect: the namespace's services by name from the laptop, then everything restored", async () => {
    const resolvBefore = (await runInLaptop(["cat", "/etc/resolv.conf"])).stdout;
    const session = ktctl(["connect", "--kubeconfig", ".kubeconfig", "--namespace", DEMO_NS, "--excludeIps", "10.0.8.101/32", "--debug"]);
    try {
      const answer = await eventually(async () => {
        const r = await runInLaptop(["curl", "-sf", "-m", "3", "http://echo/from-laptop"]);
        if (r.code !== 0) throw new Error(`curl exit ${r.code}`);
        return JSON.parse(r.stdout);
      }, 60_000, 300);
      expect(answer.name).toBe("echo");
      const fqdn = await runInLaptop(["curl", "-sf", "-m", "3", `http://echo.${DEMO_NS}.svc.cluster.local/`]);
      expect(JSON.parse(fqdn.stdout).name).toBe("echo");
    } finally {
      expect(await session.stop()).toBe(130);
    }
    expect((await runInLaptop(["cat", "/etc/resolv.conf"])).stdout).toBe(resolvBefore);
    expect((await runInLaptop(["curl", "-s", "-m", "2", "http://echo/"])).code).not.toBe(0);
  });

  test("exchange serviceA --expose 12001: the cluster's calls reach the laptop, then the original pods", async () => {
    const before = await serviceSpec();
    const session = ktctl(["exchange", "echo", "--kubeconfig", ".kubeconfig", "--namespace", DEMO_NS, "--expose", `${LOCAL_PORT}:80`, "--debug"]);
    try {
      const answer = await eventually(async () => {
        const a = await fromCluster("http://echo/");
        if (a.pod !== "laptop-serviceA") throw new Error(`answered by ${a.pod}`);
        return a;
      }, 60_000, 300);
      expect(answer.pod).toBe("laptop-serviceA");
    } finally {
      expect(await session.stop()).toBe(130);
    }
    expect((await fromCluster("http://echo/")).name).toBe("echo");
    expect(await serviceSpec()).toEqual(before);
  });

  test("mesh serviceA --versionMark test-version: only marked calls reach the laptop", async () => {
    const before = await serviceSpec();
    const session = ktctl([
      "mesh", "echo", "--kubeconfig", ".kubeconfig", "--namespace", DEMO_NS, "--expose", `${LOCAL_PORT}:80`, "--debug", "--versionMark", "test-version",
    ]);
    try {
      await eventually(async () => {
        const a = await fromCluster("http://echo/", "VERSION: test-version");
        if (a.pod !== "laptop-serviceA") throw new Error(`marked call answered by ${a.pod}`);
      }, 90_000, 500);
      for (let i = 0; i < 5; i++) expect((await fromCluster("http://echo/")).name).toBe("echo");
      expect(session.output()).toContain("test-version");
    } finally {
      expect(await session.stop()).toBe(130);
    }
    await eventually(async () => expect(await serviceSpec()).toEqual(before), 30_000);
    expect((await fromCluster("http://echo/", "VERSION: test-version")).name).toBe("echo");
  });

  test("preview serviceB --expose 12001: a new service answered by the laptop, gone afterwards", async () => {
    const session = ktctl(["preview", "serviceb", "--kubeconfig", ".kubeconfig", "--namespace", DEMO_NS, "--expose", `${LOCAL_PORT}`]);
    try {
      const answer = await eventually(() => fromCluster(`http://serviceb:${LOCAL_PORT}/`), 60_000, 300);
      expect(answer.pod).toBe("laptop-serviceA");
    } finally {
      expect(await session.stop()).toBe(130);
    }
    await eventually(async () => {
      const services = await kubectlJson<any>(["-n", DEMO_NS, "get", "services"]);
      expect(services.items.map((s: any) => s.metadata.name)).not.toContain("serviceb");
    }, 30_000);
  });
});
