// Bad and hostile input: names and ports that could escape a path or a selector, for every command's
// positional and flags; a corrupt local journal; a session Lease edited by hand. Each gives one clear
// line and a distinct exit code, nothing is changed or left in the cluster, and `clean` still
// restores what the cluster's own records describe, keeping the damaged record for the user.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { eventually, kubectlOk, requireCluster } from "./harness.ts";
import { runKtctl, startKtctl, startLaptopServer, stopAllKtctl, watchdogPid } from "./exchange-harness.ts";
import { clusterState, deployWorkspace, ktctlObjects, removeHome, scratchHome, tidyWorkspace } from "./reliability-harness.ts";

const NS = "rel-input";
const PORT = 28800;
const LONG = "a".repeat(300);
let home: string;
let before: string;
let laptop: { stop(): Promise<void> };

beforeAll(async () => {
  await requireCluster();
  await deployWorkspace(NS);
  before = await clusterState(NS);
  home = scratchHome("input");
  laptop = await startLaptopServer(PORT);
}, 180_000);

afterAll(async () => {
  await stopAllKtctl();
  await laptop?.stop();
  await tidyWorkspace(NS);
  removeHome(home);
});

const expose = ["--expose", `${PORT}:80`];

/** [arguments, exit code, what the one line says]. 2: usage (refused before any request), 5: not found. */
const CASES: [string[], number, RegExp][] = [
  // Path escapes: ".." reached the namespace itself (services/.. resolves to it), "/" a subresource.
  [["forward", "svc/..", "28801:80"], 2, /invalid name "\.\."/],
  [["forward", "pod/..", "28801:80"], 2, /invalid name "\.\."/],
  [["forward", "svc/a/b", "28801:80"], 2, /invalid target "svc\/a\/b"/],
  [["exchange", "..", ...expose], 2, /invalid name "\.\."/],
  [["exchange", "deployment/..", "--mode", "scale", ...expose], 2, /invalid name "\.\."/],
  [["exchange", "a/b", ...expose], 2, /unsupported target kind "a"/],
  [["mesh", "..", ...expose, "--versionMark", "m"], 2, /invalid name "\.\."/],
  [["mesh", "echo%2Fstatus", ...expose, "--versionMark", "m"], 2, /invalid name "echo\/status"/],
  [["recover", ".."], 2, /invalid name "\.\."/],
  [["preview", "..", ...expose], 2, /invalid service name "\.\."/],
  [["preview", "a/b", ...expose], 2, /invalid service name "a\/b"/],
  // Selector syntax as a name: a name, looked up as one (never parsed as a selector).
  [["forward", "svc/x,y=z", "28801:80"], 5, /not found: service "x,y=z"/],
  [["exchange", "app in (a)", ...expose], 5, /not found: service "app in \(a\)"/],
  [["exchange", "x,y=z", ...expose], 5, /not found: service "x,y=z"/],
  [["preview", "x,y=z", ...expose], 2, /invalid service name "x,y=z"/],
  // Too long and unicode.
  [["forward", `svc/${LONG}`, "28801:80"], 5, /not found: service "a{300}"/],
  [["exchange", LONG, ...expose], 5, /not found: service "a{300}"/],
  [["preview", LONG, ...expose], 2, /invalid service name "a{300}"/],
  [["exchange", "ünï", ...expose], 5, /not found: service "ünï"/],
  [["preview", "ünï", ...expose], 2, /invalid service name "ünï"/],
  [["mesh", "echo", ...expose, "--versionMark", "ünï"], 2, /"ünï" is not a usable header value/],
  [["mesh", "echo", ...expose, "--versionMark", LONG], 2, /is not a usable header value/],
  // Ports.
  [["exchange", "echo", "--expose", "../80"], 2, /invalid port "\.\.\/80"/],
  [["exchange", "echo", "--expose", "28800:a/b"], 2, /invalid port "a\/b"/],
  [["forward", "svc/echo", "28801:70000"], 2, /70000 out of range/],
  [["preview", "web", "--expose", "-1"], 2, /invalid port|out of range/],
];

function oneLine(output: string): string[] {
  return output.split("\n").filter((l) => l.startsWith("ktctl: "));
}

