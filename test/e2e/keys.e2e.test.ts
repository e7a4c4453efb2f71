// Keys and secrets: while each mode runs, nothing in the namespace (pod specs and env, ConfigMaps,
// Secrets, annotations) holds a private key; key files are 0600 in a 0700 directory and a key file
// others may read is refused; the shadow lets in no client with another key; the mesh router's admin
// port answers only inside its pod.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createPrivateKey } from "node:crypto";
import { chmodSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Client, utils } from "ssh2";
import { connectKube } from "../../core/kube/index.ts";
import { SHADOW_TUNNEL_PORT, SHADOW_ENV } from "../../core/protocol/tunnel.ts";
import { DEFAULT_ADMIN_PORT } from "../../core/protocol/router.ts";
import { createSessionKeyPair } from "../../core/protocol/keys.ts";
import type { Kube } from "../../core/plugin-api.ts";
import { KUBECONFIG, eventually, kubectlJson, requireCluster, runInPod } from "./harness.ts";
import { startLaptopServer, startKtctl, stopAllKtctl, type KtctlProcess } from "./exchange-harness.ts";
import { MODES, deployWorkspace, ktctlObjects, laptopQuiet, removeHome, scratchHome, tidyWorkspace } from "./reliability-harness.ts";

const NS = "rel-keys";
const PORT = 28700;
let home: string;
let laptop: { stop(): Promise<void> };
let kube: Kube;

/** Everything in the namespace as text, Secret values decoded: where a leaked key would be. */
async function namespaceText(): Promise<string> {
  const list = await kubectlJson<{ items: any[] }>(["-n", NS, "get", "pods,services,deployments,replicasets,configmaps,secrets,leases,endpoints"]);
  const decoded = list.items
    .filter((o) => o.kind === "Secret")
    .flatMap((s) => Object.values(s.data ?? {}).map((v) => Buffer.from(String(v), "base64").toString("latin1")));
  return [JSON.stringify(list), ...decoded].join("\n");
}

/** Text that gives away an OpenSSH private key, whichever key it is. */
const PRIVATE_KEY_SIGNS = ["PRIVATE KEY", "openssh-key-v1", "b3BlbnNzaC1rZXktdjE"];

/** Every form the private part of `privateKey` could be written in: its body lines and its raw seed. */
function secretForms(privateKey: string): string[] {
  const body = privateKey.split("\n").filter((l) => l && !l.startsWith("-----"));
  const parsed = utils.parseKey(privateKey) as any;
  const jwk = createPrivateKey(parsed.getPrivatePEM()).export({ format: "jwk" }) as { d: string };
  const seed = Buffer.from(jwk.d, "base64url");
  return [...body, jwk.d, seed.toString("base64"), seed.toString("hex")];
}

/** The live shadow pods of the namespace (any mode's), with the public key each lets in. */
async function shadowKeys(): Promise<{ pod: string; key: string }[]> {
  const pods = await kubectlJson<{ items: any[] }>(["-n", NS, "get", "pods", "-l", "ktctl.io/managed-by"]);
  // A pod of an earlier test may still be terminating: it is not this session's.
  return pods.items.filter((p) => !p.metadata.deletionTimestamp).flatMap((p) =>
    p.spec.containers.flatMap((c: any) => (c.env ?? []).filter((e: any) => e.name === SHADOW_ENV.authorizedKey).map((e: any) => ({ pod: p.metadata.name, key: e.value }))),
  );
}

/** An SSH handshake with the shadow's tunnel port through the API server's port-forward. */
async function sshTo(pod: string, privateKey: string): Promise<"accepted" | string> {
  const sock = await kube.portForward(NS, pod, SHADOW_TUNNEL_PORT);
  const client = new Client();
  try {
    return await new Promise((resolve) => {
      client.once("ready", () => resolve("accepted"));
      client.once("error", (error: Error & { level?: string }) => resolve(`${error.level ?? "error"}: ${error.message}`));
      client.connect({ sock, username: "ktctl", privateKey, readyTimeout: 15_000, hostVerifier: () => true });
    });
  } finally {
    client.end();
    sock.destroy();
  }
}

beforeAll(async () => {
  await requireCluster();
  await deployWorkspace(NS);
  home = scratchHome("keys");
  laptop = await startLaptopServer(PORT);
  kube = await connectKube({ kubeconfig: KUBECONFIG, namespace: NS });
}, 180_000);

afterAll(async () => {
  await stopAllKtctl();
  await laptop?.stop();
  await tidyWorkspace(NS);
  removeHome(home);
});

async function startMode(args: string[], ready: RegExp): Promise<KtctlProcess> {
  const k = startKtctl(args, home, {}, NS);
  await k.waitFor(ready, 120_000);
  return k;
}

async function stop(k: KtctlProcess) {
  k.proc.kill("SIGINT");
  expect([0, 130]).toContain(await k.exited);
}

