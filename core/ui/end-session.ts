// Ending a running session from the ui: the same as Ctrl-C in its terminal (SIGTERM, which every
// mode handles by undoing its steps), after checking the process is really that session's ktctl
// and belongs to this user, so a reused pid or someone else's process is never signalled.

import { statSync } from "node:fs";
import { hostname } from "node:os";
import { ExitCode, KtctlError } from "../errors.ts";
import { readLocalJournal } from "../session/journal.ts";
import { isProcessAlive } from "../session/processes.ts";

function ownerUid(pid: number): number | undefined {
  if (process.platform !== "linux") return undefined;
  try {
    return statSync(`/proc/${pid}`).uid;
  } catch {
    return undefined;
  }
}

export async function endSession(home: string, sessionId: string): Promise<void> {
  if (!/^[a-z0-9]+$/.test(sessionId)) throw new KtctlError(`no session ${JSON.stringify(sessionId)}`, ExitCode.notFound);
  const journal = await readLocalJournal(home, sessionId);
  if (!journal) throw new KtctlError(`session ${sessionId} is not one of this laptop's`, ExitCode.notFound);
  const { pid, pidStart, host } = journal.meta;
  if (host !== hostname()) throw new KtctlError(`session ${sessionId} runs on ${host}, not here`, ExitCode.conflict);
  if (!isProcessAlive(pid, pidStart)) {
    throw new KtctlError(`session ${sessionId} has no running process`, ExitCode.notFound, "ktctl clean restores what it left");
  }
  const uid = ownerUid(pid);
  if (uid !== undefined && process.getuid && uid !== process.getuid()) {
    throw new KtctlError(`session ${sessionId} belongs to another user`, ExitCode.forbidden);
  }
  process.kill(pid, "SIGTERM");
}
