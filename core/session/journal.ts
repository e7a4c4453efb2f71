// The undo journal and its local copy: ~/.ktctl/sessions/<id>.json, which the watchdog and `clean`
// on this host read. The cluster copy (the session Lease, renewed while the session lives) is in
// lease.ts; which processes are still running, in processes.ts.

import { mkdir, open, readFile, readdir, rename, rm } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import type { UndoWhere } from "./undo.ts";

export const JOURNAL_VERSION = 1;

/** How to reach the cluster again with the same credentials (the watchdog reconnects with this). */
export interface KubeTarget {
  /** The --kubeconfig flag, made absolute. */
  kubeconfig?: string;
  /** $KUBECONFIG as the session saw it (a list of files), used when there was no flag. */
  kubeconfigEnv?: string;
  context: string;
  namespace: string;
  server: string;
}

export interface SessionMeta {
  id: string;
  /** Human owner, e.g. "alice@laptop". */
  owner: string;
  mode: string;
  target?: string;
  /** Namespace of the session Lease. */
  namespace: string;
  host: string;
  pid: number;
  /** Identity of the process beyond its pid (Linux start time), so a reused pid is not taken for it. */
  pidStart?: string;
  watchdogPid?: number;
  watchdogPidStart?: string;
  /** ISO time the session started, by the API server's clock when known. */
  started: string;
  leaseDurationSeconds: number;
  kube: KubeTarget;
}

export type StepState = "recorded" | "applied" | "undone";

export interface JournalStep {
  seq: number;
  kind: string;
  describe: string;
  /** Empty in the Lease copy of laptop steps: only this host can undo them. */
  undo: Record<string, unknown>;
  where: UndoWhere;
  /** "recorded": journaled, apply not known to have finished; undo runs all the same. */
  state: StepState;
  /** Last undo failure, kept so `clean` and `status` can say why a step is still pending. */
  error?: string;
}

export interface Journal {
  version: number;
  meta: SessionMeta;
  steps: JournalStep[];
}

export const pendingSteps = (steps: JournalStep[]): JournalStep[] =>
  steps.filter((s) => s.state !== "undone").sort((a, b) => b.seq - a.seq);

// ---------------------------------------------------------------------------------------------
// Local file

/** ~/.ktctl, or $KTCTL_HOME. */
export const ktctlHome = (env: Record<string, string | undefined> = process.env): string => env.KTCTL_HOME || join(homedir(), ".ktctl");
export const sessionsDir = (home: string): string => join(home, "sessions");
export const journalPath = (home: string, id: string): string => join(sessionsDir(home), `${id}.json`);
export const watchdogLogPath = (home: string, id: string): string => join(sessionsDir(home), `${id}.watchdog.log`);

/** Writes the journal so a crash at any instant leaves either the old or the new file, never half. */
export async function writeLocalJournal(home: string, journal: Journal): Promise<void> {
  const dir = sessionsDir(home);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = journalPath(home, journal.meta.id);
  const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  // The journal may hold a hosts file or resolv.conf: readable by its owner only.
  const file = await open(tmp, "w", 0o600);
  try {
    await file.writeFile(JSON.stringify(journal, null, 1));
    await file.sync();
  } finally {
    await file.close();
  }
  try {
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
}

function parseJournal(text: string, source: string): Journal {
  const journal = JSON.parse(text) as Journal;
  if (journal?.version !== JOURNAL_VERSION || typeof journal.meta?.id !== "string" || !Array.isArray(journal.steps)) {
    throw new Error(`${source} is not a ktctl session journal`);
  }
  return journal;
}

export async function readLocalJournal(home: string, id: string): Promise<Journal | undefined> {
  try {
    return parseJournal(await readFile(journalPath(home, id), "utf8"), journalPath(home, id));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

/** Every local journal; unreadable files are reported, not fatal, so one bad file blocks nothing. */
export async function listLocalJournals(home: string): Promise<{ journals: Journal[]; unreadable: { path: string; error: string }[] }> {
  let names: string[];
  try {
    names = await readdir(sessionsDir(home));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { journals: [], unreadable: [] };
    throw error;
  }
  const journals: Journal[] = [];
  const unreadable: { path: string; error: string }[] = [];
  for (const name of names.filter((n) => /^[a-z0-9]+\.json$/.test(n)).sort()) {
    const path = join(sessionsDir(home), name);
    try {
      journals.push(parseJournal(await readFile(path, "utf8"), path));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") continue;
      unreadable.push({ path, error: (error as Error).message });
    }
  }
  return { journals, unreadable };
}

export async function removeLocalJournal(home: string, id: string): Promise<void> {
  await rm(journalPath(home, id), { force: true });
}