describe("names and ports that could escape a path or a selector", () => {
  for (const [args, code, message] of CASES) {
    const shown = args.map((a) => (a.length > 40 ? `${a.slice(0, 12)}…(${a.length})` : a)).join(" ");
    test(`${shown}: exit ${code}, one line`, async () => {
      const argv = args.map((a) => a.replace("%2F", "/"));
      const r = await runKtctl(argv, home, {}, NS);
      expect({ code: r.code, lines: oneLine(r.output) }).toEqual({ code, lines: [expect.stringMatching(message)] });
      expect(r.output).not.toMatch(/\n\s+at /);
    }, 60_000);
  }

  test("after all of them the namespace is as it was and nothing of ktctl is in it", async () => {
    await eventually(async () => {
      const left = await ktctlObjects(NS);
      if (left.length) throw new Error(`left behind: ${left.join(", ")}`);
      if ((await clusterState(NS)) !== before) throw new Error("namespace changed");
    }, 30_000);
  }, 60_000);
});

/** An exchange session whose ktctl and watchdog are SIGKILLed (so only records are left), with a short lease. */
async function abandonedExchange(): Promise<{ id: string; journal: string; env: Record<string, string> }> {
  const env = { KTCTL_SESSION_LEASE_SECONDS: "4" };
  const k = startKtctl(["exchange", "echo", ...expose], home, env, NS);
  const [, id] = (await k.waitFor(/exchanged svc\/echo in [\d.]+s \(selector mode, session ([a-z0-9]+)\)/, 90_000)) as RegExpMatchArray;
  process.kill(watchdogPid(home, id!), "SIGKILL");
  k.proc.kill("SIGKILL");
  await k.exited;
  return { id: id!, journal: join(home, "sessions", `${id}.json`), env };
}

/** `ktctl clean` once the lease has expired by the server's clock (it says "alive" until then). */
async function cleanAfterExpiry(env: Record<string, string>, id: string) {
  return eventually(async () => {
    const r = await runKtctl(["clean"], home, env, NS);
    if (new RegExp(`session ${id}: cleaned`).test(r.output)) return r;
    throw new Error(`not cleaned yet:\n${r.output}`);
  }, 30_000, 1000);
}

async function expectRestored() {
  await eventually(async () => {
    const now = await clusterState(NS);
    if (now !== before) throw new Error(`not restored:\n${now}`);
    const left = await ktctlObjects(NS);
    if (left.length) throw new Error(`left behind: ${left.join(", ")}`);
  }, 30_000);
}

describe("damaged records", () => {
  test("a truncated local journal: clean restores the cluster from its Lease, then one line, exit 14, file kept", async () => {
    const { id, journal, env } = await abandonedExchange();
    const damaged = readFileSync(journal, "utf8").slice(0, 100);
    writeFileSync(journal, damaged);
    const r = await cleanAfterExpiry(env, id);
    expect(r.code).toBe(14);
    expect(oneLine(r.output)).toEqual([expect.stringMatching(new RegExp(`^ktctl: session journal ${journal} is unreadable \\(`))]);
    await expectRestored();
    expect(readFileSync(journal, "utf8")).toBe(damaged); // nothing lost: the user decides
    // Once the user has looked and removed it, clean is quiet again.
    rmSync(journal);
    expect((await runKtctl(["clean"], home, env, NS)).code).toBe(0);
  }, 120_000);

  test("a session Lease edited by hand (journal garbage) and no local journal: clean restores from the objects' own marks, exit 14", async () => {
    const { id, journal, env } = await abandonedExchange();
    await kubectlOk(["-n", NS, "annotate", "--overwrite", "lease", `ktctl-${id}`, "ktctl.io/journal={{not json"]);
    rmSync(journal); // as if cleaning from another machine
    const r = await cleanAfterExpiry(env, id);
    expect(r.code).toBe(14);
    expect(oneLine(r.output)).toEqual([expect.stringMatching(new RegExp(`^ktctl: lease ${NS}/ktctl-${id}: journal annotation unreadable`))]);
    expect(r.output).toContain(`restore service ${NS}/echo from its patch-object record`);
    await expectRestored();
    expect(existsSync(journal)).toBe(false);
  }, 120_000);
});
