import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { ExitCode } from "../../core/errors.ts";
import { PLUGIN_API_VERSION } from "../../core/plugin-api.ts";
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
      `ktctl: warning: plugin "future" (${future}) not loaded: needs plugin API 2, ktctl has ${PLUGIN_API_VERSION}`,
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
