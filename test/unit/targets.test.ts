import { describe, expect, test } from "bun:test";
import { ExitCode, KtctlError } from "../../core/errors.ts";
import { parseTarget } from "../../core/targets.ts";

describe("parseTarget", () => {
  test("kubectl spellings", () => {
    expect(parseTarget("echo")).toEqual({ kind: "service", name: "echo" });
    expect(parseTarget("svc/echo")).toEqual({ kind: "service", name: "echo" });
    expect(parseTarget("service/echo")).toEqual({ kind: "service", name: "echo" });
    expect(parseTarget("deploy/echo")).toEqual({ kind: "deployment", name: "echo" });
    expect(parseTarget("Deployment/echo")).toEqual({ kind: "deployment", name: "echo" });
    expect(parseTarget("po/echo-1")).toEqual({ kind: "pod", name: "echo-1" });
    expect(parseTarget("pod/echo-1")).toEqual({ kind: "pod", name: "echo-1" });
  });

  test("refusals are usage errors naming the input", () => {
    for (const [text, message] of [
      ["job/x", 'unsupported target kind "job"'],
      ["svc/", 'invalid target "svc/"'],
      ["/echo", 'invalid target "/echo"'],
      ["svc/a/b", 'invalid target "svc/a/b"'],
    ] as const) {
      let error: unknown;
      try {
        parseTarget(text);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(KtctlError);
      expect((error as KtctlError).exitCode).toBe(ExitCode.usage);
      expect((error as KtctlError).message).toContain(message);
    }
  });
});
