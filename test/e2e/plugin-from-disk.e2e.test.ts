// The plugin API is sufficient for a real mode: with the built-in exchange switched off and a COPY
// of plugins/exchange loaded from disk through a project's .ktctl.yaml, the compiled binary passes
// the whole exchange scenario (exchange.e2e.test.ts, replayed against it).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KTCTL, REPO, requireCluster, run } from "./harness.ts";

let project: string;

beforeAll(async () => {
  await requireCluster();
  // Outside the repository: nothing but the copy itself can be imported from there.
  project = mkdtempSync(join(tmpdir(), "ktctl-e2e-disk-plugin-"));
  cpSync(join(REPO, "plugins/exchange"), join(project, "team-plugins/exchange"), { recursive: true });
  writeFileSync(join(project, ".ktctl.yaml"), 'plugins: ["!exchange", "./team-plugins/exchange/index.ts"]\n');
});

afterAll(() => rmSync(project, { recursive: true, force: true }));

describe("a built-in replaced by its copy on disk", () => {
  test("ktctl plugins: the built-in is off, the copy provides exchange and recover", async () => {
    const r = await run([...KTCTL, "plugins", "-o", "json"], { cwd: project });
    expect(r.stderr).toBe("");
    const list = JSON.parse(r.stdout) as { name: string; source: string; state?: string; commands: string[] }[];
    expect(list.find((p) => p.name === "exchange" && p.source === "built-in")).toMatchObject({ state: "off" });
    const copy = list.find((p) => p.name === "exchange" && p.source !== "built-in");
    expect(copy?.source).toBe(join(project, "team-plugins/exchange/index.ts"));
    expect(copy?.commands.sort()).toEqual(["exchange", "recover"]);
  });

  test("the exchange scenario passes against it", async () => {
    const scenario = await run(["bun", "test", "--timeout", "180000", "test/e2e/exchange.e2e.test.ts"], {
      cwd: REPO,
      timeoutMs: 600_000,
      env: { KTCTL_E2E_SCENARIO_ARGV: JSON.stringify(KTCTL), KTCTL_E2E_SCENARIO_CWD: project },
    });
    const summary = scenario.stderr.split("\n").filter((l) => /^\s*\d+ (pass|fail)$/.test(l)).join(", ");
    if (scenario.code !== 0) console.log(scenario.stderr);
    expect(scenario.code).toBe(0);
    expect(summary).toMatch(/\d+ pass/);
    expect(summary).toContain(" 0 fail");
  }, 620_000);
});
