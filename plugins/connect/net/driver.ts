// How connect changes the laptop's network, one driver per way of doing it. Every driver has the same
// method set and works in two halves: a PLAN (pure data: commands with their undo, files with their
// new content) made from what a read-only probe found, then the execution of that plan, where each
// change is a journaled session step whose undo is recorded before the change is made. A plan can be
// printed (--dryRun) and compared in unit tests on any OS, including macOS and Windows plans.

import { writeFile } from "node:fs/promises";
import type { ErrorsApi, KtctlErrorInstance, PluginApi, Session, StepSpec } from "../../../core/plugin-api.ts";
import type { CaptureRanges } from "./cluster-cidrs.ts";
import type { HostsEntry } from "./hosts-file.ts";

/** What every action may say of itself. */
interface NetActionOrder {
  /**
   * Needs nothing of the actions before it, and no later action needs it first: neighbours that all
   * say so are applied at the same time (each is a process start on connect's way to ready).
   */
  independent?: boolean;
}

/** A change itself: commands with their undo, or a file's new content. */
type NetChange =
  | {
      kind: "run";
      describe: string;
      commands: string[][];
      /** Commands that take the change back; they must be harmless when run twice. */
      undo: string[][];
      /** Extra output patterns that mean "already undone". */
      tolerate?: string[];
      /** Actions with the same key share one journaled undo (a reload of rules already journaled). */
      undoKey?: string;
    }
  | {
      kind: "write-file";
      describe: string;
      path: string;
      /** The whole new content; the original bytes are journaled before the first write. */
      content: string;
    };

export type NetAction = NetChange & NetActionOrder;

export interface NetPlan {
  driver: string;
  actions: NetAction[];
  /** What the user needs to know or do (proxy settings, limits of this driver). */
  notes: string[];
}

/** A connection target inside the cluster and the loopback listener that stands for it. */
export interface PortMapping {
  target: { host: string; port: number };
  listen: { host: string; port: number };
}

/** What connect asks of the laptop, the same on every OS. */
export interface ConnectNetSpec {
  sessionId: string;
  namespace: string;
  domain: string;
  capture: CaptureRanges;
  /** Port of the loopback listener that takes every captured connection (transparent capture). */
  transparentPort?: number;
  /** The local DNS server: `address` is what the system resolver is told (port 53), `port` where it really listens on 127.0.0.1. */
  dns?: { address: string; port: number; searchDomains: string[]; namespaces: string[] };
  /** Hosts-file entries (hosts drivers). */
  hosts?: HostsEntry[];
  /** Listener per target (drivers that cannot learn a connection's original destination). */
  mappings?: PortMapping[];
  /** The proxy server (proxy driver). */
  proxy?: { host: string; port: number };
}

/** What a probe found out about the host; plans depend only on this and the spec. */
export interface HostFacts {
  platform: string;
  isRoot: boolean;
  /** Tools found on PATH, by name. */
  tools: Record<string, boolean>;
  /** resolv.conf as it is now (its real path when it is a symlink). */
  resolvConf?: { path: string; content: string; managedByResolved: boolean };
  hostsFile?: { path: string; content: string };
  /** Capture ranges the routing table has no route for (Linux): connect adds one through loopback. */
  unroutedCidrs?: string[];
  /** macOS: whether pf is enabled already. */
  pfEnabled?: boolean;
  /** macOS: whether /etc/resolver exists. */
  resolverDirExists?: boolean;
}

export interface NetDriver {
  /** e.g. "linux-system", "linux-hosts", "darwin", "windows", "proxy". */
  readonly name: string;
  /** How connections reach the tunnel: one transparent listener, a listener per mapping, or the proxy. */
  readonly capture: "transparent" | "mapped" | "proxy";
  /** Reads files, tools and routes the plan depends on; changes nothing. */
  probe(spec: ConnectNetSpec): Promise<HostFacts>;
  /** Pure: the changes that make `spec` true on a host described by `facts`. Throws a KtctlError when it cannot. */
  prepare(spec: ConnectNetSpec, facts: HostFacts): NetPlan;
  /** Pure: the actions that bring a running connect up to date after the index changed (may be empty). */
  refresh(spec: ConnectNetSpec, facts: HostFacts): NetAction[];
}

/**
 * Refusal when another connect's changes are in a file this one would write. Each connect restores
 * the bytes it found, so two at once would, leaving in the wrong order, put the other's changes back
 * for good (a resolv.conf naming a DNS server that is gone).
 */
