// Many users on one namespace at once, against the real cluster, ktctl in the laptop namespace:
// (a) two people exchange the same service: the second is refused with one line naming the owner
//     (user@host) and the session's age, exit code 10, while the first one's traffic keeps flowing;
// (b) ten developers mesh one service with ten marks, each with a local server answering as itself:
//     each gets only requests carrying its mark, unmarked requests reach the cluster's pods, while
//     the others join and leave in random order; at the end the service is restored exactly and
//     the router is gone;
// (c) five `connect --shareShadow` of one owner start and stop in random order: one shadow pod
//     lists exactly the live sessions at every step, each connect works, the last one out removes it.
// Slow by design, so not part of the e2e suite; run it with a run count:
//
//   KTCTL_USERS_RUNS=5 bun test test/chaos/users.test.ts
//
// Needs the test cluster (test/cluster/up) and root (the laptop network namespace). Two people are
// two ktctl processes with their own KTCTL_HOME and USER: ktctl names a session's owner
// `$USER@<host name>` (core/session/owner.ts).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { hostname } from "node:os";
import { DEMO_NS, eventually, inLaptop, kubectlJson, requireCluster, runInLaptop, runInPod, startWatched, type RunningKtctl } from "../e2e/harness.ts";
import { KUBECONFIG, deployWorkspace, ktctlArgv, removeHome, repairWorkspace, scratchHome, snapshot, tidyWorkspace, untilRestored } from "../e2e/reliability-harness.ts";

const NS = "rel-users";
const RUNS = Number(process.env.KTCTL_USERS_RUNS ?? "1");
/** KTCTL_USERS_SCENARIOS=b,c runs only those. */
const ONLY = process.env.KTCTL_USERS_SCENARIOS?.split(",").filter(Boolean);
const scenario = (name: "a" | "b" | "c") => (!ONLY || ONLY.includes(name) ? test : test.skip);
const DEVELOPERS = 10;
const SHARERS = 5;
const PORT = 29300;
const SESSION = /session ([a-z][a-z0-9]{3,15})\b/;
const EXCHANGED = /exchanged svc\/echo in [\d.]+s \([^)]*session [a-z0-9]+/;
const MESHED = /\bMARK \S+: \S+/;
const CONNECTED = /Connected to namespace \S+ in [\d.]+s \(session [a-z0-9]+/;

const running = new Set<RunningKtctl>();
const homes: string[] = [];

interface Result {
  scenario: "a" | "b" | "c";
  passed: boolean;
  /** The scenario's figure of merit: refusal time (a), slowest join (b), slowest connect (c). */
  worstMs: number;
  restoreMs: number;
  detail: string;
  note?: string;
}
const results: Result[] = [];

function home(prefix: string): string {
  const dir = scratchHome(prefix);
  homes.push(dir);
  return dir;
}

/** ktctl from source in the laptop namespace, as the person `user` with their own KTCTL_HOME. */
function ktctl(args: string[], user: string, ktctlHome: string): RunningKtctl {
  const k = startWatched(ktctlArgv(KUBECONFIG, NS, args), { KTCTL_HOME: ktctlHome, USER: user, LOGNAME: user, NO_COLOR: "1" });
  running.add(k);
  return k;
}

async function stop(k: RunningKtctl, signal: NodeJS.Signals = "SIGINT"): Promise<number> {
  const code = await k.stop(signal);
  running.delete(k);
  return code;
}

const sessionOf = (line: string) => SESSION.exec(line)?.[1] ?? "";

/** Servers on the laptop, one per name and port, answering `{ pod: NAME }` and logging every request's mark. */
async function startLaptopServers(ports: Record<string, number>): Promise<{ marksSeen(): Map<string, string[]>; stop(): Promise<void> }> {
  const script = `
    for (const [name, port] of Object.entries(${JSON.stringify(ports)})) {
      Bun.serve({ port, hostname: "127.0.0.1", fetch(req) {
        console.log(JSON.stringify({ name, mark: req.headers.get("version") }));
        return Response.json({ pod: name });
      } });
    }
    console.log("READY");`;
  const servers = startWatched(inLaptop(["bun", "-e", script]));
  await servers.waitForOutput(/READY/, 15_000);
  return {
    marksSeen() {
      const seen = new Map<string, string[]>();
      for (const line of servers.output().split("\n")) {
        if (!line.startsWith("{")) continue;
        const { name, mark } = JSON.parse(line);
        seen.set(name, [...(seen.get(name) ?? []), mark ?? "(none)"]);
      }
      return seen;
    },
    stop: async () => void (await servers.stop("SIGTERM")),
  };
}

/**
 * Requests from a pod to the service, one per entry (a mark, or undefined for none), in one exec:
 * who answered each, "FAILED" for a request that got no answer.
 */
async function askFromPod(marks: (string | undefined)[], pauseSeconds = 0): Promise<string[]> {
  const one = (mark: string | undefined) =>
    `kecho client http http://echo.${NS}/ ${mark ? `-H VERSION:${mark}` : ""} 2>/dev/null || echo '{"pod":"FAILED"}'${pauseSeconds ? `; sleep ${pauseSeconds}` : ""}`;
  const r = await runInPod(["sh", "-c", marks.map(one).join("; ")], "toolbox", DEMO_NS, { timeoutMs: 30_000 + marks.length * (3_000 + pauseSeconds * 1000) });
  const answers = r.stdout
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => String(JSON.parse(l).pod));
  if (answers.length !== marks.length) throw new Error(`asked ${marks.length}, got ${answers.length} answers: ${r.stdout} ${r.stderr}`);
  return answers;
}

