import { describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { ArgsDef } from "citty";
import { complete, clusterFlags, type ClusterLookups, type CommandNode } from "../../core/cli/completion/candidates.ts";
import { completionScript, SHELLS } from "../../core/cli/completion/scripts.ts";

const globalArgs: ArgsDef = {
  namespace: { type: "string", alias: "n" },
  context: { type: "string" },
  debug: { type: "boolean", alias: "d" },
};
const leaf = (name: string, args: ArgsDef, hidden = false): CommandNode => ({ name, hidden, args: async () => ({ ...globalArgs, ...args }) });
const root: CommandNode = {
  name: "ktctl",
  hidden: false,
  args: async () => globalArgs,
  subCommands: async () => [
    leaf("exchange", { target: { type: "positional" }, mode: { type: "enum", options: ["selector", "scale"] }, expose: { type: "string" } }),
    leaf("mesh", { service: { type: "positional" }, versionMark: { type: "string" } }),
    leaf("forward", { target: { type: "positional" }, ports: { type: "positional", valueHint: "[LOCAL:]REMOTE..." } }),
    leaf("completion", { shell: { type: "positional", valueHint: "bash|zsh|fish|powershell" } }),
    leaf("__watchdog", {}, true),
    { name: "config", hidden: false, args: async () => ({}), subCommands: async () => [leaf("get", { key: { type: "positional" } }), leaf("set", {})] },
  ],
};
const cluster: ClusterLookups = {
  namespaces: async () => ["demo", "demo2", "kube-system"],
  contexts: async () => ["ktctl", "prod"],
  services: async () => ["echo", "echo-h2"],
  deployments: async () => ["echo"],
  pods: async () => ["echo-abc", "toolbox"],
};
const at = (...words: string[]) => complete(words, root, cluster);

describe("completion candidates", () => {
  test("command names, hidden ones left out", async () => {
    expect(await at("")).toEqual(["completion", "config", "exchange", "forward", "mesh"]);
    expect(await at("ex")).toEqual(["exchange"]);
  });
  test("a group's sub-commands", async () => {
    expect(await at("config", "")).toEqual(["get", "set"]);
  });
  test("flags of the command, global ones included, in kebab case", async () => {
    expect(await at("mesh", "--v")).toEqual(["--version-mark"]);
    expect(await at("exchange", "--n")).toEqual(["--namespace"]);
  });
  test("values of a flag: enum options, namespaces and contexts from the cluster", async () => {
    expect(await at("exchange", "--mode", "")).toEqual(["scale", "selector"]);
    expect(await at("-n", "de")).toEqual(["demo", "demo2"]);
    expect(await at("exchange", "--context", "")).toEqual(["ktctl", "prod"]);
  });
  test("positionals: services, workload targets by kind, hinted choices", async () => {
    expect(await at("-n", "demo", "mesh", "")).toEqual(["echo", "echo-h2"]);
    expect(await at("exchange", "")).toEqual(["deployment/", "echo", "echo-h2", "pod/", "svc/"]);
    expect(await at("forward", "deployment/")).toEqual(["deployment/echo"]);
    expect(await at("forward", "pod/t")).toEqual(["pod/toolbox"]);
    expect(await at("completion", "")).toEqual(["bash", "fish", "powershell", "zsh"]);
  });
  test("a flag's value is not taken for a positional; after -- nothing is offered", async () => {
    expect(await at("mesh", "--versionMark", "alice", "")).toEqual(["echo", "echo-h2"]);
    expect(await at("mesh", "echo", "")).toEqual([]);
    expect(await at("exchange", "echo", "--", "")).toEqual([]);
  });
  test("a cluster that cannot be asked offers nothing, without an error", async () => {
    const failing: ClusterLookups = { ...cluster, services: async () => Promise.reject(new Error("no kubeconfig")) };
    expect(await complete(["mesh", ""], root, failing)).toEqual([]);
  });
  test("the cluster flags typed so far are used for the lookups", () => {
    expect(clusterFlags(["-n", "demo", "--context=prod", "-c", "/k", "mesh"])).toEqual({ namespace: "demo", context: "prod", kubeconfig: "/k" });
  });
});

describe("completion scripts", () => {
  test("one per shell, each calling __complete", () => {
    for (const shell of SHELLS) expect(completionScript(shell)).toContain("__complete --");
  });
  test("bash: the script completes through the real ktctl", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ktctl-completion-"));
    const bin = join(dir, "ktctl");
    writeFileSync(bin, `#!/bin/sh\nexec "${process.execPath}" "${resolve(import.meta.dir, "../../core/cli/main.ts")}" "$@"\n`);
    chmodSync(bin, 0o755);
    const script = join(dir, "ktctl.bash");
    writeFileSync(script, completionScript("bash"));
    const probe = (line: string) =>
      Bun.spawnSync(["bash", "-c", `source ${script}; COMP_WORDS=(${line}); COMP_CWORD=$((\${#COMP_WORDS[@]}-1)); _ktctl_complete; printf '%s\\n' "\${COMPREPLY[@]}"`], {
        env: { ...process.env, PATH: `${dir}:${process.env.PATH}`, KTCTL_HOME: dir },
      }).stdout.toString().trim().split("\n");
    expect(probe("ktctl exch")).toEqual(["exchange"]);
    expect(probe("ktctl exchange --mode ''")).toEqual(["scale", "selector"]);
    expect(probe("ktctl forward --addr")).toEqual(["--address"]);
  });
});
