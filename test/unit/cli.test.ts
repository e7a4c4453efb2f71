import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { ExitCode } from "../../core/errors.ts";
import { PLUGIN_API_VERSION } from "../../core/plugin-api.ts";
import { DEFAULT_SHADOW_IMAGE, VERSION } from "../../core/protocol/version.ts";
import { describeError } from "../../core/cli/errors.ts";
import { commandIndex, moveLeadingFlags } from "../../core/cli/dispatch.ts";
import { argsFor, GLOBAL_SCOPE } from "../../core/options.ts";
import { pluginSource, scratch, type Scratch } from "./cli-support.ts";

let s: Scratch;
beforeEach(() => {
  s = scratch();
});
afterEach(() => s.remove());

/** Commands that fail in each way the error handler distinguishes. */
const FAILING = pluginSource("failing", 1, {
  refuse: `{ run() { throw new api.errors.KtctlError("service demo/echo not found", api.errors.ExitCode.notFound, "list services with: kubectl -n demo get svc"); } }`,
  crash: `{ run() { const thing = undefined; return thing.field; } }`,
  log: `{ run() { api.logger.debug("debug detail"); api.logger.info("info line"); } }`,
  late: `{ run() { setTimeout(() => { throw new Error("late failure"); }, 1); return new Promise(() => {}); } }`,
  echo: `{ args: { word: { type: "positional", required: true } }, run({ args }) { console.log(JSON.stringify({ word: args.word, ns: api.globalOptions(args).namespace ?? null, debug: args.debug })); } }`,
});

describe("ktctl version", () => {
  test("text: version, shadow image, Bun, OS/arch", async () => {
    const r = await s.run(["version"]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe(
      [
        `ktctl         ${VERSION}`,
        `shadow image  ${DEFAULT_SHADOW_IMAGE}`,
        `plugin API    ${PLUGIN_API_VERSION}`,
        `bun           ${Bun.version}`,
        `os/arch       ${process.platform}/${process.arch}`,
        "",
      ].join("\n"),
    );
  });

  test("-o json", async () => {
    const r = await s.run(["version", "-o", "json"]);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      version: VERSION, shadowImage: DEFAULT_SHADOW_IMAGE, pluginApi: PLUGIN_API_VERSION, bun: Bun.version, os: process.platform, arch: process.arch,
    });
  });

  test("a config default for a core command's flag applies", async () => {
    s.write("home/config.yaml", "version:\n  output: json\n");
    expect(JSON.parse((await s.run(["version"])).stdout).version).toBe(VERSION);
  });

  test("--version prints the bare version", async () => {
    const r = await s.run(["--version"]);
    expect([r.exitCode, r.stdout]).toEqual([0, `${VERSION}\n`]);
  });
});

