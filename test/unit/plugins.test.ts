import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ExitCode } from "../../core/errors.ts";
import { PLUGIN_API_VERSION, type PluginApi } from "../../core/plugin-api.ts";
import { apiVersionMismatch, loadPlugins } from "../../core/plugins/loader.ts";
import { builtinChoice, offCommandError, selectPlugins } from "../../core/plugins/selection.ts";
import { pluginSource, scratch, type Scratch } from "./cli-support.ts";

let s: Scratch;
beforeEach(() => {
  s = scratch();
});
afterEach(() => s.remove());

const HELLO = `{ meta: { description: "say hello" }, args: { who: { type: "positional", required: false, default: "world" } }, run({ args }) { console.log("hello " + args.who); } }`;

describe("plugin loader (real CLI)", () => {
  test("a good plugin loads; a throwing one and an API 2 one cost one warning line each", async () => {
    const good = s.write("project/plugins/good.ts", pluginSource("good", 1, { hello: HELLO }));
    const throws = s.write("project/plugins/throws.ts", `throw new Error("cannot start: missing dependency");\n`);
    const future = s.write("project/plugins/future.ts", pluginSource("future", 2, { later: HELLO }));
    s.write("project/.ktctl.yaml", "plugins:\n  - ./plugins/good.ts\n  - ./plugins/throws.ts\n  - plugins/future.ts\n");

    const r = await s.run(["hello", "team"]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe("hello team\n");
    expect(r.stderrLines).toEqual([
      `ktctl: warning: plugin "./plugins/throws.ts" (${throws}) not loaded: import failed: cannot start: missing dependency`,
      `ktctl: warning: plugin "future" (${future}) not loaded: needs plugin API 2, ktctl has ${PLUGIN_API_VERSION} (update ktctl)`,
    ]);

    const list = await s.run(["plugins", "-o", "json"]);
    expect(list.exitCode).toBe(0);
    const external = JSON.parse(list.stdout).filter((p: { source: string }) => p.source !== "built-in");
    expect(external).toEqual([
      { name: "good", apiVersion: 1, description: "", source: good, listedIn: join(s.project, ".ktctl.yaml"), commands: ["hello"] },
    ]);

    const text = await s.run(["plugins"]);
    expect(text.stdout).toMatch(new RegExp(`^good +1 +hello +${good.replace(/[.]/g, "\\.")}$`, "m"));

    // Core commands keep working, and the broken plugins' commands simply are not there.
    expect((await s.run(["version"])).exitCode).toBe(0);
    const later = await s.run(["later"]);
    expect(later.exitCode).toBe(ExitCode.usage);
    expect(later.stderrLines.at(-2)).toBe('ktctl: unknown command "later"');
  });

  test("--help lists plugin commands, hides internal ones, shows a command's flags", async () => {
    s.write("project/p.ts", pluginSource("p", 1, { hello: HELLO }));
    s.write("project/.ktctl.yaml", "plugins: [./p.ts]\n");
    const r = await s.run(["--help"]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^ +hello +say hello *$/m);
    expect(r.stdout).toMatch(/^ +plugins +List loaded plugins/m);
    expect(r.stdout).not.toContain("__watchdog");
    const sub = await s.run(["hello", "--help"]);
    expect(sub.stdout).toContain("USAGE ktctl hello [OPTIONS] [WHO]");
    expect(sub.stdout).toContain("-n, --namespace=<name>");
  });

  test("a command name clash: the first plugin wins, the other gets a warning; core names are reserved", async () => {
    s.write("project/a.ts", pluginSource("a", 1, { hello: `{ run() { console.log("from a"); } }` }));
    const b = s.write("project/b.ts", pluginSource("b", 1, { hello: `{ run() { console.log("from b"); } }`, bye: `{ run() { console.log("bye from b"); } }`, version: `{ run() { console.log("hijacked"); } }` }));
    s.write("project/.ktctl.yaml", "plugins: [./a.ts, ./b.ts]\n");
    const r = await s.run(["hello"]);
    expect(r.stdout).toBe("from a\n");
    expect(r.stderrLines).toEqual([
      `ktctl: warning: plugin "b" (${b}): command "hello" not added, already provided by plugin "a" (${join(s.project, "a.ts")})`,
      `ktctl: warning: plugin "b" (${b}): command "version" not added, already provided by ktctl itself`,
    ]);
    expect((await s.run(["bye"])).stdout).toBe("bye from b\n");
    expect((await s.run(["version"])).stdout).toStartWith("ktctl ");
  });

  test("a package name resolves from the config file's node_modules; paths resolve against the config file", async () => {
    s.write("home/node_modules/ktctl-plugin-greet/package.json", JSON.stringify({ name: "ktctl-plugin-greet", type: "module", exports: { ".": "./dist/index.js" } }));
    const entry = s.write("home/node_modules/ktctl-plugin-greet/dist/index.js", pluginSource("greet", 1, { greet: `{ run() { console.log("greetings"); } }` }));
    s.write("home/mine/local.ts", pluginSource("local", 1, { mine: `{ run() { console.log("mine"); } }` }));
    s.write("home/config.yaml", "plugins: [ktctl-plugin-greet, ./mine/local.ts]\n");
    const r = await s.run(["greet"]);
    expect([r.exitCode, r.stdout]).toEqual([0, "greetings\n"]);
    expect((await s.run(["mine"])).stdout).toBe("mine\n");
    const list = JSON.parse((await s.run(["plugins", "-o", "json"])).stdout);
    expect(list.find((p: { name: string }) => p.name === "greet").source).toBe(entry);
  });

  test("missing file, missing package, not a plugin, duplicate name: one warning each", async () => {
    s.write("project/notplugin.ts", "export default 42;\n");
    s.write("project/one.ts", pluginSource("same", 1, { one: `{ run() {} }` }));
    const two = s.write("project/two.ts", pluginSource("same", 1, { two: `{ run() {} }` }));
    const config = s.write("project/.ktctl.yaml", "plugins: [./gone.ts, no-such-ktctl-plugin, ./notplugin.ts, ./one.ts, ./two.ts]\n");
    const r = await s.run(["version"]);
    expect(r.exitCode).toBe(0);
    expect(r.stderrLines).toEqual([
      `ktctl: warning: plugin "./gone.ts" (./gone.ts) not loaded: import failed: file not found (listed in ${config})`,
      `ktctl: warning: plugin "no-such-ktctl-plugin" (no-such-ktctl-plugin) not loaded: import failed: package not found from ${s.project} (listed in ${config}); install it there`,
      `ktctl: warning: plugin "./notplugin.ts" (${join(s.project, "notplugin.ts")}) not loaded: its default export is not a ktctl plugin ({ name, apiVersion, commands, setup? })`,
      `ktctl: warning: plugin "same" (${two}) not loaded: a plugin with this name is already loaded (${join(s.project, "one.ts")})`,
    ]);
  });

  test("setup(api) runs with the host API; a failing setup refuses only that plugin", async () => {
    s.write("project/setup.ts", `let seen;
export default {
  name: "withsetup", apiVersion: 1,
  setup(api) { seen = { version: api.version, apiVersion: api.apiVersion, ns: api.config.get("namespace"), hasGlobals: "namespace" in api.globalArgs }; },
  commands: { seen: () => () => ({ run() { console.log(JSON.stringify(seen)); } }) },
};
`);
    const bad = s.write("project/badsetup.ts", `export default { name: "badsetup", apiVersion: 1, setup() { throw new Error("no token"); }, commands: {} };\n`);
    s.write("project/.ktctl.yaml", "namespace: demo\nplugins: [./setup.ts, ./badsetup.ts]\n");
    const r = await s.run(["seen"]);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ version: expect.any(String), apiVersion: PLUGIN_API_VERSION, ns: "demo", hasGlobals: true });
    expect(r.stderrLines).toEqual([`ktctl: warning: plugin "badsetup" (${bad}) not loaded: setup failed: no token`]);
  });

  test("a command module that fails to load is listed as unavailable and fails with the plugin code", async () => {
    s.write("project/broken.ts", `export default { name: "broken", apiVersion: 1, commands: { broken: () => import("./missing-command.ts") } };\n`);
    s.write("project/.ktctl.yaml", "plugins: [./broken.ts]\n");
    const help = await s.run(["--help"]);
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toMatch(/^ +broken +\(not available: .*missing-command/m);
    const r = await s.run(["broken"]);
    expect(r.exitCode).toBe(ExitCode.plugin);
    expect(r.stderrLines[0]).toMatch(/^ktctl: command "broken" is not available: .*missing-command/);
  });
});

