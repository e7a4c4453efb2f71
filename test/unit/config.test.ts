import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { loadConfig } from "../../core/config/load.ts";
import { setPluginEntry } from "../../core/config/edit.ts";
import { ExitCode, isKtctlError } from "../../core/errors.ts";
import { DEFAULT_SHADOW_IMAGE } from "../../core/protocol/version.ts";
import { scratch, type Scratch } from "./cli-support.ts";

let s: Scratch;
beforeEach(() => {
  s = scratch();
});
afterEach(() => s.remove());

const load = (cwd = s.project) => loadConfig({ env: { KTCTL_HOME: s.home }, cwd });

/** A plugin whose command prints what it received, so precedence is checked end to end. */
const PRINTER = `export default {
  name: "printer", apiVersion: 1,
  commands: {
    print: () => (api) => api.defineCommand({
      meta: { description: "print effective options" },
      args: { port: { type: "string", default: "1000", description: "a port" } },
      run({ args }) { console.log(JSON.stringify({ ...api.globalOptions(args), port: args.port })); },
    }),
  },
};
`;

describe("loading", () => {
  test("no files: nothing set", () => {
    const config = load();
    expect(config.layers).toHaveLength(0);
    expect(config.all()).toEqual({});
    expect(config.defaultsFor("global")).toEqual({});
  });

  test("the project file overrides the user's; sections merge key by key; values are typed", () => {
    s.write("home/config.yaml", "namespace: home\npodCreationTimeout: 30\nforward:\n  address: 0.0.0.0\n  namespace: fwd-home\n");
    s.write("project/.ktctl.yaml", "namespace: proj\nforward:\n  address: 127.0.0.2\nportForwardTimeout: '7'\n");
    const config = load(join(s.project));
    expect(config.get("namespace")).toBe("proj");
    expect(config.get("podCreationTimeout")).toBe(30);
    expect(config.get("portForwardTimeout")).toBe(7);
    expect(config.get("forward.address")).toBe("127.0.0.2");
    expect(config.get("forward.namespace")).toBe("fwd-home");
    expect(config.sourceOf("namespace")).toBe(join(s.project, ".ktctl.yaml"));
    expect(config.sourceOf("podCreationTimeout")).toBe(join(s.home, "config.yaml"));
  });

  test("defaults for a command: user file (global, then section) < project file (global, then section)", () => {
    s.write("home/config.yaml", "namespace: home\nforward:\n  namespace: fwd-home\n  address: 0.0.0.0\n");
    s.write("project/.ktctl.yaml", "namespace: proj\n");
    const config = load();
    const rows = [{ name: "address", type: "string" as const, scope: "forward", description: "" }];
    expect(config.defaultsFor("forward", rows)).toEqual({ namespace: "proj", address: "0.0.0.0" });
    expect(config.defaultsFor("exchange")).toEqual({ namespace: "proj" });
  });

  test("the project file is found in a parent directory", () => {
    s.write("project/.ktctl.yaml", "namespace: up\n");
    s.write("project/a/b/keep", "");
    expect(load(join(s.project, "a", "b")).get("namespace")).toBe("up");
  });

  test("plugins from both files, each resolved against its own file's directory, listed once", () => {
    s.write("home/config.yaml", "plugins:\n  - ./mine.ts\n  - some-package\n");
    s.write("project/.ktctl.yaml", "plugins: [./team.ts, some-package]\n");
    expect(load().plugins()).toEqual([
      { spec: "./mine.ts", baseDir: s.home, listedIn: join(s.home, "config.yaml") },
      { spec: "some-package", baseDir: s.home, listedIn: join(s.home, "config.yaml") },
      { spec: "./team.ts", baseDir: s.project, listedIn: join(s.project, ".ktctl.yaml") },
    ]);
  });

  test("pluginEntries keeps every entry in file order, repeats and built-in switches included", () => {
    s.write("home/config.yaml", "plugins: ['!exchange', ./mine.ts]\n");
    s.write("project/.ktctl.yaml", "plugins: [exchange, ./mine.ts, '!exchange']\n");
    const user = join(s.home, "config.yaml");
    const project = join(s.project, ".ktctl.yaml");
    expect(load().pluginEntries()).toEqual([
      { spec: "!exchange", baseDir: s.home, listedIn: user },
      { spec: "./mine.ts", baseDir: s.home, listedIn: user },
      { spec: "exchange", baseDir: s.project, listedIn: project },
      { spec: "./mine.ts", baseDir: s.project, listedIn: project },
      { spec: "!exchange", baseDir: s.project, listedIn: project },
    ]);
  });

  test("setPluginEntry rewrites one file's entries about one built-in and keeps the rest", () => {
    const path = s.write("home/config.yaml", "namespace: demo\nplugins: ['!exchange', ./mine.ts, exchange]\n");
    expect(setPluginEntry(path, "exchange", "!exchange")).toBe(true);
    expect(load().all()).toEqual({ namespace: "demo", plugins: ["./mine.ts", "!exchange"] });
    expect(setPluginEntry(path, "exchange", "!exchange")).toBe(false);
    expect(setPluginEntry(path, "mesh", undefined)).toBe(false);
    expect(setPluginEntry(path, "exchange", undefined)).toBe(true);
    expect(load().all()).toEqual({ namespace: "demo", plugins: ["./mine.ts"] });
    const only = s.write("project/.ktctl.yaml", "plugins: ['!mesh']\n");
    expect(setPluginEntry(only, "mesh", undefined)).toBe(true);
    expect(readFileSync(only, "utf8")).not.toContain("plugins");
    const fresh = join(s.root, "new", "config.yaml");
    expect(setPluginEntry(fresh, "spring", "spring")).toBe(true);
    expect(readFileSync(fresh, "utf8")).toContain("- spring");
  });

  test("an empty or comment-only file is an empty config", () => {
    s.write("home/config.yaml", "# nothing yet\n");
    s.write("project/.ktctl.yaml", "");
    expect(load().all()).toEqual({});
  });

  for (const [name, text, message] of [
    ["malformed YAML", "namespace: a\n  bad: 1\n", "line 2: bad indentation of a mapping entry"],
    ["duplicate key", "namespace: a\nnamespace: b\n", "line 2: duplicated mapping key"],
    ["not a mapping", "- a\n", ': expected a mapping of option names to values, e.g. "namespace: demo"'],
    ["wrong type", "podCreationTimeout: soon\n", 'line 1: invalid podCreationTimeout "soon": expected a number of seconds'],
    ["bad value in a section", "x: 1\nforward:\n  podQuota: lots\n", 'line 3: forward.podQuota: invalid podQuota "lots"'],
    ["plugins not a list", "plugins: ./x.ts\n", "line 1: plugins: expected a list of plugin file paths or package names"],
  ] as const) {
    test(`${name}: one config error naming the file and line`, () => {
      const path = s.write("project/.ktctl.yaml", text);
      try {
        load();
        throw new Error("expected a config error");
      } catch (error) {
        if (!isKtctlError(error)) throw error;
        expect(error.exitCode).toBe(ExitCode.config);
        expect(error.message.startsWith(`config file ${path}${message}`) || error.message.startsWith(`config file ${path} ${message}`)).toBe(true);
        expect(error.message).not.toContain("\n");
      }
    });
  }
});

