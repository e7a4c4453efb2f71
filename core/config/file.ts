// Reading and writing one config file. Every failure is a one-line KtctlError(config) naming the
// file and, when the parser knows it, the line.

import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { dump, loadAll } from "js-yaml";
import { ExitCode, KtctlError } from "../errors.ts";

export type ConfigData = Record<string, unknown>;

export const configError = (path: string, what: string, line?: number) =>
  new KtctlError(`config file ${path}${line ? ` line ${line}` : ""}: ${what}`, ExitCode.config);

export const isMapping = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** Parses config text; an empty file (or only comments) is an empty config. */
export function parseConfigText(text: string, path: string): ConfigData {
  let documents: unknown[];
  try {
    documents = loadAll(text, { filename: path });
  } catch (error) {
    const e = error as { reason?: string; mark?: { line: number }; message: string };
    throw configError(path, e.reason ?? e.message.split("\n")[0]!, e.mark ? e.mark.line + 1 : undefined);
  }
  if (documents.length > 1) throw configError(path, "expected one YAML document, found several");
  const data = documents[0] ?? {};
  if (!isMapping(data)) throw configError(path, "expected a mapping of option names to values, e.g. \"namespace: demo\"");
  return data;
}

/** The file's settings, or undefined when it does not exist. */
export function readConfigFile(path: string): ConfigData | undefined {
  if (!existsSync(path)) return undefined;
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw configError(path, `cannot read: ${(error as Error).message}`);
  }
  return parseConfigText(text, path);
}

/** Best-effort 1-based line of `key:` in the file text, for messages about a value. */
export function lineOfKey(text: string, key: string): number | undefined {
  const pattern = new RegExp(`^\\s*["']?${key.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}["']?\\s*:`);
  const index = text.split("\n").findIndex((line) => pattern.test(line));
  return index === -1 ? undefined : index + 1;
}

/** Writes the file whole, through a temporary file and a rename so a crash never leaves half a file. */
export function writeConfigFile(path: string, data: ConfigData): void {
  const text = Object.keys(data).length === 0 ? "" : dump(data, { lineWidth: -1 });
  try {
    mkdirSync(dirname(path), { recursive: true });
    const temporary = `${path}.${process.pid}.tmp`;
    writeFileSync(temporary, text);
    renameSync(temporary, path);
  } catch (error) {
    throw configError(path, `cannot write: ${(error as Error).message}`);
  }
}
