// Is the process that wrote a journal still running? A pid alone is not enough (pids are reused),
// so on Linux its start time goes with it.

import { readFileSync } from "node:fs";

/** Linux: the start time of a process (field 22 of /proc/<pid>/stat); elsewhere undefined. */
export function processIdentity(pid: number): string | undefined {
  if (process.platform !== "linux") return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: split after its closing paren.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[19];
  } catch {
    return undefined;
  }
}

function isZombie(pid: number): boolean {
  if (process.platform !== "linux") return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return false;
  }
}

/** Is the process that wrote `pid` (and, where known, started at `identity`) still running? */
export function isProcessAlive(pid: number | undefined, identity?: string): boolean {
  if (!pid || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  if (isZombie(pid)) return false;
  if (identity !== undefined) {
    const now = processIdentity(pid);
    if (now !== undefined && now !== identity) return false;
  }
  return true;
}