describe("built-ins switched on and off by the plugins: list", () => {
  test('"!exchange" in .ktctl.yaml: its commands give one line with a hint and their own exit code', async () => {
    const config = s.write("project/.ktctl.yaml", 'plugins: ["!exchange"]\n');
    for (const command of ["exchange", "recover"]) {
      const r = await s.run([command, "svc/echo"]);
      expect(r.exitCode).toBe(ExitCode.pluginOff);
      expect(r.stderrLines).toEqual([
        `ktctl: command "${command}" belongs to the built-in plugin "exchange", which is switched off in ${config}`,
        `hint: switch it on with "ktctl plugins enable exchange" (or remove "!exchange" from ${config})`,
      ]);
    }
    // Other built-ins and truly unknown commands are as before.
    expect((await s.run(["status", "--help"])).exitCode).toBe(0);
    const unknown = await s.run(["exchang"]);
    expect(unknown.exitCode).toBe(ExitCode.usage);
    expect(unknown.stderrLines[0]).toBe('ktctl: unknown command "exchang"');
    const help = await s.run(["--help"]);
    expect(help.stdout).not.toMatch(/^ +exchange /m);
  });

  test("ktctl plugins lists every built-in with its state (json and table)", async () => {
    const config = s.write("project/.ktctl.yaml", 'plugins: ["!mesh"]\n');
    const list = JSON.parse((await s.run(["plugins", "-o", "json"])).stdout) as { name: string; state?: string; setIn?: string; commands: string[]; source: string }[];
    const builtins = list.filter((p) => p.source === "built-in");
    expect(builtins.map((p) => p.name).sort()).toEqual(["clean", "connect", "exchange", "forward", "mesh", "preview", "spring-cloud", "status", "ui"]);
    expect(builtins.filter((p) => p.state === "on").length).toBe(7);
    // Ships off: only a config file's "spring-cloud" entry switches it on.
    expect(builtins.find((p) => p.name === "spring-cloud")).toMatchObject({ state: "off" });
    expect(builtins.find((p) => p.name === "mesh")).toMatchObject({ state: "off", setIn: config, commands: ["mesh"] });
    const text = (await s.run(["plugins"])).stdout;
    expect(text).toMatch(new RegExp(`^mesh +1 +mesh +built-in, off \\(switched off in ${config.replace(/[.]/g, "\\.")}\\)$`, "m"));
    expect(text).toMatch(/^exchange +1 +exchange, recover +built-in$/m);
  });

  test("the project file overrides the user's; the last entry naming a built-in wins", async () => {
    s.write("home/config.yaml", 'plugins: ["!exchange", "!preview"]\n');
    s.write("project/.ktctl.yaml", 'plugins: ["exchange", "!forward", "forward"]\n');
    const list = JSON.parse((await s.run(["plugins", "-o", "json"])).stdout) as { name: string; state?: string }[];
    const state = (name: string) => list.find((p) => p.name === name)?.state;
    expect([state("exchange"), state("preview"), state("forward")]).toEqual(["on", "off", "on"]);
  });

  test('"!" before a name that is no built-in is a warning, not an error', async () => {
    const config = s.write("project/.ktctl.yaml", 'plugins: ["!no-such", "!./mine.ts"]\n');
    const r = await s.run(["version"]);
    expect(r.exitCode).toBe(0);
    expect(r.stderrLines).toHaveLength(2);
    expect(r.stderrLines[0]).toStartWith(`ktctl: warning: "!no-such" in ${config} names no built-in plugin (built-ins: forward, `);
    expect(r.stderrLines[1]).toStartWith(`ktctl: warning: "!./mine.ts" in ${config} names no built-in plugin`);
  });

  test("a team's copy of a switched-off built-in takes its commands", async () => {
    s.write("project/mine.ts", pluginSource("exchange", 1, { exchange: `{ run() { console.log("team exchange"); } }` }));
    s.write("project/.ktctl.yaml", 'plugins: ["!exchange", ./mine.ts]\n');
    const r = await s.run(["exchange"]);
    expect([r.exitCode, r.stdout, r.stderrLines]).toEqual([0, "team exchange\n", []]);
    // Its recover command is not in the copy: that one still explains the built-in is off.
    expect((await s.run(["recover"])).exitCode).toBe(ExitCode.pluginOff);
  });

  test("ktctl plugins disable / enable write the user's file, or the project's with --local", async () => {
    const user = join(s.home, "config.yaml");
    const project = join(s.project, ".ktctl.yaml");
    s.write("home/mine.ts", pluginSource("mine", 1, { mine: `{ run() {} }` }));
    s.write("home/config.yaml", "namespace: demo\nplugins: [./mine.ts]\n");
    let r = await s.run(["plugins", "disable", "exchange"]);
    expect([r.exitCode, r.stdout]).toEqual([0, `exchange: off (in ${user})\n`]);
    expect(readFileSync(user, "utf8")).toContain("- '!exchange'");
    expect((await s.run(["exchange"])).exitCode).toBe(ExitCode.pluginOff);

    r = await s.run(["plugins", "enable", "exchange"]);
    expect([r.exitCode, r.stdout]).toEqual([0, "exchange: on (its default)\n"]);
    expect(readFileSync(user, "utf8")).not.toContain("exchange");
    expect(readFileSync(user, "utf8")).toContain("./mine.ts");
    expect(readFileSync(user, "utf8")).toContain("namespace: demo");

    r = await s.run(["plugins", "disable", "mesh", "--local"]);
    expect([r.exitCode, r.stdout]).toEqual([0, `mesh: off (in ${project})\n`]);
    // A user-file edit cannot beat the project file: refused, and the file is left as it was.
    const before = readFileSync(user, "utf8");
    r = await s.run(["plugins", "enable", "mesh"]);
    expect(r.exitCode).toBe(ExitCode.config);
    expect(r.stderrLines).toEqual([
      `ktctl: mesh stays off: ${project} says so and takes precedence over ${user}`,
      'hint: run "ktctl plugins enable mesh --local"',
    ]);
    expect(readFileSync(user, "utf8")).toBe(before);
    expect((await s.run(["plugins", "enable", "mesh", "--local"])).stdout).toBe("mesh: on (its default)\n");
  });

  test("enable/disable refuse what is not a built-in, and unknown actions", async () => {
    let r = await s.run(["plugins", "disable", "./mine.ts"]);
    expect(r.exitCode).toBe(ExitCode.usage);
    expect(r.stderrLines[0]).toStartWith('ktctl: "./mine.ts" is not a built-in plugin (built-ins: forward, ');
    r = await s.run(["plugins", "toggle", "exchange"]);
    expect(r.exitCode).toBe(ExitCode.usage);
    expect(r.stderrLines[0]).toBe('ktctl: unknown plugins action "toggle"');
    r = await s.run(["plugins", "enable"]);
    expect(r.exitCode).toBe(ExitCode.usage);
  });
});

