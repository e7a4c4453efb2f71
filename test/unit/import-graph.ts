// Reads the import statements of the project's source files, for the plugin boundary test: static
// `import ... from`, `import "x"`, `export ... from` (multi-line too) and dynamic `import("x")`,
// with comments skipped and each import's line and whether it is type-only.

import { readdirSync, readFileSync } from "node:fs";
import { join, posix, relative, resolve } from "node:path";

export const ROOT = resolve(import.meta.dir, "../..");

export interface ImportEdge {
  /** Repo-relative path of the importing file. */
  from: string;
  line: number;
  specifier: string;
  /** Repo-relative path of a relative import's target; undefined for packages and node: builtins. */
  target?: string;
  /** `import type ...` or `export type ... from`: erased at compile time, never loaded. */
  typeOnly: boolean;
  dynamic: boolean;
}

const SOURCE = /\.(m?[jt]s|[jt]sx|c[jt]s)$/;

/** Every source file under `dir` (repo-relative), node_modules left out. */
export function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (absolute: string) => {
    let entries;
    try {
      entries = readdirSync(absolute, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      if (entry.name === "node_modules" || entry.name.startsWith(".")) continue;
      const path = join(absolute, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (SOURCE.test(entry.name) && !entry.name.endsWith(".d.ts")) out.push(relative(ROOT, path).split("\\").join("/"));
    }
  };
  walk(join(ROOT, dir));
  return out.sort();
}

/** The source with comments blanked (same length, newlines kept), strings and templates untouched. */
export function blankComments(source: string): string {
  let out = "";
  let i = 0;
  while (i < source.length) {
    const c = source[i]!;
    const next = source[i + 1];
    if (c === "/" && next === "/") {
      const end = source.indexOf("\n", i);
      const stop = end === -1 ? source.length : end;
      out += " ".repeat(stop - i);
      i = stop;
    } else if (c === "/" && next === "*") {
      const end = source.indexOf("*/", i + 2);
      const stop = end === -1 ? source.length : end + 2;
      out += source.slice(i, stop).replace(/[^\n]/g, " ");
      i = stop;
    } else if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      while (j < source.length && source[j] !== c) j += source[j] === "\\" ? 2 : 1;
      out += source.slice(i, j + 1);
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

const CLAUSE = String.raw`(?:[\w$]+\s*,\s*)?(?:\{[^}]*\}|\*\s*as\s+[\w$]+)|[\w$]+`;
const PATTERNS: { re: RegExp; dynamic: boolean }[] = [
  { re: new RegExp(String.raw`\bimport\s+(type\s+)?(?:${CLAUSE})\s*from\s*(["'])([^"'\n]+)\2`, "g"), dynamic: false },
  { re: new RegExp(String.raw`\bexport\s+(type\s+)?(?:\{[^}]*\}|\*(?:\s*as\s+[\w$]+)?)\s*from\s*(["'])([^"'\n]+)\2`, "g"), dynamic: false },
  { re: /\bimport\s*()(["'])([^"'\n]+)\2/g, dynamic: false },
  { re: /\bimport\s*\(\s*()(["'`])([^"'`\n]+)\2\s*[,)]/g, dynamic: true },
];

/** The imports of one file's text. */
export function importsOf(from: string, source: string): ImportEdge[] {
  const text = blankComments(source);
  const edges: ImportEdge[] = [];
  for (const { re, dynamic } of PATTERNS) {
    for (const match of text.matchAll(re)) {
      const specifier = match[3]!;
      const target = specifier.startsWith(".") ? posix.normalize(posix.join(posix.dirname(from), specifier)) : undefined;
      const line = text.slice(0, match.index).split("\n").length;
      edges.push({ from, line, specifier, target, typeOnly: Boolean(match[1]), dynamic });
    }
  }
  return edges.sort((a, b) => a.line - b.line);
}

export function importsOfFile(from: string): ImportEdge[] {
  return importsOf(from, readFileSync(join(ROOT, from), "utf8"));
}

/** "plugins/exchange" for "plugins/exchange/ports.ts"; the folder a plugin owns. */
export const pluginFolder = (path: string): string => path.split("/").slice(0, 2).join("/");

export const within = (path: string | undefined, folder: string): boolean => path !== undefined && (path === folder || path.startsWith(`${folder}/`));