export function fileHeldByOtherConnect(errors: ErrorsApi, path: string, holder: string): KtctlErrorInstance {
  return new errors.KtctlError(
    `${path} is already changed by ktctl connect session ${holder}; only one connect at a time may change it`,
    errors.ExitCode.conflict,
    `stop that connect first, or run this one with --mode proxy; if session ${holder} is gone, \`ktctl clean --localOnly\` restores the file`,
  );
}

// ---------------------------------------------------------------------------------------------
// Printing

const quote = (arg: string) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`);
export const commandLine = (argv: string[]) => argv.map(quote).join(" ");

/** The plan as a person reads it (--dryRun). */
export function formatPlan(plan: NetPlan): string {
  const lines = [`driver: ${plan.driver}`];
  if (!plan.actions.length) lines.push("changes: none");
  for (const [i, action] of plan.actions.entries()) {
    lines.push(`${i + 1}. ${action.describe}`);
    if (action.kind === "run") {
      for (const argv of action.commands) lines.push(`     $ ${commandLine(argv)}`);
      for (const argv of action.undo) lines.push(`     undo: ${commandLine(argv)}`);
    } else {
      lines.push(`     write ${action.path}:`);
      for (const line of action.content.replace(/\n$/, "").split("\n")) lines.push(`     | ${line}`);
      lines.push(`     undo: restore the original bytes of ${action.path}`);
    }
  }
  for (const note of plan.notes) lines.push(`note: ${note}`);
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------
// Executing

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}
export type CommandRunner = (argv: string[]) => Promise<CommandResult>;

export const spawnRunner: CommandRunner = async (argv) => {
  let proc;
  try {
    proc = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  } catch (error) {
    return { code: 127, stdout: "", stderr: (error as Error).message };
  }
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
};

/** Runs a command that must succeed; its first error line becomes the KtctlError. */
export async function runChecked(runner: CommandRunner, argv: string[], errors: ErrorsApi): Promise<CommandResult> {
  const result = await runner(argv);
  if (result.code !== 0) {
    const detail = (result.stderr || result.stdout).trim().split("\n")[0] || `exit code ${result.code}`;
    throw new errors.KtctlError(`${commandLine(argv)} failed: ${detail}`, errors.ExitCode.failure);
  }
  return result;
}

/**
 * Carries out plans inside a session. It remembers which undos are journaled already, so a later
 * refresh (a rewritten hosts block, reloaded rules) adds no steps.
 */
export class PlanExecutor {
  private readonly journaled = new Set<string>();

  constructor(
    private readonly session: Pick<Session, "step">,
    /** The core's step builders (their undo kinds run even where this plugin is not loaded) and errors. */
    private readonly api: Pick<PluginApi, "steps" | "errors">,
    private readonly runner: CommandRunner = spawnRunner,
  ) {}

  async apply(actions: NetAction[]): Promise<void> {
    for (let start = 0; start < actions.length; ) {
      let end = start + 1;
      if (actions[start]!.independent) while (end < actions.length && actions[end]!.independent) end++;
      // All of a batch settle before apply() answers, so a failure never leaves a change running.
      const outcomes = await Promise.allSettled(actions.slice(start, end).map((action) => this.applyOne(action)));
      const failed = outcomes.find((outcome) => outcome.status === "rejected");
      if (failed) throw failed.reason;
      start = end;
    }
  }

  private async applyOne(action: NetAction): Promise<void> {
    if (action.kind === "write-file") {
      const key = `file:${action.path}`;
      const write = () => writeInPlace(action.path, action.content);
      if (this.journaled.has(key)) return write();
      const spec: StepSpec = await this.api.steps.restoreFile(action.path, action.describe);
      await this.session.step(spec, write);
      this.journaled.add(key);
      return;
    }
    const run = async () => {
      for (const argv of action.commands) await runChecked(this.runner, argv, this.api.errors);
    };
    const key = action.undoKey ? `run:${action.undoKey}` : undefined;
    if (key && this.journaled.has(key)) return run();
    await this.session.step(this.api.steps.run(action.undo, action.describe, action.tolerate ?? []), run);
    if (key) this.journaled.add(key);
  }
}

/**
 * Rewrites a file in place (same inode): resolv.conf and hosts are often bind mounts (containers,
 * network namespaces, WSL) where a rename fails with EBUSY.
 */
export async function writeInPlace(path: string, content: string): Promise<void> {
  await writeFile(path, content);
}
