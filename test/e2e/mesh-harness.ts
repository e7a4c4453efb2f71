// What the mesh e2e tests share: a workload of their own (a copy of the cluster's echo, so other
// tests exchanging `echo` meanwhile cannot disturb them), the protocol server on the "laptop",
// requests from the toolbox pod in every protocol, and the exact state the mesh must restore.

import { join } from "node:path";
import { DEMO_NS, REPO, inLaptop, kubectl, kubectlJson, kubectlOk, runInPod } from "./harness.ts";

/** The meshed workload: the echo image, its ports (a named targetPort included), two replicas. */
export const MESH_SERVICE = "mesh-e2e";

/** The workload as YAML, under any name (the benchmark deploys its own copy). */
const workload = (name: string) => `
apiVersion: apps/v1
kind: Deployment
metadata: { name: ${name}, namespace: ${DEMO_NS}, labels: { app: ${name} } }
spec:
  replicas: 2
  selector: { matchLabels: { app: ${name} } }
  template:
    metadata: { labels: { app: ${name}, tier: backend } }
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: echo
        image: ktctl.local/echo:1
        imagePullPolicy: Never
        env:
        - { name: ECHO_NAME, value: ${name} }
        - { name: POD_NAME, valueFrom: { fieldRef: { fieldPath: metadata.name } } }
        - { name: POD_NAMESPACE, valueFrom: { fieldRef: { fieldPath: metadata.namespace } } }
        ports:
        - { name: http, containerPort: 8080 }
        - { name: http-alt, containerPort: 8081 }
        - { name: tcp, containerPort: 9090 }
        readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1 }
---
apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: ${DEMO_NS}, labels: { app: ${name} }, annotations: { team: e2e } }
spec:
  selector: { app: ${name} }
  ports:
  - { name: http, port: 80, targetPort: http }
  - { name: http-alt, port: 8081, targetPort: 8081 }
  - { name: tcp, port: 9090, targetPort: tcp }
`;

export async function deployMeshWorkload(name = MESH_SERVICE): Promise<void> {
  await kubectlOk(["apply", "-f", "-"], { stdin: workload(name) });
  await kubectlOk(["-n", DEMO_NS, "rollout", "status", `deployment/${name}`, "--timeout=90s"], { timeoutMs: 100_000 });
}

export async function removeMeshWorkload(name = MESH_SERVICE): Promise<void> {
  await kubectl(["delete", "--ignore-not-found", "--wait=false", "-f", "-"], { stdin: workload(name) });
}

/** The service as ktctl must give it back: metadata it could touch, and the whole spec. */
export async function serviceState(name = MESH_SERVICE): Promise<unknown> {
  const svc = await kubectlJson(["-n", DEMO_NS, "get", "service", name]);
  return { labels: svc.metadata.labels ?? {}, annotations: svc.metadata.annotations ?? {}, spec: svc.spec };
}

/** Every object of this service's mesh still in the cluster (router, its pods, companion, shadows). */
export async function meshLeftovers(service = MESH_SERVICE): Promise<string[]> {
  const roles = [`mesh-router-${service}`, `mesh-original-${service}`, `mesh-route-${service}`].join(",");
  const r = await kubectl(["-n", DEMO_NS, "get", "deployments,replicasets,pods,services", "-l", `ktctl.io/role in (${roles})`, "-o", "name"]);
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout.split("\n").filter(Boolean);
}

/** Names of the original pods (not ktctl's). */
export async function originalPods(service = MESH_SERVICE): Promise<string[]> {
  const list = await kubectlJson<{ items: any[] }>(["-n", DEMO_NS, "get", "pods", "-l", `app=${service},!ktctl.io/managed-by`]);
  return list.items.filter((p) => !p.metadata.deletionTimestamp).map((p) => p.metadata.name);
}

export type Protocol = "http" | "h2c" | "ws" | "grpc";

/** Which pod answered a request in `protocol` from the toolbox pod, with optional headers (metadata for gRPC). */
export async function ask(protocol: Protocol, headers: Record<string, string> = {}, options: { port?: number; path?: string } = {}): Promise<string> {
  const port = options.port ?? 80;
  const path = options.path ?? (protocol === "ws" ? "/ws" : "/");
  const host = `${MESH_SERVICE}.${DEMO_NS}`;
  const target =
    protocol === "grpc" ? `${host}:${port}` : `${protocol === "ws" ? "ws" : "http"}://${host}${port === 80 ? "" : `:${port}`}${path}`;
  const flags = Object.entries(headers).flatMap(([k, v]) => ["-H", `${k}:${v}`]);
  const r = await runInPod(["kecho", "client", protocol, target, ...flags], "toolbox", DEMO_NS, { timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`kecho ${protocol} ${target} ${flags.join(" ")} failed (${r.code}): ${r.stderr.trim()}`);
  const answer = JSON.parse(r.stdout);
  if (protocol === "ws" && !String(answer.message).startsWith(`${answer.pod}: `)) throw new Error(`websocket echo came back as ${answer.message}`);
  return answer.pod;
}

/** A line through the raw TCP port (not HTTP): must come back from the original pods' echo. */
export async function tcpRoundTrip(line: string): Promise<string> {
  const r = await runInPod(["sh", "-c", `echo ${line} | nc -w 3 ${MESH_SERVICE}.${DEMO_NS} 9090`], "toolbox", DEMO_NS, { timeoutMs: 15_000 });
  return r.stdout.trim();
}

/** The protocol server on the laptop (HTTP/1.1, h2c, WebSocket, gRPC on one port), answering as `name`. */
export async function startLaptopService(name: string, port: number): Promise<{ stop(): Promise<void> }> {
  const proc = Bun.spawn(inLaptop(["bun", join(REPO, "test/e2e/fixtures/protocol-server.ts"), "--name", name, "--port", String(port)]), {
    stdout: "pipe",
    stderr: "pipe",
  });
  const ready = (async () => {
    let text = "";
    const decoder = new TextDecoder();
    for await (const chunk of proc.stdout) {
      text += decoder.decode(chunk, { stream: true });
      if (text.includes("READY")) return;
    }
    throw new Error(`laptop service ${name} exited: ${await new Response(proc.stderr).text()}`);
  })();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`laptop service ${name} not ready in 15 s`)), 15_000)));
  try {
    await Promise.race([ready, late]);
  } finally {
    clearTimeout(timer);
  }
  return {
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}

/** Sessions that the mesh of the service counts, from the service's annotation. */
export async function meshSessions(service = MESH_SERVICE): Promise<string[]> {
  const svc = await kubectlJson(["-n", DEMO_NS, "get", "service", service]);
  return JSON.parse(svc.metadata.annotations?.["ktctl.io/mesh-sessions"] ?? "[]");
}
