// Undo kinds that act on the laptop: put a file back byte for byte (restore-file), run commands
// that take a change away again (run). They run only on the host that made the step.

import { lstat, readFile, readlink, rm, symlink, writeFile, rename, chmod, chown } from "node:fs/promises";
import { dirname, basename, join } from "node:path";
import { randomBytes } from "node:crypto";
import type { UndoKind } from "../../plugin-api.ts";
import { UndoError } from "./common.ts";

const isErrno = (error: unknown, ...codes: string[]) => codes.includes((error as NodeJS.ErrnoException)?.code ?? "");

export async function lstatOrUndefined(path: string) {
  try {
    return await lstat(path);
  } catch (error) {
    if (isErrno(error, "ENOENT")) return undefined;
    throw error;
  }
}

/** Writes bytes so readers never see half a file; falls back to in-place for bind-mounted files. */
async function writeFileSafely(path: string, bytes: Buffer, mode?: number) {
  const tmp = join(dirname(path), `.${basename(path)}.ktctl-${randomBytes(4).toString("hex")}`);
  try {
    await writeFile(tmp, bytes, { mode: mode ?? 0o644 });
    if (mode !== undefined) await chmod(tmp, mode);
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    // A bind-mounted /etc/hosts or resolv.conf (containers, WSL) cannot be replaced, only rewritten.
    if (!isErrno(error, "EBUSY", "EXDEV", "EPERM", "EACCES")) throw error;
    await writeFile(path, bytes);
    if (mode !== undefined) await chmod(path, mode);
  }
}

export const restoreFile: UndoKind = {
  where: "laptop",
  async run(ctx, data) {
    const path = data.path;
    if (typeof path !== "string" || !path) throw new UndoError("restore-file undo lacks the path");
    const current = await lstatOrUndefined(path);

    if (typeof data.linkTarget === "string") {
      if (current?.isSymbolicLink() && (await readlink(path)) === data.linkTarget) return;
      if (current) await rm(path, { force: true });
      await symlink(data.linkTarget, path);
      return;
    }
    if (data.content === null || data.content === undefined) {
      await rm(path, { force: true });
      return;
    }
    if (typeof data.content !== "string") throw new UndoError(`restore-file undo of ${path} has no base64 content`);
    const bytes = Buffer.from(data.content, "base64");
    const mode = typeof data.mode === "number" ? data.mode & 0o7777 : undefined;
    if (current?.isFile()) {
      const same = (await readFile(path)).equals(bytes);
      const sameMode = mode === undefined || (current.mode & 0o7777) === mode;
      if (same && sameMode) return;
      if (same) {
        await chmod(path, mode!);
        return;
      }
    } else if (current) {
      // Something else (a symlink, a directory) stands where a regular file was.
      await rm(path, { force: true, recursive: current.isDirectory() });
    }
    await writeFileSafely(path, bytes, mode);
    if (typeof data.uid === "number" && typeof data.gid === "number" && process.getuid?.() === 0) {
      await chown(path, data.uid, data.gid);
    }
    ctx.logger?.debug(`restored ${path}`);
  },
};

/** What commands print when the thing they would remove is already gone. */
const ALREADY_GONE = [
  /does a matching rule exist/i,
  /no chain\/target\/match by that name/i,
  /no such (file|device|process|rule|chain|table)/i,
  /cannot find device/i,
  /does not exist/i,
  /not found/i,
  /not exist/i,
];

export const runCommands: UndoKind = {
  where: "laptop",
  async run(ctx, data) {
    const commands = data.commands;
    if (!Array.isArray(commands) || !commands.every((c) => Array.isArray(c) && c.length && c.every((a) => typeof a === "string"))) {
      throw new UndoError("run undo needs commands as a list of argument lists");
    }
    const extra = Array.isArray(data.tolerate) ? (data.tolerate as string[]).map((s) => new RegExp(s, "i")) : [];
    const failures: string[] = [];
    // Every command is tried, so one already-gone rule does not keep the next rule in place.
    for (const argv of commands as string[][]) {
      let proc;
      try {
        proc = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
      } catch (error) {
        failures.push(`${argv.join(" ")}: ${(error as Error).message}`);
        continue;
      }
      const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
      if (code === 0) continue;
      const output = `${stderr}\n${stdout}`;
      // 126/127: the shell could not run the command at all; that is never "already undone".
      if (code !== 126 && code !== 127 && [...ALREADY_GONE, ...extra].some((re) => re.test(output))) {
        ctx.logger?.debug(`${argv.join(" ")}: already undone`);
        continue;
      }
      failures.push(`${argv.join(" ")} exited ${code}: ${output.trim().split("\n")[0]}`);
    }
    if (failures.length) throw new UndoError(failures.join("; "));
  },
};
