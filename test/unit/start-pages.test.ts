import { describe, expect, test } from "bun:test";
import { executableMappings, releaseStartPages, residentKiB, whenIdle } from "../../core/protocol/start-pages.ts";

const SMAPS = `00200000-01a39000 r--p 00000000 08:01 123 /opt/ktctl
Rss:                7524 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
01a40000-0684a000 r-xp 01838000 08:01 123 /opt/ktctl
Rss:               39368 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
0684a000-06867000 r--p 06649000 08:01 123 /opt/ktctl
Rss:                 116 kB
Private_Dirty:       116 kB
Anonymous:           116 kB
06867000-0745d000 rw-p 0665e000 08:01 123 /opt/ktctl
Rss:                8140 kB
Private_Dirty:        12 kB
Anonymous:            12 kB
7f5653c98000-7f5653dee000 r-xp 00026000 08:01 9 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                1112 kB
Private_Dirty:         0 kB
213b5000000-213bcdb0000 rw-p 00000000 00:00 0
Rss:               20816 kB
Private_Dirty:     20816 kB
`;

describe("start pages", () => {
  test("only the executable's mappings; clean means read-only and no private dirty page", () => {
    expect(executableMappings(SMAPS, "/opt/ktctl")).toEqual([
      { start: 0x200000, length: 0x1a39000 - 0x200000, clean: true },
      { start: 0x1a40000, length: 0x684a000 - 0x1a40000, clean: true },
      // relocated, then made read-only: its pages differ from the file and must never be dropped
      { start: 0x684a000, length: 0x6867000 - 0x684a000, clean: false },
      { start: 0x6867000, length: 0x745d000 - 0x6867000, clean: false },
    ]);
    expect(executableMappings(SMAPS, "/usr/bin/other")).toEqual([]);
  });

  test.skipIf(process.platform !== "linux")("released in this very process: less resident, and the process runs on", async () => {
    const before = residentKiB()!;
    const released = await releaseStartPages();
    expect(released).toBeDefined();
    expect(released!.afterKiB).toBeLessThan(released!.beforeKiB);
    expect(before).toBeGreaterThan(0);
    // Code comes back on demand: the test runner itself goes on working.
    expect(JSON.parse(JSON.stringify({ still: "running" }))).toEqual({ still: "running" });
  });

  test("whenIdle waits out a busy interval and fires in the first quiet one", async () => {
    let fired = 0;
    whenIdle(() => fired++, { everyMs: 50, busyShare: 0.5 });
    // Busy for 120 ms of CPU (not of wall time: a loaded machine gives a loop less than a core).
    const start = process.cpuUsage();
    const cpuMs = () => {
      const now = process.cpuUsage(start);
      return (now.user + now.system) / 1000;
    };
    while (cpuMs() < 120) Math.sqrt(Math.random());
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(fired).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 130));
    expect(fired).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect(fired).toBe(1); // once
  });
});
