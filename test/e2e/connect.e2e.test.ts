// `ktctl connect` from the laptop namespace, in every mode Linux supports: each name form, the
// ClusterIP and a pod IP answer (HTTP and plain TCP), a second namespace, a service created after
// connect started, a local process on 8080 undisturbed, a plain JVM client; before connect and after
// it ends (Ctrl-C or SIGKILL) the same requests fail and the laptop's files and rules are exactly
// as they were.

import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  DEMO2_NS,
  DEMO_NS,
  LAPTOP_NS,
  REPO,
  clusterIpOf,
  eventually,
  inLaptop,
  kubectl,
  kubectlOk,
  podsOf,
  requireCluster,
  runInLaptop,
  startKtctl,
  type RunningKtctl,
} from "./harness.ts";

const JAVA_PROBE = join(REPO, "test/e2e/fixtures/ConnectProbe.java");
/** A service with no selector and one hand-written endpoint that names no pod (as for a database outside the cluster). */
const MANUAL_SERVICE = (ip: string) => `apiVersion: v1
kind: Service
metadata: { name: connect-manual, namespace: ${DEMO_NS} }
spec: { ports: [{ port: 80, targetPort: 8080, protocol: TCP }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: connect-manual-1, namespace: ${DEMO_NS}, labels: { kubernetes.io/service-name: connect-manual } }
addressType: IPv4
endpoints: [{ addresses: ["${ip}"] }]
ports: [{ port: 8080, protocol: TCP }]
`;
const LAPTOP_ETC = `/etc/netns/${LAPTOP_NS}`;
let home: string;
let env: Record<string, string>;
let localServer: ReturnType<typeof Bun.spawn>;
let echoIp: string;
let echoPod: { name: string; ip: string };

/** Everything connect may touch on the laptop, as bytes and rule listings. */
async function laptopState() {
  const [iptables, nft, routes] = await Promise.all([
    runInLaptop(["iptables-save"]),
    runInLaptop(["nft", "list", "ruleset"]),
    runInLaptop(["ip", "-4", "route", "show", "table", "all"]),
  ]);
  return {
    resolv: Buffer.from(await Bun.file(`${LAPTOP_ETC}/resolv.conf`).arrayBuffer()).toString("base64"),
    hosts: Buffer.from(await Bun.file(`${LAPTOP_ETC}/hosts`).arrayBuffer()).toString("base64"),
    // iptables-save stamps the time in comments; the rules are the rest.
    iptables: iptables.stdout.split("\n").filter((l) => !l.startsWith("#")).join("\n"),
    nft: nft.stdout,
    routes: routes.stdout,
  };
}

async function curl(url: string, extra: string[] = []) {
  const r = await runInLaptop(["curl", "-sS", "-m", "5", ...extra, url], { timeoutMs: 15_000 });
  if (r.code !== 0) throw new Error(`curl ${url}: exit ${r.code} ${r.stderr.trim()}`);
  return r.stdout;
}
const curlJson = async (url: string, extra: string[] = []) => {
  const text = await curl(url, extra);
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${url} answered ${text.slice(0, 200)}`);
  }
};

/** Plain TCP through whatever connect set up: the tcp-echo service echoes what it gets. */
async function tcpEcho(host: string, text: string) {
  const r = await runInLaptop(["sh", "-c", `printf '${text}' | timeout 5 socat - TCP:${host}:7000,shut-down`]);
  return r.stdout;
}

async function javaProbe(args: string[], jvmFlags: string[] = []) {
  return runInLaptop(["java", ...jvmFlags, JAVA_PROBE, ...args], { timeoutMs: 60_000 });
}

/** What must fail when connect is not running. */
async function expectUnreachable() {
  for (const url of [`http://echo.${DEMO_NS}.svc.cluster.local/`, `http://echo/`, `http://${echoIp}/`, `http://${echoPod.ip}:8080/`]) {
    const r = await runInLaptop(["curl", "-sS", "-m", "2", url], { timeoutMs: 10_000 });
    expect(r.code, `${url} answered without connect`).not.toBe(0);
  }
}

