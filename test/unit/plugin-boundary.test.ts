// The rule that makes plugins real (docs/plugins.md): a plugin gets everything through `api`.
// - A file under plugins/ or examples/ imports nothing outside its own plugin folder except
//   core/plugin-api.ts, and that only with `import type` (a team's plugin loaded by the compiled
//   binary cannot import the host's files at run time).
// - core/plugin-api.ts imports no project file except, type-only, core/protocol/*.
// - core/protocol/* (what core and shadow share word for word) imports nothing of core/ or shadow/.
// - No core/ file but core/plugins/builtin.ts imports from plugins/ or examples/.

import { describe, expect, test } from "bun:test";
import { importsOf, importsOfFile, pluginFolder, sourceFiles, within, type ImportEdge } from "./import-graph.ts";

const PLUGIN_API = "core/plugin-api.ts";
const BUILTIN_TABLE = "core/plugins/builtin.ts";

const at = (edge: ImportEdge) => `${edge.from}:${edge.line}: ${edge.dynamic ? "import(" : ""}"${edge.specifier}"${edge.dynamic ? ")" : ""}`;

export function boundaryOffenders(): string[] {
  const offenders: string[] = [];
  for (const file of [...sourceFiles("plugins"), ...sourceFiles("examples")]) {
    const own = pluginFolder(file);
    for (const edge of importsOfFile(file)) {
      if (!edge.target || within(edge.target, own)) continue;
      if (edge.target === PLUGIN_API) {
        if (!edge.typeOnly) offenders.push(`${at(edge)} imports ${PLUGIN_API} without "import type"`);
      } else if (within(edge.target, "plugins") || within(edge.target, "examples")) {
        offenders.push(`${at(edge)} imports another plugin's file ${edge.target}`);
      } else {
        offenders.push(`${at(edge)} imports ${edge.target} (a plugin imports only ${PLUGIN_API}, type-only)`);
      }
    }
  }
  for (const edge of importsOfFile(PLUGIN_API)) {
    if (!edge.target) continue;
    if (!within(edge.target, "core/protocol")) offenders.push(`${at(edge)} imports ${edge.target} (the contract imports only core/protocol/*)`);
    else if (!edge.typeOnly) offenders.push(`${at(edge)} imports ${edge.target} without "import type"`);
  }
  for (const file of sourceFiles("core/protocol")) {
    for (const edge of importsOfFile(file)) {
      if (within(edge.target, "core/protocol")) continue;
      if (within(edge.target, "core") || within(edge.target, "shadow")) offenders.push(`${at(edge)} imports ${edge.target} (core/protocol imports nothing of core/ or shadow/)`);
    }
  }
  for (const file of sourceFiles("core")) {
    if (file === BUILTIN_TABLE) continue;
    for (const edge of importsOfFile(file)) {
      if (within(edge.target, "plugins") || within(edge.target, "examples")) {
        offenders.push(`${at(edge)} imports ${edge.target} (only ${BUILTIN_TABLE} names plugins)`);
      }
    }
  }
  return offenders;
}

describe("the import reader", () => {
  test("static, multi-line, export-from, side-effect and dynamic imports, with their lines", () => {
    const source = [
      'import { a } from "./a.ts";',
      "import {",
      "  b,",
      "  c,",
      '} from "../b.ts";',
      'import type { T } from "./t.ts";',
      'import type {',
      '  U,',
      '} from "./u.ts";',
      'import { type V } from "./v.ts";',
      'import * as ns from "./ns.ts";',
      'import def, { named } from "./def.ts";',
      'import "./side.ts";',
      'export { x } from "./x.ts";',
      'export type { Y } from "./y.ts";',
      'export * from "./star.ts";',
      'const lazy = () => import("./lazy.ts");',
      'const pkg = await import( "consola" );',
      'import { readFile } from "node:fs/promises";',
    ].join("\n");
    const edges = importsOf("plugins/p/index.ts", source).map((e) => [e.line, e.specifier, e.target, e.typeOnly, e.dynamic]);
    expect(edges).toEqual([
      [1, "./a.ts", "plugins/p/a.ts", false, false],
      [2, "../b.ts", "plugins/b.ts", false, false],
      [6, "./t.ts", "plugins/p/t.ts", true, false],
      [7, "./u.ts", "plugins/p/u.ts", true, false],
      [10, "./v.ts", "plugins/p/v.ts", false, false],
      [11, "./ns.ts", "plugins/p/ns.ts", false, false],
      [12, "./def.ts", "plugins/p/def.ts", false, false],
      [13, "./side.ts", "plugins/p/side.ts", false, false],
      [14, "./x.ts", "plugins/p/x.ts", false, false],
      [15, "./y.ts", "plugins/p/y.ts", true, false],
      [16, "./star.ts", "plugins/p/star.ts", false, false],
      [17, "./lazy.ts", "plugins/p/lazy.ts", false, true],
      [18, "consola", undefined, false, true],
      [19, "node:fs/promises", undefined, false, false],
    ]);
  });

  test("comments and strings are not imports; a declaration before an import does not swallow it", () => {
    const source = [
      "// import { no } from \"./line-comment.ts\";",
      "/* import { no } from \"./block.ts\";",
      "   import(\"./also-block.ts\") */",
      'const text = "see http://example.com // not a comment";',
      "export interface Shape {",
      "  a: number",
      "}",
      'import type { Real } from "../../core/plugin-api.ts";',
    ].join("\n");
    expect(importsOf("examples/e/x.ts", source).map((e) => [e.line, e.target, e.typeOnly])).toEqual([[8, "core/plugin-api.ts", true]]);
  });
});

describe("the plugin boundary", () => {
  test("plugins import only core/plugin-api.ts (type-only), the contract only core/protocol, the protocol nothing of core or shadow, the core no plugin", () => {
    const offenders = boundaryOffenders();
    if (offenders.length) throw new Error(`${offenders.length} import(s) cross the plugin boundary:\n  ${offenders.join("\n  ")}`);
    expect(offenders).toEqual([]);
  });
});