describe("the private key never leaves the laptop", () => {
  for (const mode of MODES) {
    test(`${mode.name}: no private key in the namespace while it runs; the shadow holds only a public key`, async () => {
      if (mode.name === "connect-system" || mode.name === "connect-hosts") await laptopQuiet();
      const k = await startMode(mode.args(mode.name === "forward" ? PORT + 1 : PORT), mode.ready);
      try {
        const text = await namespaceText();
        for (const sign of PRIVATE_KEY_SIGNS) expect(text).not.toContain(sign);
        const keys = await shadowKeys();
        // forward and connect --via pod go straight to the pods: they start no shadow, so no key of any kind is there.
        if (mode.name === "forward" || mode.name === "connect-pod") expect(keys).toEqual([]);
        else expect(keys.length).toBeGreaterThan(0);
        for (const { key } of keys) expect(key).toMatch(/^ssh-ed25519 [A-Za-z0-9+/]+=* \S+$/);
      } finally {
        await stop(k);
      }
    }, 180_000);
  }

  test("connect --shareShadow: its key file is 0600 in a 0700 directory, and no form of it is in the cluster", async () => {
    const k = await startMode(["connect", "--mode", "proxy", "--proxyPort", "0", "--shareShadow"], /Connected to namespace/);
    try {
      const dir = join(home, "shared");
      const files = [...new Bun.Glob("*.key").scanSync(dir)];
      expect(files).toHaveLength(1);
      const file = join(dir, files[0]!);
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const privateKey = readFileSync(file, "utf8");
      const text = await namespaceText();
      for (const form of [...PRIVATE_KEY_SIGNS, ...secretForms(privateKey)]) expect(text).not.toContain(form);
      // The shadow lets in exactly the public half of that file, and nothing else (below).
      const [shadow] = await shadowKeys();
      const parsed = utils.parseKey(privateKey) as any;
      expect(shadow!.key.split(" ")[1]).toBe(parsed.getPublicSSH().toString("base64"));
      expect(await sshTo(shadow!.pod, privateKey)).toBe("accepted");
      expect(await sshTo(shadow!.pod, createSessionKeyPair("intruder").privateKey)).toMatch(/^client-authentication: All configured authentication methods failed/);
    } finally {
      await stop(k);
    }
  }, 180_000);

  test("a key file others may read is refused with one line, exit 14, and nothing is left in the cluster", async () => {
    const dir = join(home, "shared");
    const file = join(dir, [...new Bun.Glob("*.key").scanSync(dir)][0]!);
    chmodSync(file, 0o644);
    try {
      const k = startKtctl(["connect", "--mode", "proxy", "--proxyPort", "0", "--shareShadow"], home, {}, NS);
      const code = await k.exited;
      const errors = k.output().split("\n").filter((l) => l.startsWith("ktctl: "));
      expect({ code, errors }).toEqual({ code: 14, errors: [`ktctl: key file ${file} is accessible by others (mode 0644); refusing to use it`] });
      expect(statSync(file).mode & 0o777).toBe(0o644); // left as found: the user decides
      await eventually(async () => {
        const left = await ktctlObjects(NS);
        if (left.length) throw new Error(`left behind: ${left.join(", ")}`);
      }, 30_000);
    } finally {
      chmodSync(file, 0o600);
    }
  }, 120_000);
});

describe("the shadow and the router let in only the session", () => {
  test("a shadow refuses an SSH client with another key", async () => {
    const forward = MODES.find((m) => m.name === "forward")!;
    // Through the shadow: straight to the pods (the default) a forward starts none.
    const k = await startMode([...forward.args(PORT + 1), "--via", "shadow"], forward.ready);
    try {
      const [shadow] = await shadowKeys();
      const answers = await Promise.all([1, 2, 3].map(() => sshTo(shadow!.pod, createSessionKeyPair("intruder").privateKey)));
      for (const answer of answers) expect(answer).toMatch(/^client-authentication: All configured authentication methods failed/);
    } finally {
      await stop(k);
    }
  }, 120_000);

  test("the mesh router's admin port answers through a port-forward (its loopback) and refuses other pods", async () => {
    const mesh = MODES.find((m) => m.name === "mesh")!;
    const k = await startMode(mesh.args(PORT), mesh.ready);
    try {
      const routers = await kubectlJson<{ items: any[] }>(["-n", NS, "get", "pods", "-l", "ktctl.io/role=mesh-router-echo"]);
      const router = routers.items.find((p) => p.status?.podIP && !p.metadata.deletionTimestamp)!;
      expect(router).toBeDefined();
      // Inside the pod (a kubelet port-forward connects to the pod's loopback): it answers.
      const sock = await kube.portForward(NS, router.metadata.name, DEFAULT_ADMIN_PORT);
      const reply = await new Promise<string>((resolve) => {
        let text = "";
        const done = () => {
          clearTimeout(timer);
          sock.destroy();
          resolve(text);
        };
        const timer = setTimeout(done, 10_000);
        sock.on("data", (chunk: Buffer) => {
          text += chunk.toString();
          if (/\r\n\r\n[\s\S]*ok/.test(text)) done();
        });
        sock.once("end", done);
        sock.once("error", done);
        sock.write("GET /healthz HTTP/1.1\r\nHost: router\r\nConnection: close\r\n\r\n");
      });
      expect(reply).toMatch(/^HTTP\/1\.1 200/);
      // From another pod, to the router pod's address: refused.
      const outside = await runInPod(["sh", "-c", `nc -w 3 ${router.status.podIP} ${DEFAULT_ADMIN_PORT} </dev/null; echo exit=$?`]);
      expect(outside.stdout.trim()).toBe("exit=1");
      // ... while its service port on the same address answers, so the refusal is the admin port's own.
      const served = await runInPod(["sh", "-c", `nc -w 3 ${router.status.podIP} 8080 </dev/null; echo exit=$?`]);
      expect(served.stdout.trim()).toBe("exit=0");
    } finally {
      await stop(k);
    }
  }, 180_000);
});