function start(args: string[]): RunningKtctl {
  const ktctl = startKtctl(["-n", DEMO_NS, "connect", "--debug", ...args], env);
  running.add(ktctl);
  return ktctl;
}
/** ktctl's own log, printed when a test fails (bun shows console output of failed tests). */
const running = new Set<RunningKtctl>();
afterEach(() => {
  for (const ktctl of running) if (process.env.KTCTL_E2E_SHOW_LOG) console.log(ktctl.output());
  running.clear();
});

async function sessionOf(ktctl: RunningKtctl): Promise<string> {
  const line = await ktctl.waitForOutput(/Connected to namespace \S+ in [\d.]+s \(session [a-z0-9]+/, 90_000);
  return /session ([a-z0-9]+)/.exec(line)![1]!;
}

const sessionObjects = async (id: string) =>
  (await kubectlOk(["get", "pods,leases", "-A", "-l", `ktctl.io/session=${id}`, "-o", "name"])).split("\n").filter(Boolean);

beforeAll(async () => {
  await requireCluster();
  home = await mkdtemp(join(tmpdir(), "ktctl-connect-e2e-"));
  env = { KTCTL_HOME: home };
  // Until connect is a built-in, load it the way a team plugin is loaded.
  const builtin = await Bun.file(join(REPO, "core/plugins/builtin.ts")).text();
  if (!builtin.includes("plugins/connect/")) await writeFile(join(home, "config.yaml"), `plugins:\n  - ${join(REPO, "plugins/connect/index.ts")}\n`);
  echoIp = await clusterIpOf("echo");
  [echoPod] = await podsOf("echo");
  // The developer's own process on 8080, on every address of the laptop.
  localServer = Bun.spawn(inLaptop(["bun", "-e", `Bun.serve({ hostname: "0.0.0.0", port: 8080, fetch: () => new Response("local 8080") })`]), {
    stdout: "ignore",
    stderr: "ignore",
  });
  await eventually(async () => expect(await curl("http://127.0.0.1:8080/")).toBe("local 8080"), 15_000);
}, 60_000);

afterAll(async () => {
  localServer?.kill();
  await kubectl(["-n", DEMO_NS, "delete", "service", "connect-later", "--ignore-not-found"]);
  await rm(home, { recursive: true, force: true });
});

describe("connect", () => {
  test("system mode: every name form, ClusterIP, pod IP, TCP, another namespace, a new service, Java; Ctrl-C restores all", async () => {
    const before = await laptopState();
    await expectUnreachable();
    const ktctl = start(["--mode", "system"]);
    let id = "";
    try {
      id = await sessionOf(ktctl);
      for (const name of ["echo", `echo.${DEMO_NS}`, `echo.${DEMO_NS}.svc`, `echo.${DEMO_NS}.svc.cluster.local`]) {
        expect(await curlJson(`http://${name}/form`)).toMatchObject({ name: "echo" });
      }
      expect(await curlJson(`http://${echoIp}/by-cluster-ip`)).toMatchObject({ name: "echo" });
      const pods = await podsOf("echo");
      expect(pods.map((p) => p.name)).toContain((await curlJson(`http://${pods[0]!.ip}:8080/by-pod-ip`)).pod);
      expect(await tcpEcho("tcp-echo", "plain-tcp-through-connect")).toBe("plain-tcp-through-connect");
      expect(await curlJson(`http://echo.${DEMO2_NS}/`)).toMatchObject({ namespace: DEMO2_NS });
      // The developer's 8080 and the cluster's 8080 side by side.
      expect(await curl("http://127.0.0.1:8080/")).toBe("local 8080");
      expect(await curlJson(`http://echo-headless:8080/`)).toMatchObject({ name: "echo" });
      // A service that did not exist when connect started.
      await kubectlOk(["-n", DEMO_NS, "create", "service", "clusterip", "connect-later", "--tcp=80:8080"]);
      await kubectlOk(["-n", DEMO_NS, "patch", "service", "connect-later", "-p", '{"spec":{"selector":{"app":"echo"}}}']);
      expect((await eventually(() => curlJson("http://connect-later/new"), 20_000)).path).toBe("/new");
      // A JVM, with nothing but the system resolver.
      const java = await javaProbe([`http://echo.${DEMO2_NS}/from-java`]);
      expect(java.stderr).toBe("");
      expect(JSON.parse(java.stdout).path).toBe("/from-java");
      expect((await laptopState()).resolv).not.toBe(before.resolv);
    } finally {
      expect(await ktctl.stop("SIGINT")).toBe(130);
      await kubectl(["-n", DEMO_NS, "delete", "service", "connect-later", "--ignore-not-found"]);
    }
    expect(await laptopState()).toEqual(before);
    await expectUnreachable();
    expect(await curl("http://127.0.0.1:8080/")).toBe("local 8080");
    await eventually(async () => expect(await sessionObjects(id)).toEqual([]), 30_000);
  }, 180_000);

  test("hosts mode: names from the hosts file, Java included; SIGKILL restores all within seconds", async () => {
    const before = await laptopState();
    const ktctl = start(["--mode", "hosts"]);
    const id = await sessionOf(ktctl);
    try {
      expect(await Bun.file(`${LAPTOP_ETC}/hosts`).text()).toContain(`BEGIN ktctl connect ${id}`);
      expect(await curlJson(`http://echo.${DEMO_NS}.svc.cluster.local/`)).toMatchObject({ name: "echo" });
      expect(await curlJson("http://echo/")).toMatchObject({ name: "echo" });
      expect(await curlJson(`http://echo.${DEMO2_NS}/`)).toMatchObject({ namespace: DEMO2_NS });
      expect(await curlJson(`http://${echoIp}/`)).toMatchObject({ name: "echo" });
      expect(await tcpEcho(`tcp-echo.${DEMO_NS}`, "hosts-mode-tcp")).toBe("hosts-mode-tcp");
      expect(await curl("http://127.0.0.1:8080/")).toBe("local 8080");
      const java = await javaProbe(["tcp", "tcp-echo", "7000", "java-over-hosts"]);
      expect(java.stdout.trim()).toBe("java-over-hosts");
    } catch (error) {
      await ktctl.stop("SIGINT");
      throw error;
    }
    await ktctl.stop("SIGKILL");
    const killed = Date.now();
    // The watchdog restores the laptop: no request by ktctl itself can do it now.
    await eventually(async () => expect(await laptopState()).toEqual(before), 15_000, 200);
    console.log(`laptop restored ${Date.now() - killed} ms after SIGKILL`);
    await expectUnreachable();
    await eventually(async () => expect(await sessionObjects(id)).toEqual([]), 30_000);
  }, 180_000);

  test("proxy mode: SOCKS5 and HTTP with names resolved in the cluster, Java with the printed flags; nothing on the laptop changes", async () => {
    const before = await laptopState();
    const ktctl = start(["--mode", "proxy", "--proxyPort", "0"]);
    let id = "";
    try {
      id = await sessionOf(ktctl);
      const port = Number(/proxy on 127\.0\.0\.1:(\d+)/.exec(await ktctl.waitForOutput(/proxy on 127\.0\.0\.1:\d+/))![1]);
      const jvm = (await ktctl.waitForOutput(/JVM: java .* \.\.\./)).replace(/^JVM: java /, "").replace(/ \.\.\.$/, "").split(" ");
      expect(await laptopState()).toEqual(before);
      expect(await curlJson("http://echo/", ["--socks5-hostname", `127.0.0.1:${port}`])).toMatchObject({ name: "echo" });
      expect(await curlJson(`http://echo.${DEMO2_NS}.svc.cluster.local/`, ["-x", `http://127.0.0.1:${port}`])).toMatchObject({ namespace: DEMO2_NS });
      expect((await curlJson(`http://${echoPod.ip}:8080/`, ["-p", "-x", `http://127.0.0.1:${port}`])).pod).toBe(echoPod.name);
      const java = await javaProbe([`http://echo.${DEMO_NS}/java-proxy`], jvm);
      expect(JSON.parse(java.stdout).path).toBe("/java-proxy");
      const javaTcp = await javaProbe(["tcp", "tcp-echo", "7000", "java-socks"], jvm);
      expect(javaTcp.stdout.trim()).toBe("java-socks");
    } finally {
      expect(await ktctl.stop("SIGINT")).toBe(130);
    }
    expect(await laptopState()).toEqual(before);
    await eventually(async () => expect(await sessionObjects(id)).toEqual([]), 30_000);
  }, 180_000);

  test("the shadow deleted mid-session: connect heals with a new one; SIGKILL in system mode restores all", async () => {
    const before = await laptopState();
    const ktctl = start(["--mode", "system"]);
    let id = "";
    try {
      id = await sessionOf(ktctl);
      expect(await tcpEcho("tcp-echo", "before")).toBe("before");
      const [shadow] = await sessionObjects(id).then((names) => names.filter((n) => n.startsWith("pod/")));
      await kubectlOk(["-n", DEMO_NS, "delete", shadow!, "--wait=false"]);
      const healed = await eventually(async () => {
        const reply = await tcpEcho("tcp-echo", "healed");
        if (reply !== "healed") throw new Error(`tcp-echo answered "${reply}"`);
        return reply;
      }, 60_000, 500);
      expect(healed).toBe("healed");
    } finally {
      await ktctl.stop("SIGKILL");
    }
    await eventually(async () => expect(await laptopState()).toEqual(before), 15_000, 200);
    await expectUnreachable();
    await eventually(async () => expect(await sessionObjects(id)).toEqual([]), 30_000);
  }, 180_000);

  test("--via pod: straight to the pods with no shadow; a service whose endpoint is no pod starts the shadow on demand; Ctrl-C restores all", async () => {
    const before = await laptopState();
    const ktctl = start(["--mode", "system", "--via", "pod"]);
    let id = "";
    try {
      id = await sessionOf(ktctl);
      expect(ktctl.output()).toContain("straight to the pods");
      expect(await curlJson("http://echo/via-pod")).toMatchObject({ name: "echo", path: "/via-pod" });
      expect(await curlJson(`http://${echoIp}/by-cluster-ip`)).toMatchObject({ name: "echo" });
      const pods = await podsOf("echo");
      expect((await curlJson(`http://${pods[0]!.ip}:8080/by-pod-ip`)).pod).toBe(pods[0]!.name);
      expect(await tcpEcho("tcp-echo", "plain-tcp-straight")).toBe("plain-tcp-straight");
      expect(await curlJson(`http://echo.${DEMO2_NS}/`)).toMatchObject({ namespace: DEMO2_NS });
      // The laptop namespace reaches nothing but the API server: these answers came through the
      // pods' own port-forwards, and no shadow pod exists.
      expect(ktctl.output()).toMatch(new RegExp(`connection to ${echoIp.replace(/\./g, "\\.")}:80: straight to pod echo-\\S+:8080`));
      expect(ktctl.output()).not.toContain("Starting a shadow pod");
      expect((await sessionObjects(id)).filter((n) => n.startsWith("pod/"))).toEqual([]);

      // A service without a selector, its one endpoint the echo pod's address with no pod named:
      // only the cluster knows where that goes, so the shadow starts for it.
      await kubectlOk(["apply", "-f", "-"], { stdin: MANUAL_SERVICE(echoPod.ip) });
      const manualIp = await eventually(() => clusterIpOf("connect-manual"), 20_000);
      expect((await eventually(() => curlJson(`http://${manualIp}/manual`), 60_000)).path).toBe("/manual");
      expect(ktctl.output()).toContain(`Starting a shadow pod: a connection to ${manualIp}:80 needs it`);
      expect((await sessionObjects(id)).filter((n) => n.startsWith("pod/"))).toHaveLength(1);
      // The pods still go straight.
      expect(await curlJson("http://echo/still-straight")).toMatchObject({ path: "/still-straight" });
    } finally {
      expect(await ktctl.stop("SIGINT")).toBe(130);
      await kubectl(["-n", DEMO_NS, "delete", "service,endpointslice", "connect-manual", "connect-manual-1", "--ignore-not-found"]);
    }
    expect(await laptopState()).toEqual(before);
    await expectUnreachable();
    await eventually(async () => expect(await sessionObjects(id)).toEqual([]), 30_000);
  }, 180_000);

  test("--via pod in proxy mode: names resolved by ktctl go straight to the pods, no shadow", async () => {
    const ktctl = start(["--mode", "proxy", "--proxyPort", "0", "--via", "pod"]);
    let id = "";
    try {
      id = await sessionOf(ktctl);
      const port = Number(/proxy on 127\.0\.0\.1:(\d+)/.exec(await ktctl.waitForOutput(/proxy on 127\.0\.0\.1:\d+/))![1]);
      expect(await curlJson(`http://echo.${DEMO_NS}.svc.cluster.local/socks`, ["--socks5-hostname", `127.0.0.1:${port}`])).toMatchObject({ path: "/socks" });
      expect(await curlJson("http://echo-headless:8080/headless", ["-x", `http://127.0.0.1:${port}`])).toMatchObject({ path: "/headless" });
      expect(ktctl.output()).toMatch(/connection to echo\.demo\.svc\.cluster\.local:80: straight to pod echo-\S+:8080/);
      expect((await sessionObjects(id)).filter((n) => n.startsWith("pod/"))).toEqual([]);
    } finally {
      expect(await ktctl.stop("SIGINT")).toBe(130);
    }
    await eventually(async () => expect(await sessionObjects(id)).toEqual([]), 30_000);
  }, 120_000);

  test("--via pod on a v4-only API server: the pods cannot be reached straight, so the shadow starts up front", async () => {
    const ktctl = startKtctl(["-n", DEMO_NS, "connect", "--debug", "--mode", "proxy", "--proxyPort", "0", "--via", "pod"], { ...env, KTCTL_PORT_FORWARD: "v4" });
    running.add(ktctl);
    let id = "";
    try {
      id = await sessionOf(ktctl);
      const port = Number(/proxy on 127\.0\.0\.1:(\d+)/.exec(await ktctl.waitForOutput(/proxy on 127\.0\.0\.1:\d+/))![1]);
      const before = ktctl.output();
      expect(before).toContain("Starting a shadow pod: the API server's port-forward cannot carry TCP's half-close to the pods (v4 only)");
      expect(before).not.toContain("straight to the pods");
      expect(await curlJson("http://echo/v4", ["-x", `http://127.0.0.1:${port}`])).toMatchObject({ path: "/v4" });
      expect(ktctl.output()).not.toContain("straight to pod");
    } finally {
      expect(await ktctl.stop("SIGINT")).toBe(130);
    }
    await eventually(async () => expect(await sessionObjects(id)).toEqual([]), 30_000);
  }, 120_000);

  test("--dryRun prints the plan and changes nothing", async () => {
    const before = await laptopState();
    const ktctl = start(["--mode", "system", "--dryRun", "--excludeIps", "10.96.200.0/24"]);
    const code = await ktctl.proc.exited;
    await ktctl.stop();
    expect(code).toBe(0);
    expect(ktctl.output()).toContain("driver: linux-system");
    expect(ktctl.output()).toContain("ip daddr 10.96.200.0/24 return");
    expect(ktctl.output()).toContain("| nameserver 127.19.0.53");
    expect(await laptopState()).toEqual(before);
  }, 60_000);
});

