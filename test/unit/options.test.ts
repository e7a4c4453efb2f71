import { describe, expect, test } from "bun:test";
import { ExitCode, isKtctlError } from "../../core/errors.ts";
import {
  argsFor,
  coerceOption,
  findOption,
  GLOBAL_SCOPE,
  globalOptions,
  OPTIONS,
  optionsFromArgs,
  parseKeyValueList,
  parsePodQuota,
} from "../../core/options.ts";
import { DEFAULT_SHADOW_IMAGE, VERSION } from "../../core/protocol/version.ts";
import { scratch } from "./cli-support.ts";

function usageError(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    if (!isKtctlError(error)) throw error;
    expect(error.exitCode).toBe(ExitCode.usage);
    return error.message;
  }
  throw new Error("expected a usage error");
}

describe("options table -> citty args", () => {
  const args = argsFor(GLOBAL_SCOPE);

  test("every global option of the contract is a flag", () => {
    expect(Object.keys(args).sort()).toEqual(
      [
        "namespace", "context", "kubeconfig", "debug", "image", "imagePullSecret", "nodeSelector", "serviceAccount",
        "podQuota", "withLabel", "withAnnotation", "podCreationTimeout", "portForwardTimeout",
      ].sort(),
    );
  });

  test("kubectl-style short aliases", () => {
    expect(args.namespace).toMatchObject({ type: "string", alias: "n" });
    expect(args.kubeconfig).toMatchObject({ type: "string", alias: "c" });
    expect(args.debug).toMatchObject({ type: "boolean", alias: "d", default: false });
    expect(args.image).toMatchObject({ type: "string", alias: "i", default: DEFAULT_SHADOW_IMAGE });
    expect(args.withLabel).toMatchObject({ type: "string", alias: "l" });
    expect(args.context).not.toHaveProperty("alias");
  });

  test("numbers travel as strings with their table default; no default means none", () => {
    expect(args.podCreationTimeout).toMatchObject({ type: "string", default: "60" });
    expect(args.portForwardTimeout).toMatchObject({ type: "string", default: "10" });
    expect(args.namespace).not.toHaveProperty("default");
  });

  test("config values replace table defaults", () => {
    const withConfig = argsFor(GLOBAL_SCOPE, { namespace: "demo", podCreationTimeout: 30, debug: true });
    expect(withConfig.namespace).toMatchObject({ default: "demo" });
    expect(withConfig.podCreationTimeout).toMatchObject({ default: "30" });
    expect(withConfig.debug).toMatchObject({ default: true });
  });

  test("command-scoped rows become that command's args only", () => {
    expect(argsFor("version").output).toMatchObject({ type: "enum", alias: "o", options: ["text", "json"], default: "text" });
    expect(argsFor("version")).not.toHaveProperty("namespace");
    expect(findOption("local", "config")?.type).toBe("boolean");
  });

  test("option names are unique within a scope", () => {
    const seen = new Set<string>();
    for (const o of OPTIONS) {
      const id = `${o.scope}:${o.name}`;
      expect(seen.has(id)).toBe(false);
      seen.add(id);
    }
  });

  test("a plugin command's args become typed rows", () => {
    const rows = optionsFromArgs("forward", {
      target: { type: "positional" },
      address: { type: "string", default: "127.0.0.1", description: "bind address" },
      quiet: { type: "boolean" },
      mode: { type: "enum", options: ["a", "b"] },
    });
    expect(rows.map((r) => [r.name, r.type, r.scope])).toEqual([
      ["address", "string", "forward"],
      ["quiet", "boolean", "forward"],
      ["mode", "enum", "forward"],
    ]);
    expect(rows[2]!.choices).toEqual(["a", "b"]);
  });
});