const isClusterPod = (answer: string) => answer.startsWith("echo-");

function shuffle<T>(items: T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

const randomDelay = (maxMs: number) => Bun.sleep(Math.floor(Math.random() * maxMs));

/** Runs a scenario once; a thrown error is a failed run, and the namespace is repaired for the next. */
async function record(scenario: Result["scenario"], run: () => Promise<Omit<Result, "scenario" | "passed" | "detail">>): Promise<Result> {
  let result: Result;
  try {
    result = { scenario, passed: true, detail: "", ...(await run()) };
  } catch (error) {
    result = { scenario, passed: false, worstMs: 0, restoreMs: 0, detail: (error as Error).message };
  }
  for (const k of running) await stop(k);
  if (!result.passed) await repairWorkspace(NS);
  results.push(result);
  console.log(`${scenario}: ${result.passed ? "passed" : "FAILED"}; worst ${result.worstMs} ms, restored in ${result.restoreMs} ms ${result.note ?? ""} ${result.detail}`);
  return result;
}

/** Waits for everything to be as in `before`; throws naming what is not. */
async function restored(before: Awaited<ReturnType<typeof snapshot>>, timeoutMs = 60_000): Promise<number> {
  const { left, ms } = await untilRestored(before, timeoutMs);
  if (left.length) throw new Error(`not restored after ${ms} ms: ${left.join("; ")}`);
  return ms;
}

// ---------------------------------------------------------------------------------------------
// (a) Two people, one service

async function twoPeopleExchange(): Promise<Omit<Result, "scenario" | "passed" | "detail">> {
  const before = await snapshot(NS, { laptop: false });
  const [alicePort, bobPort] = [PORT, PORT + 1];
  const servers = await startLaptopServers({ alice: alicePort, bob: bobPort });
  try {
    const alice = ktctl(["exchange", "echo", "--expose", `${alicePort}:80`], "alice", home("alice"));
    const aliceId = sessionOf(await alice.waitForOutput(EXCHANGED, 120_000));
    const serviceBefore = await kubectlJson(["-n", NS, "get", "service", "echo"]);
    // "exchanged" means the endpoints list her shadow alone; kube-proxy rewrites its rules up to
    // about a second later (docs/exchange.md), and a request in between reaches an original pod.
    // Her traffic reaching her laptop is what Bob must not disturb: wait for it first.
    await eventually(async () => expect(await askFromPod([undefined])).toEqual(["alice"]), 15_000, 100);

    // Alice's traffic flows the whole time Bob tries: 20 requests 0.2 s apart.
    const traffic = askFromPod(Array(20).fill(undefined), 0.2);
    const started = Date.now();
    const bob = ktctl(["exchange", "echo", "--expose", `${bobPort}:80`], "bob", home("bob"));
    await bob.proc.exited;
    const code = await stop(bob);
    const refusedMs = Date.now() - started;
    const answers = await traffic;

    const errors = bob.output().split("\n").filter((l) => l.startsWith("ktctl: "));
    expect({ code, errors }).toEqual({
      code: 10,
      errors: [expect.stringMatching(new RegExp(`^ktctl: service ${NS}/echo is already taken by alice@${hostname()} \\(session ${aliceId}, exchange, started \\d+s ago\\)$`))],
    });
    expect(answers.filter((a) => a !== "alice")).toEqual([]);
    // Nothing of Alice's session was touched: the service is the same object version, her session runs.
    const serviceAfter = await kubectlJson(["-n", NS, "get", "service", "echo"]);
    expect(serviceAfter.metadata.resourceVersion).toBe(serviceBefore.metadata.resourceVersion);
    expect(alice.proc.exitCode).toBeNull();
    expect(servers.marksSeen().get("bob")).toBeUndefined();

    expect(await stop(alice)).toBe(130);
    return { worstMs: refusedMs, restoreMs: await restored(before) };
  } finally {
    await servers.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// (b) Ten developers, one mesh

interface Developer {
  name: string;
  port: number;
  k?: RunningKtctl;
}

async function join(dev: Developer): Promise<number> {
  const started = Date.now();
  dev.k = ktctl(["--debug", "mesh", "echo", "--expose", `${dev.port}:80`, "--versionMark", dev.name], dev.name, home(dev.name));
  await dev.k.waitForOutput(MESHED, 180_000);
  return Date.now() - started;
}

async function leave(dev: Developer): Promise<void> {
  const k = dev.k!;
  dev.k = undefined;
  const signal = Math.random() < 0.5 ? "SIGINT" : "SIGTERM";
  const code = await stop(k, signal);
  if (code !== (signal === "SIGINT" ? 130 : 143)) throw new Error(`${dev.name} exited ${code} on ${signal}:\n${k.output()}`);
}

/** The developer whose session made the mesh (the others joined it). */
const creatorOf = (devs: Developer[]) => devs.find((d) => d.k && /created the mesh of/.test(d.k.output()));

/**
 * A mesh made from nothing is ready once the service's endpoints are its router; kube-proxy
 * follows them within its sync period, which no API shows, so for a moment the creator's mark may
 * still reach the cluster's pods. Waits (up to 5 s) until it reaches the creator; returns how long.
 */
async function creatorSettled(devs: Developer[]): Promise<number> {
  const creator = creatorOf(devs);
  if (!creator) return 0;
  const started = Date.now();
  await eventually(async () => {
    const [answer] = await askFromPod([creator.name]);
    if (answer !== creator.name) throw new Error(`${creator.name}'s mark still reaches ${answer} ${Date.now() - started} ms after the mesh was made`);
  }, 5_000, 100);
  return Date.now() - started;
}

/**
 * Each developer's mark reaches that developer while they are in, the cluster's pods when they are
 * out; unmarked requests reach the cluster's pods.
 */
async function expectRouting(phase: string, devs: Developer[]): Promise<void> {
  const marks = [...devs.map((d) => d.name), undefined, undefined];
  const answers = await askFromPod(marks);
  const wrong = marks.flatMap((mark, i) => {
    const answer = answers[i]!;
    const dev = devs.find((d) => d.name === mark);
    const ok = dev?.k ? answer === dev.name : isClusterPod(answer);
    return ok ? [] : [`${mark ?? "unmarked"} -> ${answer}`];
  });
  if (!wrong.length) return;
  // Say whether it lasts, and what the routers and the developers saw.
  const again = await askFromPod(wrong.map((w) => w.split(" -> ")[0]).map((m) => (m === "unmarked" ? undefined : m)));
  const routers = await kubectlJson<{ items: any[] }>(["-n", NS, "get", "pods", "-l", "ktctl.io/role=mesh-router-echo"]);
  const pods = routers.items.map((p) => `${p.metadata.name}${p.metadata.deletionTimestamp ? " (deleting)" : ""} since ${p.metadata.creationTimestamp}`);
  const logs = devs.filter((d) => wrong.some((w) => w.startsWith(`${d.name} `)) && d.k).map((d) => `--- ${d.name}:\n${d.k!.output().split("\n").slice(-40).join("\n")}`);
  throw new Error(`${phase}: misrouted: ${wrong.join(", ")}; asked again: ${again.join(", ")}; router pods: ${pods.join(", ")}\n${logs.join("\n")}`);
}

async function tenDevelopersMesh(): Promise<Omit<Result, "scenario" | "passed" | "detail">> {
  const before = await snapshot(NS, { laptop: false });
  const devs: Developer[] = Array.from({ length: DEVELOPERS }, (_, i) => ({ name: `dev${i}`, port: PORT + 10 + i }));
  const servers = await startLaptopServers(Object.fromEntries(devs.map((d) => [d.name, d.port])));
  let worstJoinMs = 0;
  const joinTimed = async (dev: Developer) => (worstJoinMs = Math.max(worstJoinMs, await join(dev)));
  try {
    // All ten join at once, in random order a few milliseconds apart: the first creates the router,
    // the others race to join its mesh.
    await Promise.all(shuffle(devs).map(async (dev) => (await randomDelay(500), joinTimed(dev))));
    let settleMs = await creatorSettled(devs);
    await expectRouting("all joined", devs);

    // Churn: a random few leave while others (that left before) join, and requests flow meanwhile.
    for (let round = 0; round < 3; round++) {
      const inside = shuffle(devs.filter((d) => d.k));
      const outside = devs.filter((d) => !d.k);
      const leaving = inside.slice(0, 2 + Math.floor(Math.random() * 3));
      const changing = new Set([...leaving, ...outside].map((d) => d.name));
      const stayers = devs.filter((d) => d.k && !changing.has(d.name));
      await Promise.all([
        ...leaving.map(async (d) => (await randomDelay(1000), leave(d))),
        ...outside.map(async (d) => (await randomDelay(1000), joinTimed(d))),
        // The stayers are never disturbed, whatever the others do.
        (async () => {
          for (let i = 0; i < 3; i++) await expectRouting(`round ${round}, while others change`, stayers);
        })(),
      ]);
      await expectRouting(`round ${round}`, devs);
    }

    // Everybody leaves in random order, the last one just as a newcomer joins (its shadow is up, it
    // is about to join the mesh): the mesh goes from one member to none and back, and the newcomer
    // may find the router and companion of a mesh being taken down.
    const last = shuffle(devs.filter((d) => d.k));
    for (const d of last.slice(0, -1)) await leave(d);
    const newcomer = devs.find((d) => !d.k)!;
    const joining = joinTimed(newcomer);
    await newcomer.k!.waitForOutput(/tunnel: connected/, 120_000);
    await Promise.all([(async () => (await randomDelay(1500), leave(last.at(-1)!)))(), joining]);
    settleMs = Math.max(settleMs, await creatorSettled(devs));
    await expectRouting("the mesh emptied and made again", devs);
    await leave(newcomer);

    // Each server saw only requests carrying its own mark.
    const seen = servers.marksSeen();
    const foreign = [...seen].flatMap(([name, marks]) => marks.filter((m) => m !== name).map((m) => `${name} got ${m}`));
    expect(foreign).toEqual([]);
    expect([...seen.keys()].sort()).toEqual(devs.map((d) => d.name).sort());
    return { worstMs: worstJoinMs, restoreMs: await restored(before), note: `creator's mark settled in ${settleMs} ms` };
  } finally {
    await servers.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// (c) Five --shareShadow connects of one owner

interface Sharer {
  k?: RunningKtctl;
  id?: string;
  proxyPort?: number;
}

/** The shared shadow pods of the namespace (not terminating), with their holders. */
async function sharedPods(): Promise<{ name: string; holders: string[] }[]> {
  const list = await kubectlJson<{ items: any[] }>(["-n", NS, "get", "pods", "-l", "ktctl.io/share"]);
  return list.items
    .filter((p) => !p.metadata.deletionTimestamp)
    .map((p) => ({ name: p.metadata.name, holders: JSON.parse(p.metadata.annotations?.["ktctl.io/sharers"] ?? "[]").sort() }));
}

async function throughProxy(port: number): Promise<string> {
  const r = await runInLaptop(["curl", "-sS", "-m", "5", "--socks5-hostname", `127.0.0.1:${port}`, `http://echo.${NS}/`], { timeoutMs: 15_000 });
  if (r.code !== 0) throw new Error(`through the proxy on ${port}: exit ${r.code} ${r.stderr.trim()}`);
  return JSON.parse(r.stdout).pod;
}

async function fiveSharersConnect(): Promise<Omit<Result, "scenario" | "passed" | "detail">> {
  const before = await snapshot(NS, { laptop: false });
  const ownerHome = home("sharer");
  const sharers: Sharer[] = Array.from({ length: SHARERS }, () => ({}));
  // A random interleaving of every start and stop, each stop after its own start.
  const events: { sharer: Sharer; kind: "start" | "stop" }[] = [];
  const pending = sharers.map((sharer) => [{ sharer, kind: "start" as const }, { sharer, kind: "stop" as const }]);
  while (pending.some((p) => p.length)) {
    const open = pending.filter((p) => p.length);
    events.push(open[Math.floor(Math.random() * open.length)]!.shift()!);
  }
  let worstConnectMs = 0;
  const start = async (s: Sharer) => {
    const started = Date.now();
    s.k = ktctl(["--debug", "connect", "--shareShadow", "--mode", "proxy", "--proxyPort", "0"], "carol", ownerHome);
    s.id = sessionOf(await s.k.waitForOutput(CONNECTED, 120_000).catch((error: Error) => {
      throw new Error(`${error.message}\nthe others:\n${sharers.filter((x) => x !== s && x.k).map((x) => x.k!.output()).join("\n---\n")}`);
    }));
    s.proxyPort = Number(/proxy on 127\.0\.0\.1:(\d+)/.exec(await s.k.waitForOutput(/proxy on 127\.0\.0\.1:\d+/))![1]);
    worstConnectMs = Math.max(worstConnectMs, Date.now() - started);
  };
  const end = async (s: Sharer) => {
    const k = s.k!;
    s.k = undefined;
    const code = await stop(k, "SIGINT");
    if (code !== 130) throw new Error(`connect ${s.id} exited ${code}:\n${k.output()}`);
  };
  // Events run in groups of one to three at the same moment: joins and leaves race each other.
  for (let i = 0; i < events.length; ) {
    const group = events.slice(i, (i += 1 + Math.floor(Math.random() * 3)));
    // A sharer's own start and stop in one group still come in that order; different sharers race.
    const bySharer = new Map<Sharer, typeof group>();
    for (const e of group) bySharer.set(e.sharer, [...(bySharer.get(e.sharer) ?? []), e]);
    await Promise.all(
      [...bySharer.values()].map(async (mine) => {
        await randomDelay(200);
        for (const e of mine) await (e.kind === "start" ? start(e.sharer) : end(e.sharer));
      }),
    );
    const live = sharers.filter((s) => s.k).map((s) => s.id!).sort();
    const pods = await sharedPods();
    if (live.length) {
      // One pod, listing exactly the sessions that live; each of them reaches the cluster through it.
      expect(pods).toEqual([{ name: expect.any(String), holders: live }]);
      for (const s of sharers.filter((x) => x.k)) expect(isClusterPod(await throughProxy(s.proxyPort!))).toBe(true);
    } else {
      // The last one out removed it (the pod may still be terminating: sharedPods leaves those out).
      expect(pods).toEqual([]);
    }
  }
  return { worstMs: worstConnectMs, restoreMs: await restored(before, 30_000) };
}

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  await requireCluster();
  await deployWorkspace(NS);
}, 180_000);

afterAll(async () => {
  for (const k of running) await k.stop("SIGINT");
  await tidyWorkspace(NS);
  for (const dir of homes) removeHome(dir);
  const rows = (["a", "b", "c"] as const)
    .filter((s) => results.some((r) => r.scenario === s))
    .map((s) => {
      const mine = results.filter((r) => r.scenario === s);
      const worst = (key: "worstMs" | "restoreMs") => (Math.max(...mine.map((r) => r[key])) / 1000).toFixed(1);
      return `| ${s} | ${mine.length} | ${mine.filter((r) => r.passed).length} | ${worst("worstMs")} s | ${worst("restoreMs")} s |`;
    });
  console.log(["| scenario | runs | passed | worst time | worst restore |", "|---|---|---|---|---|", ...rows].join("\n"));
});

describe(`many users, ${RUNS} run(s) each`, () => {
  scenario("a")("(a) two people exchange one service: the second is refused with the owner and age, the first undisturbed", async () => {
    const mine: Result[] = [];
    for (let i = 0; i < RUNS; i++) mine.push(await record("a", twoPeopleExchange));
    expect(mine.filter((r) => !r.passed).map((r) => r.detail)).toEqual([]);
  }, RUNS * 180_000 + 60_000);

  scenario("b")(`(b) ${DEVELOPERS} developers mesh one service with ${DEVELOPERS} marks, joining and leaving in random order`, async () => {
    const mine: Result[] = [];
    for (let i = 0; i < RUNS; i++) mine.push(await record("b", tenDevelopersMesh));
    expect(mine.filter((r) => !r.passed).map((r) => r.detail)).toEqual([]);
  }, RUNS * 600_000 + 60_000);

  scenario("c")(`(c) ${SHARERS} connect --shareShadow of one owner start and stop in random order`, async () => {
    const mine: Result[] = [];
    for (let i = 0; i < RUNS; i++) mine.push(await record("c", fiveSharersConnect));
    expect(mine.filter((r) => !r.passed).map((r) => r.detail)).toEqual([]);
  }, RUNS * 300_000 + 60_000);
});
