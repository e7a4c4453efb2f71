import { describe, expect, test } from "bun:test";
import { selfArgv } from "../../core/self.ts";
import { watchdogArgv } from "../../core/session/watchdog.ts";

describe("selfArgv: this ktctl as a child process", () => {
  test("compiled binary: the binary itself, then the arguments", () => {
    expect(selfArgv(["connect", "--mode", "proxy"], { execPath: "/usr/local/bin/ktctl", main: "/$bunfs/root/ktctl", argv: ["/usr/local/bin/ktctl", "spring"] })).toEqual([
      "/usr/local/bin/ktctl",
      "connect",
      "--mode",
      "proxy",
    ]);
  });

  test("from source: bun, the absolute script, then the arguments", () => {
    expect(selfArgv(["connect"], { execPath: "/usr/bin/bun", main: "/repo/core/cli/main.ts", argv: ["/usr/bin/bun", "core/cli/main.ts"] })).toEqual([
      "/usr/bin/bun",
      `${process.cwd()}/core/cli/main.ts`,
      "connect",
    ]);
  });

  test("the watchdog's command line is the same rule", () => {
    const from = { execPath: "/usr/bin/bun", main: "/repo/main.ts", argv: ["/usr/bin/bun", "/repo/main.ts"] };
    expect(watchdogArgv("abc123", from)).toEqual(selfArgv(["__watchdog", "abc123"], from));
  });
});
