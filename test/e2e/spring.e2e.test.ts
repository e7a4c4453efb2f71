// The spring-cloud plugin against the real cluster with a real Spring Boot 3 app (test/spring-app,
// built here with Maven): `ktctl spring run` in the laptop namespace in system mode (root), proxy
// mode (a user without root, as a Windows user without admin would be) and hosts mode; the app reads
// its ConfigMap (not passed by env), finds the greeter service with DiscoveryClient and gets an
// answer from every pod IP and from the service by name. `--exchange`: a pod's request reaches the
// local app, and after Ctrl-C the service is exactly as before. `spring config` writes what the app
// sees. Bad input: one line, its own exit code, nothing left behind. The plugin is enabled through
// the config file (it is off by default). Everything lives in a namespace the test owns.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { echoWorkloadYaml, namespaceYaml } from "./echo-workload.ts";
import { KTCTL, KUBECONFIG, REPO, eventually, inLaptop, kubectl, kubectlJson, kubectlOk, leftovers, requireCluster, run, runInLaptop, runInPod, startKtctl, waitFor, type RunningKtctl } from "./harness.ts";

const NS = "spring-e2e";
const APP = "spring-demo";
const TEST_TIMEOUT_MS = 240_000;
/** A user without root in the laptop namespace: proxy mode is for machines where ktctl has no admin. */
const DEV_USER = "ktctl-dev";
const APP_DIR = join(REPO, "test/spring-app");

/** Everything the test makes on the laptop: the JAR, the ktctl homes with the plugin enabled. */
const work = mkdtempSync(join(tmpdir(), "ktctl-spring-e2e-"));
const jar = join(work, "spring-demo.jar");
const rootHome = join(work, "home-root");
const devHome = join(work, "home-dev");
const timings: Record<string, number> = {};

const ECHO_WORKLOADS = [
  namespaceYaml(NS),
  echoWorkloadYaml({ namespace: NS, name: "greeter", replicas: 2 }),
  echoWorkloadYaml({ namespace: NS, name: "orders", env: { ORDERS_FLAG: "from-the-workload" } }),
].join("---\n");

const FIXTURES = `${ECHO_WORKLOADS}---
apiVersion: v1
kind: ConfigMap
metadata: { name: ${APP}, namespace: ${NS} }
data:
  application.yaml: |
    greeting:
      message: hello-from-configmap
    demo:
      shared: base
      list: [a, b]
    ---
    spring:
      config:
        activate:
          on-profile: dev
    demo:
      shared: dev-document
---
apiVersion: v1
kind: ConfigMap
metadata: { name: ${APP}-dev, namespace: ${NS} }
data:
  demo.only-dev: "yes"
  demo.overridden: from-dev-configmap
---
apiVersion: v1
kind: Secret
metadata: { name: ${APP}, namespace: ${NS} }
stringData:
  demo.password: s3cret
  demo.overridden: from-secret
---
apiVersion: v1
kind: ServiceAccount
metadata: { name: no-rights, namespace: ${NS} }
`;