describe("help and usage errors", () => {
  test("--help and no arguments show usage with exit 0", async () => {
    for (const args of [["--help"], []]) {
      const r = await s.run(args);
      expect(r.exitCode).toBe(0);
      expect(r.stdout).toContain("USAGE ktctl [OPTIONS]");
      expect(r.stdout).toMatch(/^ +version +Show ktctl's version/m);
      expect(r.stdout).toMatch(/^ +--podCreationTimeout=<seconds> +Seconds to wait for the shadow pod to be ready \(Default: 60\)/m);
    }
  });

  test("sub-command help names the full path", async () => {
    const r = await s.run(["config", "set", "--help"]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain("USAGE ktctl config set [OPTIONS] <KEY> <VALUE>");
  });

  test("a mistyped command gets a suggestion and the usage code", async () => {
    const r = await s.run(["versoin"]);
    expect(r.exitCode).toBe(ExitCode.usage);
    expect(r.stderrLines).toEqual(['ktctl: unknown command "versoin"', 'hint: did you mean "ktctl version"?']);
  });

  test("citty's parse errors are usage errors, one line and a hint, no usage dump", async () => {
    let r = await s.run(["config", "get"]);
    expect(r.exitCode).toBe(ExitCode.usage);
    expect(r.stdout).toBe("");
    expect(r.stderrLines).toEqual(["ktctl: missing required positional argument: KEY", 'hint: run "ktctl config get --help" for usage']);
    r = await s.run(["version", "-o", "yaml"]);
    expect(r.exitCode).toBe(ExitCode.usage);
    expect(r.stderrLines).toEqual(["ktctl: invalid value for argument: --output (yaml). Expected one of: text, json.", 'hint: run "ktctl version --help" for usage']);
    r = await s.run(["-n", "demo"]);
    expect(r.exitCode).toBe(ExitCode.usage);
    expect(r.stderrLines).toEqual(["ktctl: no command given", 'hint: run "ktctl --help" for the commands']);
  });
});

describe("errors from commands", () => {
  beforeEach(() => {
    s.write("project/failing.ts", FAILING);
    s.write("project/.ktctl.yaml", "plugins: [./failing.ts]\n");
  });

  test("a KtctlError: its message, its hint, its exit code", async () => {
    const r = await s.run(["refuse"]);
    expect(r.exitCode).toBe(ExitCode.notFound);
    expect(r.stdout).toBe("");
    expect(r.stderrLines).toEqual(["ktctl: service demo/echo not found", "hint: list services with: kubectl -n demo get svc"]);
  });

  test("any other error: one line and exit 1, the stack only with --debug", async () => {
    const plain = await s.run(["crash"]);
    expect(plain.exitCode).toBe(ExitCode.failure);
    expect(plain.stderrLines).toHaveLength(2);
    expect(plain.stderrLines[0]).toMatch(/^ktctl: unexpected error: .*undefined/);
    expect(plain.stderrLines[1]).toBe("hint: run again with --debug for details");
    expect(plain.stderr).not.toContain("    at ");

    const debug = await s.run(["crash", "--debug"]);
    expect(debug.exitCode).toBe(ExitCode.failure);
    expect(debug.stderrLines[0]).toBe(plain.stderrLines[0]!);
    expect(debug.stderr).toContain("failing.ts");
    expect(debug.stderr).toMatch(/\n\s+at /);
  });

  test("an error thrown outside the command's promise chain is reported the same way", async () => {
    const r = await s.run(["late"]);
    expect(r.exitCode).toBe(ExitCode.failure);
    expect(r.stderrLines).toEqual(["ktctl: unexpected error: late failure", "hint: run again with --debug for details"]);
  });

  test("the logger shows debug lines only with --debug (flag or config)", async () => {
    const output = (r: { stdout: string; stderr: string }) => r.stdout + r.stderr;
    const quiet = await s.run(["log"]);
    expect(output(quiet)).toContain("info line");
    expect(output(quiet)).not.toContain("debug detail");
    expect(output(await s.run(["log", "-d"]))).toContain("debug detail");
    s.write("project/.ktctl.yaml", "plugins: [./failing.ts]\ndebug: true\n");
    expect(output(await s.run(["log"]))).toContain("debug detail");
    expect(output(await s.run(["log", "--no-debug"]))).not.toContain("debug detail");
  });

  test("global flags work before and after the command name", async () => {
    for (const args of [["-n", "demo", "echo", "hi"], ["echo", "hi", "-n", "demo"], ["--namespace=demo", "-d", "echo", "hi"]]) {
      const r = await s.run(args);
      expect(r.exitCode).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ word: "hi", ns: "demo" });
    }
  });
});

describe("hidden __watchdog", () => {
  test("reaches the session watchdog (which refuses a bad session id)", async () => {
    const r = await s.run(["__watchdog", "not-a-session"]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr + r.stdout).toContain("bad session id");
  });
});

describe("pure pieces", () => {
  test("describeError never shows a stack without debug", () => {
    const error = new TypeError("x is not a function");
    expect(describeError(error, false)).toEqual({ lines: ["ktctl: unexpected error: x is not a function", "hint: run again with --debug for details"], exitCode: 1 });
    expect(describeError(error, true).lines[1]).toContain("TypeError: x is not a function");
    expect(describeError("a string", false).lines[0]).toBe("ktctl: unexpected error: a string");
  });

  test("leading global flags move behind the command name, values included", () => {
    const args = argsFor(GLOBAL_SCOPE);
    expect(commandIndex(["-n", "demo", "--debug", "forward", "svc/echo"], args)).toBe(3);
    expect(moveLeadingFlags(["-n", "demo", "--debug", "forward", "svc/echo"], args)).toEqual(["forward", "-n", "demo", "--debug", "svc/echo"]);
    expect(moveLeadingFlags(["--context=kind", "status"], args)).toEqual(["status", "--context=kind"]);
    expect(moveLeadingFlags(["forward", "-n", "demo"], args)).toEqual(["forward", "-n", "demo"]);
    expect(commandIndex(["-d", "--", "x"], args)).toBe(-1);
  });
});

describe("dispatch: global flags before a group's sub-command", () => {
  test("reach the sub-command (ktctl -n x spring run, ktctl spring -n x run)", async () => {
    const { dispatch } = await import("../../core/cli/dispatch.ts");
    const { defineCommand } = await import("citty");
    const seen: unknown[] = [];
    const root = defineCommand({
      args: { namespace: { type: "string", alias: "n" } },
      subCommands: {
        group: defineCommand({
          subCommands: {
            leaf: defineCommand({
              args: { namespace: { type: "string", alias: "n" }, app: { type: "string" } },
              run: ({ args }) => void seen.push([args.namespace, args.app]),
            }),
          },
        }),
      },
    });
    await dispatch(root, ["-n", "one", "group", "leaf", "--app", "a"]);
    await dispatch(root, ["group", "--namespace", "two", "leaf"]);
    expect(seen).toEqual([["one", "a"], ["two", undefined]]);
  });
});
