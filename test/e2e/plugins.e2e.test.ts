// A team's own mode (examples/team-deps), enabled from a project's .ktctl.yaml and loaded at run
// time by ktctl — the compiled binary when test/run provides it — through the plugin contract only.
// It works in demo2, which no other test takes over.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEMO2_NS, KTCTL, KUBECONFIG, REPO, eventually, inLaptop, leftovers, requireCluster, run, runInLaptop } from "./harness.ts";

let project: string;
beforeAll(async () => {
  await requireCluster();
  project = mkdtempSync(join(tmpdir(), "ktctl-team-"));
  writeFileSync(
    join(project, ".ktctl.yaml"),
    [
      "plugins:",
      `  - ${join(REPO, "examples/team-deps/index.ts")}`,
      "team-deps:",
      `  namespace: ${DEMO2_NS}`,
      "  services:",
      '    - { name: echo, target: svc/echo, ports: "18090:80", env: ECHO_URL=http://127.0.0.1:18090 }',
      '    - { name: echo-alt, target: svc/echo, ports: "18091:80" }',
      "",
    ].join("\n"),
  );
});
afterAll(() => rmSync(project, { recursive: true, force: true }));

test("`ktctl plugins` lists the team plugin loaded from the project config", async () => {
  const r = await run([...KTCTL, "plugins"], { env: { KTCTL_HOME: project }, cwd: project });
  expect(r.code).toBe(0);
  expect(r.stdout).toContain("team-deps");
  expect(r.stdout).toContain("examples/team-deps/index.ts");
});

test("`ktctl deps` forwards the team's services through one shadow and prints their env", async () => {
  const proc = Bun.spawn(inLaptop([...KTCTL, "--kubeconfig", KUBECONFIG, "deps"]), {
    cwd: project,
    env: { ...process.env, KTCTL_HOME: project },
    stdout: "pipe",
    stderr: "pipe",
  });
  try {
    const answer = await eventually(async () => {
      const r = await runInLaptop(["curl", "-sf", "-m", "3", "http://127.0.0.1:18090/team"]);
      if (r.code !== 0) throw new Error(`curl exit ${r.code}`);
      return JSON.parse(r.stdout);
    }, 60_000, 300);
    expect(answer.name).toBe("echo-demo2");
    const second = await runInLaptop(["curl", "-sf", "-m", "3", "http://127.0.0.1:18091/second"]);
    expect(JSON.parse(second.stdout).path).toBe("/second");
    const shadows = (await leftovers(DEMO2_NS)).filter((o) => o.startsWith("pod/"));
    expect(shadows.length).toBe(1);
  } finally {
    proc.kill("SIGINT");
    await proc.exited;
  }
  const output = (await new Response(proc.stdout).text()) + (await new Response(proc.stderr).text());
  expect(output).toContain("export ECHO_URL=http://127.0.0.1:18090");
  await eventually(async () => expect(await leftovers(DEMO2_NS)).toEqual([]), 30_000);
});