describe("selection and loading of built-ins (a table with one that ships off)", () => {
  const tracked: string[] = [];
  const fake = (name: string, enabledByDefault: boolean) => ({
    enabledByDefault,
    load: async () => ({
      default: {
        name,
        apiVersion: PLUGIN_API_VERSION,
        description: `${name} mode`,
        setup: () => void tracked.push(`setup ${name}`),
        commands: { [name]: () => () => ({ run() {} }), [`${name}-extra`]: () => () => ({ run() {} }) },
      },
    }),
  });
  const table = { on: fake("on", true), spring: fake("spring", false) };
  const ref = (spec: string, listedIn = "/p/.ktctl.yaml") => ({ spec, baseDir: "/p", listedIn });

  test("defaults, then entries in order; team plugins pass through once each", () => {
    expect(selectPlugins([], table).builtins).toEqual([
      { name: "on", enabled: true },
      { name: "spring", enabled: false },
    ]);
    const selection = selectPlugins([ref("spring", "/u/config.yaml"), ref("./a.ts"), ref("!on"), ref("./a.ts"), ref(" ! spring ")], table);
    expect(selection.builtins).toEqual([
      { name: "on", enabled: false, setIn: "/p/.ktctl.yaml" },
      { name: "spring", enabled: false, setIn: "/p/.ktctl.yaml" },
    ]);
    expect(selection.external).toEqual([ref("./a.ts")]);
    expect(selection.warnings).toEqual([]);
    expect(selectPlugins([ref("spring")], table).builtins[1]).toEqual({ name: "spring", enabled: true, setIn: "/p/.ktctl.yaml" });
  });

  test("an off built-in is not set up and adds no command; its commands explain how to switch it on", async () => {
    tracked.length = 0;
    const api = {} as PluginApi;
    const off = await loadPlugins({ builtins: table, external: [], api, reservedCommands: [] });
    expect(tracked).toEqual(["setup on"]);
    expect([...off.commands.keys()]).toEqual(["on", "on-extra"]);
    expect(off.offBuiltins).toEqual([{ name: "spring", description: "spring mode", apiVersion: PLUGIN_API_VERSION, commands: ["spring", "spring-extra"] }]);
    const error = offCommandError(off, "spring-extra")!;
    expect([error.message, error.exitCode, error.hint]).toEqual([
      'command "spring-extra" belongs to the built-in plugin "spring", which is off by default',
      ExitCode.pluginOff,
      'switch it on with "ktctl plugins enable spring"',
    ]);
    expect(offCommandError(off, "nothing")).toBeUndefined();

    tracked.length = 0;
    const on = await loadPlugins({ builtins: table, builtinStates: selectPlugins([ref("spring"), ref("!on")], table).builtins, external: [], api, reservedCommands: [] });
    expect(tracked).toEqual(["setup spring"]);
    expect([...on.commands.keys()]).toEqual(["spring", "spring-extra"]);
    expect(on.offBuiltins.map((p) => [p.name, p.setIn])).toEqual([["on", "/p/.ktctl.yaml"]]);
  });

  test("builtinChoice reads one entry", () => {
    const names = ["exchange"];
    expect(builtinChoice("!exchange", names)).toEqual({ name: "exchange", enabled: false });
    expect(builtinChoice("exchange", names)).toEqual({ name: "exchange", enabled: true });
    expect(builtinChoice("./exchange", names)).toBeUndefined();
    expect(builtinChoice("ktctl-plugin-x", names)).toBeUndefined();
    expect(builtinChoice("!other", names)).toEqual({ name: "other", enabled: false });
  });
});

describe("plugin API versions", () => {
  test("a plugin runs on every host version in its declared range", () => {
    expect(apiVersionMismatch({ apiVersion: 1 }, 1)).toBeUndefined();
    expect(apiVersionMismatch({ apiVersion: 1, maxApiVersion: 3 }, 2)).toBeUndefined();
    expect(apiVersionMismatch({ apiVersion: 1, maxApiVersion: 3 }, 3)).toBeUndefined();
  });
  test("outside it, the refusal says which side to update", () => {
    expect(apiVersionMismatch({ apiVersion: 2 }, 1)).toBe("needs plugin API 2, ktctl has 1 (update ktctl)");
    expect(apiVersionMismatch({ apiVersion: 1, maxApiVersion: 2 }, 3)).toBe("needs plugin API 1 to 2, ktctl has 3 (update the plugin)");
  });
});