/** Builds the app once per run with Maven (~/.m2 is the cache: a warm run downloads nothing). */
async function buildApp(): Promise<void> {
  const started = performance.now();
  const r = await run(["mvn", "-B", "-q", "-DskipTests", "package"], { cwd: APP_DIR, timeoutMs: 600_000 });
  if (r.code !== 0) throw new Error(`mvn package failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  timings.mavenSeconds = (performance.now() - started) / 1000;
  copyFileSync(join(APP_DIR, "target/spring-demo.jar"), jar);
}

beforeAll(async () => {
  await requireCluster();
  if ((await run(["id", DEV_USER])).code !== 0) await run(["useradd", "-m", DEV_USER]);
  const devUid = Number((await run(["id", "-u", DEV_USER])).stdout.trim());
  for (const [home, uid] of [[rootHome, 0], [devHome, devUid]] as const) {
    rmSync(home, { recursive: true, force: true });
    Bun.spawnSync(["mkdir", "-p", home]);
    writeFileSync(join(home, "config.yaml"), "plugins: [spring-cloud]\n");
    chownSync(home, uid, uid);
    chownSync(join(home, "config.yaml"), uid, uid);
  }
  chmodSync(work, 0o755);
  await kubectl(["delete", "namespace", NS, "--wait=true", "--ignore-not-found"], { timeoutMs: 120_000 });
  await Promise.all([buildApp(), kubectlOk(["apply", "-f", "-"], { stdin: FIXTURES })]);
  chmodSync(jar, 0o644);
  await Promise.all([waitFor(["deployment/greeter", "--for=condition=Available"], NS, 90), waitFor(["deployment/orders", "--for=condition=Available"], NS, 90)]);
}, 900_000);

afterAll(async () => {
  await kubectl(["delete", "namespace", NS, "--wait=false", "--ignore-not-found"]);
  rmSync(work, { recursive: true, force: true });
  console.log(`spring e2e timings: ${JSON.stringify(timings)}`);
});

/** ktctl spring ... in the laptop namespace, as root or as the user without root. */
function springArgv(args: string[], as: "root" | "dev"): string[] {
  const ktctl = [...KTCTL, "--kubeconfig", KUBECONFIG, "-n", NS, ...args];
  if (as === "root") return inLaptop(ktctl);
  return inLaptop(["setpriv", `--reuid=${DEV_USER}`, `--regid=${DEV_USER}`, "--init-groups", "env", `HOME=/home/${DEV_USER}`, `KTCTL_HOME=${devHome}`, ...ktctl]);
}

function startSpring(args: string[], as: "root" | "dev", port: number): RunningKtctl & { startedAt: number } {
  const startedAt = performance.now();
  // startKtctl runs `ktctl ARGS` in the laptop; `as` needs its own argv, so spawn alike here.
  const proc = Bun.spawn(springArgv(args, as), {
    cwd: work,
    env: { ...process.env, KTCTL_HOME: rootHome, DEMO_PORT: String(port) },
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
  });
  return { ...wrap(proc), startedAt };
}

/** The same output collection as the harness's startKtctl, for a process spawned here. */
function wrap(proc: ReturnType<typeof Bun.spawn>): RunningKtctl {
  let text = "";
  const listeners = new Set<() => void>();
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      text += decoder.decode(chunk, { stream: true });
      for (const notify of listeners) notify();
    }
  };
  const pumped = Promise.all([pump(proc.stdout as ReadableStream<Uint8Array>), pump(proc.stderr as ReadableStream<Uint8Array>)]);
  void proc.exited.then(() => pumped).then(() => listeners.forEach((n) => n()));
  return {
    proc,
    output: () => text,
    waitForOutput(pattern, timeoutMs = 120_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = pattern.exec(text);
          if (match) return finish(() => resolve(match[0]));
          if (proc.exitCode !== null) return finish(() => reject(new Error(`exited (${proc.exitCode}) before printing ${pattern}:\n${text}`)));
        };
        const timer = setTimeout(() => finish(() => reject(new Error(`no ${pattern} after ${timeoutMs} ms:\n${text}`))), timeoutMs);
        const finish = (settle: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          settle();
        };
        listeners.add(check);
        check();
      });
    },
    async stop(signal = "SIGINT") {
      if (proc.exitCode === null) proc.kill(signal);
      const code = await proc.exited;
      await pumped;
      return code;
    },
  };
}

async function laptopGet(port: number, path: string): Promise<any> {
  const r = await runInLaptop(["curl", "-sf", "--max-time", "30", `http://127.0.0.1:${port}${path}`], { timeoutMs: 40_000 });
  if (r.code !== 0) throw new Error(`GET ${path} on the laptop failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

async function greeterPods(): Promise<Map<string, string>> {
  const list = await kubectlJson<{ items: any[] }>(["-n", NS, "get", "pods", "-l", "app=greeter"]);
  return new Map(list.items.filter((p) => p.status?.podIP && !p.metadata.deletionTimestamp).map((p) => [p.status.podIP, p.metadata.name]));
}

/** The sessions' objects are deleted on exit; pods take a moment to be gone. */
const noLeftovers = () => eventually(async () => expect(await leftovers(NS)).toEqual([]), 60_000, 500);

const ktctlSessionDirs = () => readdirSync(tmpdir()).filter((name) => name.startsWith("ktctl-spring-"));

/** One app run: the report shows the ConfigMap's greeting, every pod answering, and the service by name. */
async function expectDiscoveryWorks(port: number, options: { podIps: boolean }) {
  const report = await laptopGet(port, "/report");
  expect(report.namespace).toBe(NS);
  expect(report.services).toContain("greeter");
  const pods = await greeterPods();
  if (options.podIps) {
    expect(new Set(report.instances.map((i: any) => i.host))).toEqual(new Set(pods.keys()));
    for (const instance of report.instances) expect(JSON.parse(instance.answer).pod).toBe(pods.get(instance.host));
  }
  expect([...pods.values()]).toContain(JSON.parse(report.byName).pod);
  expect([...pods.values()]).toContain(JSON.parse(report.byDns).pod);
  return report;
}

describe("ktctl spring (Spring Cloud Kubernetes app on the laptop)", () => {
  test(
    "system mode as root: ConfigMap config, every pod IP, the service by name; spring config = what the app sees; Ctrl-C ends the app then the session",
    async () => {
      const port = 18481;
      const before = ktctlSessionDirs();
      const k = startSpring(["spring", "run", "--app", APP, "--profile", "dev", "--mode", "system", "--", "java", "-jar", jar], "root", port);
      try {
        await k.waitForOutput(/FIRST-DISCOVERY-OK/, 180_000);
        timings.systemStartToFirstDiscoverySeconds = (performance.now() - k.startedAt) / 1000;
        const report = await expectDiscoveryWorks(port, { podIps: true });
        // The profile's document of the ConfigMap and the profile's own ConfigMap, not an env variable.
        expect(report.greeting).toBe("hello-from-configmap");
        const session = await laptopGet(port, "/props?keys=KUBECONFIG,GREETING_MESSAGE");
        expect(session.GREETING_MESSAGE).toBeNull();
        expect(statSync(session.KUBECONFIG).mode & 0o777).toBe(0o600);

        // spring config writes exactly what the app's environment resolves, key by key.
        const config = await run([...KTCTL, "--kubeconfig", KUBECONFIG, "-n", NS, "spring", "config", APP, "--profile", "dev", "--secrets", "-o", "-"], { env: { KTCTL_HOME: rootHome } });
        expect(config.code).toBe(0);
        const written = Object.fromEntries(
          config.stdout.split("\n").filter((l) => l && !l.startsWith("#")).map((l) => {
            const [key, value] = l.split(/: (?=")/);
            return [JSON.parse(key!), JSON.parse(value!)];
          }),
        );
        expect(written).toMatchObject({ "greeting.message": "hello-from-configmap", "demo.shared": "dev-document", "demo.only-dev": "yes", "demo.overridden": "from-dev-configmap", "demo.password": "s3cret", "demo.list[0]": "a" });
        const seen = await laptopGet(port, `/props?keys=${encodeURIComponent(Object.keys(written).join(","))}`);
        expect(seen).toEqual(written);
        // Without --secrets the Secret's values are left out, and said so.
        const redacted = await run([...KTCTL, "--kubeconfig", KUBECONFIG, "-n", NS, "spring", "config", APP, "--profile", "dev", "-o", "-"], { env: { KTCTL_HOME: rootHome } });
        expect(redacted.stdout).not.toContain("s3cret");
        expect(redacted.stdout).toContain("#   demo.password: from secret spring-demo (left out; --secrets writes it)");

        // Ctrl-C: the app stops (its exit code is ktctl's), then the session; nothing is left.
        const code = await k.stop("SIGINT");
        expect(code).toBe(130);
        expect(k.output()).toMatch(/Graceful shutdown complete[\s\S]*stopping connect/);
        expect(existsSync(session.KUBECONFIG)).toBe(false);
        expect(ktctlSessionDirs()).toEqual(before);
        await noLeftovers();
      } finally {
        await k.stop("SIGTERM");
      }

      // The same machine, plain connect: the time spring run adds on top is the app's own start.
      const connectStarted = performance.now();
      const c = startKtctl(["-n", NS, "connect", "--mode", "system"], { KTCTL_HOME: rootHome });
      try {
        await c.waitForOutput(/Connected to namespace/, 120_000);
        timings.plainConnectSeconds = (performance.now() - connectStarted) / 1000;
      } finally {
        await c.stop("SIGINT");
      }
      const javaAlone = startSpring(["spring", "run", "--mode", "system", "--", "java", "-jar", jar], "root", 18484);
      // (also the app's start alone is visible in its log: "Started SpringDemoApplication in N seconds")
      try {
        const started = await javaAlone.waitForOutput(/Started SpringDemoApplication in [\d.]+ seconds/, 180_000);
        timings.appStartSeconds = Number(/in ([\d.]+) seconds/.exec(started)![1]);
      } finally {
        await javaAlone.stop("SIGINT");
      }
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "proxy mode as a user without root: the JVM goes through ktctl's proxy for the cluster only, the API server direct",
    async () => {
      const port = 18482;
      const k = startSpring(["spring", "run", "--app", APP, "--mode", "proxy", "--", "java", "-jar", jar], "dev", port);
      try {
        await k.waitForOutput(/FIRST-DISCOVERY-OK/, 180_000);
        timings.proxyStartToFirstDiscoverySeconds = (performance.now() - k.startedAt) / 1000;
        expect(k.output()).toMatch(/Picked up JAVA_TOOL_OPTIONS: .*-DsocksProxyHost=127\.0\.0\.1 .*-Dhttp\.nonProxyHosts=localhost\|127\.\*\|\[::1\]\|10\.200\.0\.1/);
        const report = await expectDiscoveryWorks(port, { podIps: true });
        expect(report.greeting).toBe("hello-from-configmap");
        const props = await laptopGet(port, "/props?keys=KUBECONFIG");
        expect(statSync(props.KUBECONFIG).uid).not.toBe(0);
        expect(await k.stop("SIGINT")).toBe(130);
        await noLeftovers();
      } finally {
        await k.stop("SIGTERM");
      }
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "hosts mode: the load balancer uses service names, which the hosts file resolves",
    async () => {
      const port = 18483;
      const k = startSpring(["spring", "run", "--mode", "hosts", "--", "java", "-jar", jar], "root", port);
      try {
        await k.waitForOutput(/FIRST-DISCOVERY-OK|Started SpringDemoApplication/, 180_000);
        const report = await expectDiscoveryWorks(port, { podIps: false });
        expect(JSON.parse(report.byName).host).toBe(`greeter.${NS}.svc.cluster.local`);
        expect(await k.stop("SIGINT")).toBe(130);
        await noLeftovers();
      } finally {
        await k.stop("SIGTERM");
      }
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "--exchange: a pod's request reaches the local app, which runs with the workload's environment; after Ctrl-C the service is exactly as before",
    async () => {
      const port = 18485;
      const before = await kubectlJson(["-n", NS, "get", "service", "orders"]);
      const k = startSpring(["spring", "run", "--app", APP, "--mode", "system", "--exchange", "orders", "--expose", String(port), "--", "java", "-jar", jar], "root", port);
      try {
        await k.waitForOutput(/exchanged svc\/orders in [\d.]+s/, 180_000);
        // busybox wget in the toolbox pod; the kubectl exec timeout bounds a hanging request
        const fromPod = await runInPod(["wget", "-qO-", `http://orders.${NS}/hello`], "toolbox", "demo", { timeoutMs: 15_000 });
        expect(fromPod.code).toBe(0);
        expect(JSON.parse(fromPod.stdout)).toMatchObject({ from: "laptop", greeting: "hello-from-configmap" });
        expect(await laptopGet(port, "/props?keys=ORDERS_FLAG")).toEqual({ ORDERS_FLAG: "from-the-workload" });
        expect(await k.stop("SIGINT")).toBe(130);
        expect(k.output()).toMatch(/stopping exchange[\s\S]*restored[\s\S]*stopping connect/);
      } finally {
        await k.stop("SIGTERM");
      }
      const after = await kubectlJson(["-n", NS, "get", "service", "orders"]);
      expect(after.spec).toEqual(before.spec);
      expect(after.metadata.labels).toEqual(before.metadata.labels);
      expect(after.metadata.annotations).toEqual(before.metadata.annotations);
      await noLeftovers();
    },
    TEST_TIMEOUT_MS,
  );

  describe("bad input: one line, its own exit code, nothing left", () => {
    const ktctl = (args: string[], env: Record<string, string> = { KTCTL_HOME: rootHome }) =>
      runInLaptop([...KTCTL, "--kubeconfig", KUBECONFIG, "-n", NS, ...args], { env, timeoutMs: 60_000 });
    const oneLine = (stderr: string) => stderr.trim().split("\n").filter((l) => !l.startsWith("hint:") && !l.startsWith("ktctl: warning:"));

    test("not enabled: spring is not a command, with how to enable it", async () => {
      const empty = join(work, "home-empty");
      Bun.spawnSync(["mkdir", "-p", empty]);
      const r = await ktctl(["spring", "run", "--", "true"], { KTCTL_HOME: empty });
      // The core's answer for a built-in that is off: its own exit code and the enable line.
      expect(r.code).toBe(13);
      expect(oneLine(r.stderr)[0]).toBe('ktctl: command "spring" belongs to the built-in plugin "spring-cloud", which is off by default');
      expect(r.stderr).toContain('ktctl plugins enable spring-cloud');
    });

    test("COMMAND missing", async () => {
      const r = await ktctl(["spring", "run", "--app", APP]);
      expect(r.code).toBe(2);
      expect(oneLine(r.stderr)).toEqual(["ktctl: COMMAND missing: ktctl spring run [flags] -- COMMAND..."]);
    });

    test("app unknown: says which ConfigMaps and Secrets were looked for", async () => {
      const dirs = ktctlSessionDirs();
      const r = await ktctl(["spring", "run", "--app", "no-such-app", "--profile", "dev", "--", "true"]);
      expect(r.code).toBe(5);
      expect(oneLine(r.stderr)).toEqual([`ktctl: no configuration for app "no-such-app": looked for configmaps no-such-app, no-such-app-dev and secrets no-such-app, no-such-app-dev in namespace ${NS}`]);
      const config = await ktctl(["spring", "config", "no-such-app"]);
      expect(config.code).toBe(5);
      expect(ktctlSessionDirs()).toEqual(dirs);
      await noLeftovers();
    });

    test("RBAC missing: doctor names each verb and resource and the fix; exit 6", async () => {
      const token = (await kubectlOk(["-n", NS, "create", "token", "no-rights"])).trim();
      const admin = await kubectlJson(["config", "view", "--raw", "--minify"]);
      const kubeconfig = join(work, "no-rights.kubeconfig");
      writeFileSync(
        kubeconfig,
        JSON.stringify({
          apiVersion: "v1",
          kind: "Config",
          clusters: admin.clusters,
          users: [{ name: "no-rights", user: { token } }],
          contexts: [{ name: "no-rights", context: { cluster: admin.clusters[0].name, user: "no-rights", namespace: NS } }],
          "current-context": "no-rights",
        }),
        { mode: 0o600 },
      );
      const r = await runInLaptop([...KTCTL, "--kubeconfig", kubeconfig, "spring", "doctor", "--mode", "proxy"], { env: { KTCTL_HOME: rootHome } });
      expect(r.code).toBe(6);
      expect(r.stdout).toContain(`MISSING not allowed: get,list,watch services in ${NS} (DiscoveryClient)`);
      expect(r.stdout).toContain(`MISSING not allowed: get,list configmaps in ${NS}`);
      expect(r.stdout).toContain(`kubectl -n ${NS} create rolebinding spring-cloud-kubernetes --role=spring-cloud-kubernetes --user=system:serviceaccount:${NS}:no-rights`);
      expect(oneLine(r.stderr)).toHaveLength(1);
    });
  });
});
