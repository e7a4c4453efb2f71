// Most of what a Bun process keeps resident once idle is code, not data: measured here, 57 of
// ktctl connect's 82 MiB and 41 of the shadow's 50 MiB were pages of the executable (Bun's own
// machine code, its read-only data and the embedded bundle), most of them touched only while
// starting (module loading, TLS and SSH set-up, the JIT's compilers). Once a long-running process
// has started, those pages are handed back to the kernel (Linux: madvise MADV_PAGEOUT on the
// executable's file-backed mappings, MADV_DONTNEED on those that are read-only and clean, after a
// full garbage collection); what the idle process still runs comes back on demand as a page fault,
// from the page cache. Elsewhere, or when libc cannot be
// loaded, nothing happens. Shared by ktctl and the shadow.

import { readFileSync } from "node:fs";

const MADV_DONTNEED = 4;
const MADV_PAGEOUT = 21;
const LIBC_NAMES = ["libc.so.6", "libc.so"];

/** VmRSS of this process in KiB (Linux), undefined elsewhere. */
export function residentKiB(): number | undefined {
  try {
    const match = /VmRSS:\s+(\d+)/.exec(readFileSync("/proc/self/status", "utf8"));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

export interface Mapping {
  start: number;
  length: number;
  /** Neither writable nor holding a page that differs from the file: dropping it loses nothing. */
  clean: boolean;
}

/**
 * The executable's own file-backed mappings, from /proc/self/smaps text. A mapping is clean when it
 * is not writable and has no private dirty page (relocated tables made read-only afterwards do).
 */
export function executableMappings(smaps: string, executable: string): Mapping[] {
  const mappings: Mapping[] = [];
  let current: (Mapping & { readOnly: boolean }) | undefined;
  for (const line of smaps.split("\n")) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S+) [0-9a-f]+ \S+ \d+\s*(.*)$/.exec(line);
    if (head) {
      current = undefined;
      if (head[4] !== executable) continue;
      const start = Number.parseInt(head[1]!, 16);
      current = { start, length: Number.parseInt(head[2]!, 16) - start, clean: !head[3]!.includes("w"), readOnly: !head[3]!.includes("w") };
      mappings.push(current);
      continue;
    }
    const dirty = /^(Private_Dirty|Anonymous):\s+(\d+) kB/.exec(line);
    if (current && dirty && Number(dirty[2]) > 0) current.clean = false;
  }
  return mappings.map(({ start, length, clean }) => ({ start, length, clean }));
}

/**
 * Collects garbage and hands the executable's resident pages back to the kernel. Returns the
 * resident size before and after (KiB), or undefined where it does not apply.
 */
export async function releaseStartPages(): Promise<{ beforeKiB: number; afterKiB: number } | undefined> {
  if (process.platform !== "linux") return undefined;
  const beforeKiB = residentKiB();
  if (beforeKiB === undefined) return undefined;
  Bun.gc(true);
  const { dlopen, FFIType } = await import("bun:ffi");
  let madvise: ((address: number, length: number, advice: number) => number) | undefined;
  for (const name of LIBC_NAMES) {
    try {
      const libc = dlopen(name, { madvise: { args: [FFIType.u64, FFIType.u64, FFIType.i32], returns: FFIType.i32 } });
      madvise = libc.symbols.madvise as typeof madvise;
      break;
    } catch {
      // the next name, or none: nothing released
    }
  }
  if (!madvise) return undefined;
  for (const mapping of executableMappings(readFileSync("/proc/self/smaps", "utf8"), process.execPath)) {
    // Clean read-only pages are dropped from this process (they are read again from the file when
    // touched), even those another ktctl process maps too; anything else is only offered to the
    // kernel's reclaim, which never loses a byte. Both are hints: an older kernel says EINVAL.
    madvise(mapping.start, mapping.length, mapping.clean ? MADV_DONTNEED : MADV_PAGEOUT);
  }
  return { beforeKiB, afterKiB: residentKiB() ?? beforeKiB };
}

export interface IdleOptions {
  /** How often the process's CPU time is looked at. */
  everyMs: number;
  /** Idle: less CPU time than this share of the interval was used in it (0.02 = 2 %). */
  busyShare: number;
}

/** Default: a look every 3 s; idle below 2 % of a core (a lease renewal, a few liveness pings). */
export const IDLE_DEFAULTS: IdleOptions = { everyMs: 3_000, busyShare: 0.02 };

/**
 * Calls `then` once the process has spent a whole interval (nearly) without CPU: a transfer that
 * runs right after the start is not slowed down by its code being paged back in. The timer keeps
 * no process alive; the returned function cancels.
 */
export function whenIdle(then: () => void, options: IdleOptions = IDLE_DEFAULTS): () => void {
  let last = process.cpuUsage();
  const timer = setInterval(() => {
    const now = process.cpuUsage();
    const usedMs = (now.user - last.user + now.system - last.system) / 1000;
    last = now;
    if (usedMs >= options.everyMs * options.busyShare) return;
    clearInterval(timer);
    then();
  }, options.everyMs);
  timer.unref?.();
  return () => clearInterval(timer);
}

