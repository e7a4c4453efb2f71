import { describe, expect, test } from "bun:test";
import type { ArgsDef } from "citty";
import { colorWanted, stripAnsi } from "../../core/cli/color.ts";
import { checkArgs } from "../../core/cli/strict-args.ts";
import { ExitCode } from "../../core/errors.ts";

const args: ArgsDef = {
  namespace: { type: "string", alias: "n" },
  debug: { type: "boolean", alias: "d" },
  podQuota: { type: "string" },
  target: { type: "positional", required: true },
};
const variadic: ArgsDef = { ...args, ports: { type: "positional", valueHint: "[LOCAL:]REMOTE..." } };

const failure = (fn: () => void) => {
  try {
    fn();
  } catch (error) {
    return error as { message: string; hint?: string; exitCode: number };
  }
  throw new Error("expected a failure");
};

describe("strict flags", () => {
  test("known flags in every spelling pass: long, kebab, alias, =value, --no- for booleans", () => {
    expect(() => checkArgs(["svc/echo", "-n", "demo", "--pod-quota", "1c", "--podQuota=1c", "--no-debug", "-d", "--help"], args, "ktctl x")).not.toThrow();
  });
  test("a flag's value is not a positional, words after -- belong to the command", () => {
    expect(() => checkArgs(["--namespace", "demo", "svc/echo", "--", "java", "-jar", "app.jar"], args, "ktctl x")).not.toThrow();
  });
  test("an unknown flag is a usage error with a suggestion", () => {
    const error = failure(() => checkArgs(["svc/echo", "--namspace", "demo"], args, "ktctl x"));
    expect(error.message).toBe('unknown flag "--namspace" for ktctl x');
    expect(error.hint).toBe('did you mean "--namespace"?');
    expect(error.exitCode).toBe(ExitCode.usage);
  });
  test("an unknown flag far from any known one points at --help", () => {
    expect(failure(() => checkArgs(["--json"], {}, "ktctl version")).hint).toBe('run "ktctl version --help" for its flags');
  });
  test("a value flag does not take --no-", () => {
    expect(failure(() => checkArgs(["--no-namespace"], args, "ktctl x")).message).toContain("--no-namespace");
  });
  test("extra words are refused unless the last positional is variadic", () => {
    const error = failure(() => checkArgs(["svc/echo", "extra"], args, "ktctl x"));
    expect(error.message).toBe('unexpected argument "extra" for ktctl x');
    expect(() => checkArgs(["svc/echo", "80", "81", "82"], variadic, "ktctl forward")).not.toThrow();
  });
});

describe("colour", () => {
  test("only on a terminal, never with NO_COLOR, always with FORCE_COLOR", () => {
    expect(colorWanted({ isTTY: true }, {})).toBe(true);
    expect(colorWanted({ isTTY: false }, {})).toBe(false);
    expect(colorWanted({}, {})).toBe(false);
    expect(colorWanted({ isTTY: true }, { NO_COLOR: "1" })).toBe(false);
    expect(colorWanted({ isTTY: false }, { FORCE_COLOR: "1" })).toBe(true);
  });
  test("escape codes are stripped for pipes", () => {
    expect(stripAnsi("\u001b[4m\u001b[1mUSAGE\u001b[22m\u001b[24m \u001b[36mktctl\u001b[39m")).toBe("USAGE ktctl");
  });
});