describe("globalOptions", () => {
  test("types and keeps the values given", () => {
    expect(
      globalOptions({ namespace: "demo", debug: false, podCreationTimeout: "45", portForwardTimeout: "10", podQuota: "0.5c,512m", nodeSelector: "disktype=ssd" }),
    ).toEqual({ namespace: "demo", debug: false, podCreationTimeout: 45, portForwardTimeout: 10, podQuota: "0.5c,512m", nodeSelector: "disktype=ssd" });
  });

  test("bad numbers", () => {
    expect(usageError(() => globalOptions({ podCreationTimeout: "abc" }))).toBe('invalid podCreationTimeout "abc": expected a number of seconds');
    expect(usageError(() => globalOptions({ portForwardTimeout: "0" }))).toBe('invalid portForwardTimeout "0": expected a whole number of seconds greater than 0');
    expect(usageError(() => globalOptions({ podCreationTimeout: "1.5" }))).toContain("whole number");
  });

  test("bad names and empty values", () => {
    expect(usageError(() => globalOptions({ namespace: "Demo_1" }))).toBe('invalid namespace "Demo_1": use lowercase letters, digits and "-" (at most 63 characters)');
    expect(usageError(() => globalOptions({ namespace: "" }))).toBe("option namespace needs a value");
    expect(usageError(() => globalOptions({ image: "a b" }))).toContain("must not contain spaces");
  });

  test("bad selector and label syntax", () => {
    expect(usageError(() => globalOptions({ nodeSelector: "ssd" }))).toBe(
      'invalid nodeSelector "ssd": expected key=value pairs separated by commas, e.g. "app=web,tier=front"',
    );
    expect(usageError(() => globalOptions({ withLabel: "app=we b" }))).toContain('"we b" is not a valid label value');
    expect(usageError(() => globalOptions({ withLabel: "-x=1" }))).toContain('"-x" is not a valid label key');
  });

  test("bad quota", () => {
    expect(usageError(() => globalOptions({ podQuota: "lots" }))).toBe('invalid podQuota "lots": "lots" is neither cores (like 0.5c) nor memory (like 512m)');
    expect(usageError(() => globalOptions({ podQuota: "1c,2c" }))).toBe('invalid podQuota "1c,2c": CPU given twice');
  });
});

describe("value parsers", () => {
  test("parsePodQuota gives Kubernetes quantities", () => {
    expect(parsePodQuota("0.5c,512m")).toEqual({ cpu: "500m", memory: "512Mi" });
    expect(parsePodQuota("2c")).toEqual({ cpu: "2000m" });
    expect(parsePodQuota("1.5g")).toEqual({ memory: "1536Mi" });
    expect(parsePodQuota("256M, 0.25C")).toEqual({ cpu: "250m", memory: "256Mi" });
  });

  test("parseKeyValueList", () => {
    expect(parseKeyValueList("app=web, example.com/tier=front,empty=", "withLabel")).toEqual({ app: "web", "example.com/tier": "front", empty: "" });
    expect(parseKeyValueList("note=free text: ok", "withAnnotation", "annotation")).toEqual({ note: "free text: ok" });
    expect(usageError(() => parseKeyValueList("a=1,a=2", "withLabel"))).toContain('key "a" given twice');
  });

  test("coerceOption reads config-style booleans and numbers", () => {
    const debug = findOption("debug", GLOBAL_SCOPE)!;
    expect(coerceOption(debug, "yes")).toBe(true);
    expect(coerceOption(debug, false)).toBe(false);
    expect(usageError(() => coerceOption(debug, "maybe"))).toBe('invalid debug "maybe": expected true or false');
    expect(coerceOption(findOption("podCreationTimeout", GLOBAL_SCOPE)!, 90)).toBe(90);
    expect(usageError(() => coerceOption(findOption("output", "version")!, "yaml"))).toBe('invalid output "yaml": expected one of text, json');
  });

  test("the default image follows the version", () => {
    expect(DEFAULT_SHADOW_IMAGE).toBe(`docker.io/ktctl/shadow:${VERSION}`);
  });
});

describe("global flags on the real CLI", () => {
  test("a bad flag value is a usage error naming the value, before anything runs", async () => {
    const s = scratch();
    try {
      s.write("project/p.ts", `export default { name: "p", apiVersion: 1, commands: { touch: () => (api) => api.defineCommand({ meta: { description: "x" }, run() { console.log("ran"); } }) } };\n`);
      s.write("project/.ktctl.yaml", "plugins: [./p.ts]\n");
      for (const [flags, message] of [
        [["--podQuota", "2x"], 'ktctl: invalid podQuota "2x": "2x" is neither cores (like 0.5c) nor memory (like 512m)'],
        [["--nodeSelector", "zone"], 'ktctl: invalid nodeSelector "zone": expected key=value pairs separated by commas, e.g. "app=web,tier=front"'],
        [["--portForwardTimeout=soon"], 'ktctl: invalid portForwardTimeout "soon": expected a number of seconds'],
      ] as const) {
        const result = await s.run(["touch", ...flags]);
        expect(result.exitCode).toBe(ExitCode.usage);
        expect(result.stdout).toBe("");
        expect(result.stderrLines[0]).toBe(message);
      }
      const ok = await s.run(["touch", "--podQuota", "0.5c,512m"]);
      expect(ok.exitCode).toBe(0);
      expect(ok.stdout).toBe("ran\n");
    } finally {
      s.remove();
    }
  });
});
