// The `ktctl` npm package's launcher (esbuild's and biome's layout): the binary itself comes in one
// optional dependency per platform, @ktctl/<platform>-<cpu>, of which npm installs only the one
// whose `os` and `cpu` match. This file finds it and runs it with the same arguments, stdio, and
// exit status. Plain CommonJS with no dependencies, so any Node that npm runs can start it.
"use strict";

const { spawn } = require("node:child_process");
const { optionalDependencies } = require("../package.json");

function binaryPath() {
  const name = `@ktctl/${process.platform}-${process.arch}`;
  if (!(name in optionalDependencies)) {
    const supported = Object.keys(optionalDependencies).map((p) => p.replace("@ktctl/", "")).join(", ");
    fail(`ktctl has no binary for ${process.platform}-${process.arch} (there are: ${supported})`);
  }
  const executable = process.platform === "win32" ? "ktctl.exe" : "ktctl";
  try {
    return require.resolve(`${name}/bin/${executable}`);
  } catch {
    fail(`ktctl: the package ${name} that holds ktctl's binary for this platform is not installed (was ktctl installed with --omit=optional or --no-optional?); reinstall ktctl`);
  }
}

function fail(message) {
  process.stderr.write(`${message}\n`);
  process.exit(1);
}

/** Runs the binary as `program` (its argv[0]: ktctl tells "kubectl ktctl" usage apart by it). */
exports.launch = function launch(program) {
  const binary = binaryPath();
  const child = spawn(binary, process.argv.slice(2), { stdio: "inherit", argv0: program });
  // A terminal's Ctrl-C already reaches the child (same process group): the launcher only has to
  // stay alive until ktctl has cleaned up. Signals sent to the launcher alone are passed on.
  process.on("SIGINT", () => {});
  for (const signal of ["SIGTERM", "SIGHUP"]) process.on(signal, () => child.kill(signal));
  child.on("error", (error) => fail(`ktctl: cannot start ${binary}: ${error.message}`));
  child.on("exit", (code, signal) => {
    if (signal) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    } else process.exit(code ?? 1);
  });
};