describe("ktctl config (real CLI)", () => {
  test("set / get / unset round trip in KTCTL_HOME, typed by the options table", async () => {
    const file = join(s.home, "config.yaml");
    let r = await s.run(["config", "set", "namespace", "demo"]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe(`namespace = demo (in ${file})\n`);
    r = await s.run(["config", "set", "pod-creation-timeout", "90"]);
    expect(r.exitCode).toBe(0);
    r = await s.run(["config", "set", "debug", "yes"]);
    expect(r.exitCode).toBe(0);
    expect(readFileSync(file, "utf8")).toBe("namespace: demo\npodCreationTimeout: 90\ndebug: true\n");

    r = await s.run(["config", "get", "podCreationTimeout"]);
    expect([r.exitCode, r.stdout]).toEqual([0, "90\n"]);
    r = await s.run(["config", "get", "portForwardTimeout"]);
    expect([r.exitCode, r.stdout]).toEqual([0, "10\n"]);
    r = await s.run(["config", "get", "image"]);
    expect(r.stdout).toBe(`${DEFAULT_SHADOW_IMAGE}\n`);

    r = await s.run(["config", "unset", "debug"]);
    expect(r.exitCode).toBe(0);
    r = await s.run(["config", "unset", "namespace"]);
    expect(r.stdout).toBe(`namespace removed (from ${file})\n`);
    r = await s.run(["config", "get", "namespace"]);
    expect(r.exitCode).toBe(ExitCode.notFound);
    expect(r.stderrLines).toEqual(['ktctl: "namespace" is not set']);
    expect(readFileSync(file, "utf8")).toBe("podCreationTimeout: 90\n");
  });

  test("--local writes .ktctl.yaml, which then wins over the user's file", async () => {
    await s.run(["config", "set", "namespace", "home"]);
    let r = await s.run(["config", "set", "namespace", "proj", "--local"]);
    expect(r.exitCode).toBe(0);
    expect(readFileSync(join(s.project, ".ktctl.yaml"), "utf8")).toBe("namespace: proj\n");
    r = await s.run(["config", "get", "namespace"]);
    expect(r.stdout).toBe("proj\n");
    r = await s.run(["config", "list"]);
    expect(r.stdout).toMatch(new RegExp(`^namespace +proj +${join(s.project, ".ktctl.yaml").replace(/[.]/g, "\\.")}$`, "m"));
    expect(r.stdout).toMatch(/^podCreationTimeout +60 +default$/m);
  });

  test("per-command keys are typed by the command's own flags", async () => {
    s.write("project/printer.ts", PRINTER);
    s.write("project/.ktctl.yaml", "plugins: [./printer.ts]\n");
    let r = await s.run(["config", "set", "print.port", "2000"]);
    expect(r.exitCode).toBe(0);
    r = await s.run(["config", "set", "print.podCreationTimeout", "5"]);
    expect(r.exitCode).toBe(0);
    expect(readFileSync(join(s.home, "config.yaml"), "utf8")).toBe("print:\n  port: '2000'\n  podCreationTimeout: 5\n");
    r = await s.run(["config", "set", "print.prot", "1"]);
    expect(r.exitCode).toBe(ExitCode.usage);
    expect(r.stderrLines).toEqual(['ktctl: unknown config key "print.prot"', 'hint: did you mean "print.port"? ("ktctl config list" shows the keys)']);
    r = await s.run(["config", "unset", "print.port"]);
    r = await s.run(["config", "unset", "print.podCreationTimeout"]);
    expect(readFileSync(join(s.home, "config.yaml"), "utf8")).toBe("");
  });

  test("plugin paths typed relative to the working directory are stored relative to the config file", async () => {
    s.write("project/tools/p.ts", `export default { name: "p", apiVersion: 1, commands: { ping: () => () => ({ run() { console.log("pong"); } }) } };\n`);
    s.write("project/.ktctl.yaml", "namespace: demo\n");
    const cwd = join(s.project, "tools");
    let r = await s.run(["config", "set", "plugins", "./p.ts,some-package", "--local"], { cwd });
    expect(r.exitCode).toBe(0);
    expect(readFileSync(join(s.project, ".ktctl.yaml"), "utf8")).toBe("namespace: demo\nplugins:\n  - ./tools/p.ts\n  - some-package\n");
    r = await s.run(["config", "set", "plugins", "./p.ts"], { cwd });
    expect(readFileSync(join(s.home, "config.yaml"), "utf8")).toBe("plugins:\n  - ../project/tools/p.ts\n");
    r = await s.run(["ping"], { cwd: s.root });
    expect([r.exitCode, r.stdout]).toEqual([0, "pong\n"]);
  });

  test("unknown keys and bad values are refused and nothing is written", async () => {
    let r = await s.run(["config", "set", "namepsace", "demo"]);
    expect(r.exitCode).toBe(ExitCode.usage);
    expect(r.stderrLines).toEqual(['ktctl: unknown config key "namepsace"', 'hint: did you mean "namespace"? ("ktctl config list" shows the keys)']);
    r = await s.run(["config", "set", "podCreationTimeout", "soon"]);
    expect(r.exitCode).toBe(ExitCode.usage);
    expect(r.stderrLines).toEqual(['ktctl: invalid podCreationTimeout "soon": expected a number of seconds']);
    r = await s.run(["config", "set", "debug", "maybe"]);
    expect(r.stderrLines).toEqual(['ktctl: invalid debug "maybe": expected true or false']);
    expect(() => readFileSync(join(s.home, "config.yaml"))).toThrow();
  });

  test("malformed YAML: every command fails with one line naming file and line", async () => {
    const path = s.write("project/.ktctl.yaml", "namespace: demo\n  oops: [\n");
    const r = await s.run(["version"]);
    expect(r.exitCode).toBe(ExitCode.config);
    expect(r.stdout).toBe("");
    expect(r.stderrLines).toEqual([`ktctl: config file ${path} line 2: bad indentation of a mapping entry`]);
  });

  test("precedence: flag > .ktctl.yaml > ~/.ktctl/config.yaml > table default", async () => {
    s.write("project/printer.ts", PRINTER);
    s.write("home/config.yaml", "namespace: home\nportForwardTimeout: 20\npodCreationTimeout: 30\nprint:\n  port: '3000'\n");
    s.write("project/.ktctl.yaml", "plugins: [./printer.ts]\nnamespace: proj\npodCreationTimeout: 40\n");
    let r = await s.run(["print"]);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      namespace: "proj", // project file beats user file
      debug: false,
      image: DEFAULT_SHADOW_IMAGE, // table default
      podCreationTimeout: 40,
      portForwardTimeout: 20, // user file beats table default
      port: "3000", // command section
    });
    r = await s.run(["-n", "flag", "print", "--podCreationTimeout", "50", "--port=4000", "-i", "registry.local/shadow:dev"]);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ namespace: "flag", podCreationTimeout: 50, port: "4000", image: "registry.local/shadow:dev" });
  });
});
