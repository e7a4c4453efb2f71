import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadKubeconfig, mergeKubeconfigs } from "../../core/kube/kubeconfig.ts";
import { credentialSource } from "../../core/kube/credentials.ts";
import { createTransport } from "../../core/kube/transport.ts";
import { ExitCode, isKtctlError } from "../../core/errors.ts";

let dir: string;

const write = (name: string, text: string) => {
  const file = path.join(dir, name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  return file;
};

type Users = { name: string; user: Record<string, unknown> }[];
// JSON is YAML: build kubeconfigs as objects so the test data cannot be malformed by accident.
const kubeconfigYaml = (o: { current?: string; clusters?: [string, string][]; contexts?: [string, string, string?, string?][]; users?: Users }) =>
  JSON.stringify({
    apiVersion: "v1",
    kind: "Config",
    ...(o.current ? { "current-context": o.current } : {}),
    clusters: (o.clusters ?? []).map(([name, server]) => ({ name, cluster: { server } })),
    contexts: (o.contexts ?? []).map(([name, cluster, user, namespace]) => ({ name, context: { cluster, user, namespace } })),
    users: o.users ?? [],
  });

function expectKubeconfigError(fn: () => unknown, pattern: RegExp) {
  try {
    fn();
  } catch (e) {
    expect(isKtctlError(e)).toBe(true);
    expect((e as any).exitCode).toBe(ExitCode.kubeconfig);
    expect((e as Error).message).toMatch(pattern);
    expect((e as Error).message).not.toContain("\n");
    return;
  }
  throw new Error("expected a kubeconfig error");
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "ktctl-kubeconfig-"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("KUBECONFIG merge (kubectl rules)", () => {
  test("first file wins per name; current-context comes from the first file that sets one", () => {
    const a = write(
      "merge/a.yaml",
      kubeconfigYaml({ clusters: [["shared", "https://a.example:6443"]], contexts: [["ctx-a", "shared", "u", "team-a"]], users: [{ name: "u", user: { token: "from-a" } }] }),
    );
    const b = write(
      "merge/b.yaml",
      kubeconfigYaml({
        current: "ctx-b",
        clusters: [["shared", "https://b.example:6443"], ["only-b", "https://only-b.example"]],
        contexts: [["ctx-a", "only-b", "u"], ["ctx-b", "shared", "u", "team-b"]],
        users: [{ name: "u", user: { token: "from-b" } }],
      }),
    );
    const c = write("merge/c.yaml", kubeconfigYaml({ current: "ctx-a" }));
    const env = { KUBECONFIG: [a, b, c].join(path.delimiter), HOME: dir };

    const r = loadKubeconfig({}, env);
    // a sets no current-context, b does, c's is ignored.
    expect(r.context).toBe("ctx-b");
    // ctx-b points at "shared", which a defined first.
    expect(r.server).toBe("https://a.example:6443");
    expect(r.namespace).toBe("team-b");
    expect(r.kc.getCurrentUser()?.token).toBe("from-a");
    expect(r.files).toEqual([a, b, c]);

    // ctx-a is a's definition (cluster "shared"), not b's (cluster "only-b").
    const ra = loadKubeconfig({ context: "ctx-a" }, env);
    expect(ra.server).toBe("https://a.example:6443");
    expect(ra.namespace).toBe("team-a");
  });

  test("files listed in KUBECONFIG but missing are skipped; duplicates read once", () => {
    const a = write("skip/a.yaml", kubeconfigYaml({ current: "x", clusters: [["c", "https://x.example"]], contexts: [["x", "c"]] }));
    const env = { KUBECONFIG: [path.join(dir, "skip/missing.yaml"), a, a, ""].join(path.delimiter), HOME: dir };
    const r = loadKubeconfig({}, env);
    expect(r.context).toBe("x");
    expect(r.files).toEqual([a]);
  });

  test("mergeKubeconfigs keeps the first entry of every name", () => {
    const merged = mergeKubeconfigs([
      { clusters: [{ name: "a", v: 1 }], users: [], contexts: [] },
      { clusters: [{ name: "a", v: 2 }, { name: "b", v: 3 }], users: [], contexts: [], currentContext: "b" },
    ]);
    expect(merged.clusters).toEqual([{ name: "a", v: 1 }, { name: "b", v: 3 }]);
    expect(merged.currentContext).toBe("b");
  });
});

describe("file selection", () => {
  test("--kubeconfig wins over KUBECONFIG, which wins over ~/.kube/config", () => {
    const flag = write("sel/flag.yaml", kubeconfigYaml({ current: "f", clusters: [["c", "https://flag.example"]], contexts: [["f", "c"]] }));
    const envFile = write("sel/env.yaml", kubeconfigYaml({ current: "e", clusters: [["c", "https://env.example"]], contexts: [["e", "c"]] }));
    const home = path.join(dir, "sel/home");
    write("sel/home/.kube/config", kubeconfigYaml({ current: "h", clusters: [["c", "https://home.example"]], contexts: [["h", "c"]] }));

    expect(loadKubeconfig({ kubeconfig: flag }, { KUBECONFIG: envFile, HOME: home }).server).toBe("https://flag.example");
    expect(loadKubeconfig({}, { KUBECONFIG: envFile, HOME: home }).server).toBe("https://env.example");
    expect(loadKubeconfig({}, { HOME: home }).server).toBe("https://home.example");
  });

  test("namespace: flag, else the context's, else default", () => {
    const f = write(
      "ns/config.yaml",
      kubeconfigYaml({ current: "with", clusters: [["c", "https://ns.example"]], contexts: [["with", "c", undefined, "team"], ["without", "c"]] }),
    );
    expect(loadKubeconfig({ kubeconfig: f }, {}).namespace).toBe("team");
    expect(loadKubeconfig({ kubeconfig: f, namespace: "mine" }, {}).namespace).toBe("mine");
    expect(loadKubeconfig({ kubeconfig: f, context: "without" }, {}).namespace).toBe("default");
  });
});

describe("paths and credentials", () => {
  test("relative certificate, key, CA and token-file resolve against the kubeconfig's directory", async () => {
    write("rel/pki/ca.crt", "CA-PEM");
    write("rel/pki/client.crt", "CERT-PEM");
    write("rel/pki/client.key", "KEY-PEM");
    write("rel/pki/token", "file-token");
    const f = write(
      "rel/config.yaml",
      `
current-context: r
clusters:
- name: c
  cluster: {server: "https://rel.example", certificate-authority: pki/ca.crt}
contexts:
- name: r
  context: {cluster: c, user: cert}
- name: t
  context: {cluster: c, user: tok}
users:
- name: cert
  user: {client-certificate: pki/client.crt, client-key: ./pki/client.key}
- name: tok
  user: {token-file: pki/token}
`,
    );
    const cwd = process.cwd();
    process.chdir(os.tmpdir()); // prove resolution does not depend on the working directory
    try {
      const r = loadKubeconfig({ kubeconfig: f }, {});
      const opts: any = {};
      await r.kc.applyToHTTPSOptions(opts);
      expect(opts.ca.toString()).toBe("CA-PEM");
      expect(opts.cert.toString()).toBe("CERT-PEM");
      expect(opts.key.toString()).toBe("KEY-PEM");
      const ours = await r.credentials();
      expect([ours.tls.ca, ours.tls.cert, ours.tls.key].map(String)).toEqual(["CA-PEM", "CERT-PEM", "KEY-PEM"]);
      expect(ours.tls.rejectUnauthorized).toBe(true);

      const t = loadKubeconfig({ kubeconfig: f, context: "t" }, {});
      const topts: any = {};
      await t.kc.applyToHTTPSOptions(topts);
      expect(topts.headers.Authorization).toBe("Bearer file-token");
      expect((await t.credentials()).headers.Authorization).toBe("Bearer file-token");
    } finally {
      process.chdir(cwd);
    }
  });

  test("inline data, insecure-skip-tls-verify, and a context without a user still get the cluster's TLS settings", async () => {
    const f = write(
      "inline/config.yaml",
      `
current-context: anon
clusters:
- name: c
  cluster: {server: "https://inline.example", certificate-authority-data: ${Buffer.from("INLINE-CA").toString("base64")}}
- name: insecure
  cluster: {server: "https://insecure.example", insecure-skip-tls-verify: true}
contexts:
- name: anon
  context: {cluster: c}
- name: skip
  context: {cluster: insecure, user: u}
users:
- name: u
  user:
    client-certificate-data: ${Buffer.from("INLINE-CERT").toString("base64")}
    client-key-data: ${Buffer.from("INLINE-KEY").toString("base64")}
`,
    );
    const anon: any = {};
    await loadKubeconfig({ kubeconfig: f }, {}).kc.applyToHTTPSOptions(anon);
    expect(anon.ca.toString()).toBe("INLINE-CA");
    const ours = await loadKubeconfig({ kubeconfig: f }, {}).credentials();
    expect({ ca: String(ours.tls.ca), headers: ours.headers }).toEqual({ ca: "INLINE-CA", headers: {} });

    const skip: any = {};
    await loadKubeconfig({ kubeconfig: f, context: "skip" }, {}).kc.applyToHTTPSOptions(skip);
    expect(skip.rejectUnauthorized).toBe(false);
    expect(skip.cert.toString()).toBe("INLINE-CERT");
    expect(skip.key.toString()).toBe("INLINE-KEY");
    const oursSkip = await loadKubeconfig({ kubeconfig: f, context: "skip" }, {}).credentials();
    expect({ reject: oursSkip.tls.rejectUnauthorized, cert: String(oursSkip.tls.cert), key: String(oursSkip.tls.key) }).toEqual({
      reject: false,
      cert: "INLINE-CERT",
      key: "INLINE-KEY",
    });
  });

  test("exec plugins: a relative command resolves against the kubeconfig dir, and the token reaches the headers", async () => {
    const plugin = write(
      "exec/bin/cred.sh",
      `#!/bin/sh\necho '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"exec-'"$EXTRA"'"}}'\n`,
    );
    fs.chmodSync(plugin, 0o755);
    const f = write(
      "exec/config.yaml",
      `
current-context: e
clusters: [{name: c, cluster: {server: "https://exec.example"}}]
contexts: [{name: e, context: {cluster: c, user: x}}]
users:
- name: x
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: ./bin/cred.sh
      env: [{name: EXTRA, value: ok}]
`,
    );
    const r = loadKubeconfig({ kubeconfig: f }, {});
    const exec = r.kc.getCurrentUser()!.exec;
    expect(exec.command).toBe(plugin);
    expect(exec.env.map((e: any) => e.name)).toContain("KUBERNETES_EXEC_INFO");
    const opts: any = {};
    await r.kc.applyToHTTPSOptions(opts);
    expect(opts.headers.Authorization).toBe("Bearer exec-ok");
    expect((await r.credentials()).headers.Authorization).toBe("Bearer exec-ok");
  });
});

describe("credentials without client-node (credentials.ts)", () => {
  const noLegacy = () => {
    throw new Error("client-node was asked");
  };

  /** An exec plugin that counts its runs in a file and answers with `status`. */
  const countingPlugin = (name: string, status: Record<string, unknown>) => {
    const runs = path.join(dir, `${name}.runs`);
    const plugin = write(`exec-${name}.sh`, `#!/bin/sh\necho run >> ${runs}\necho '${JSON.stringify({ kind: "ExecCredential", status })}'\n`);
    fs.chmodSync(plugin, 0o755);
    return { plugin, runs: () => (fs.existsSync(runs) ? fs.readFileSync(runs, "utf8").split("\n").filter(Boolean).length : 0) };
  };

  test("an exec credential is reused until it expires; requests at once share one run", async () => {
    let clock = Date.parse("2030-01-01T00:00:00Z");
    const { plugin, runs } = countingPlugin("expiring", {
      token: "t1",
      clientCertificateData: "EXEC-CERT",
      clientKeyData: "EXEC-KEY",
      expirationTimestamp: "2030-01-01T00:10:00Z",
    });
    const credentials = credentialSource({ cluster: {}, user: { exec: { command: plugin } }, legacy: noLegacy, now: () => clock });
    const [first] = await Promise.all([credentials(), credentials(), credentials()]);
    expect(first).toEqual({ headers: { Authorization: "Bearer t1" }, tls: { rejectUnauthorized: true, cert: "EXEC-CERT", key: "EXEC-KEY" } });
    expect(runs()).toBe(1);
    clock += 9 * 60_000;
    await credentials();
    expect(runs()).toBe(1);
    clock += 2 * 60_000;
    await credentials();
    expect(runs()).toBe(2);
  });

  test("a token in the kubeconfig wins over the plugin's; basic auth over both; impersonation is passed on", async () => {
    const { plugin } = countingPlugin("token-wins", { token: "from-plugin" });
    const withToken = credentialSource({ cluster: {}, user: { exec: { command: plugin }, token: "from-file", as: "alice" }, legacy: noLegacy });
    expect((await withToken()).headers).toEqual({ Authorization: "Bearer from-file", "Impersonate-User": "alice" });
    const basic = credentialSource({ cluster: {}, user: { token: "t", username: "bob", password: "pw" }, legacy: noLegacy });
    expect((await basic()).headers.Authorization).toBe(`Basic ${Buffer.from("bob:pw").toString("base64")}`);
  });

  test("a token-file is read again once a minute has passed (projected tokens rotate), its newline trimmed", async () => {
    let clock = 0;
    const file = write("rotating-token", "one\n"); // the newline of `echo one > file` is no part of the token
    const credentials = credentialSource({ cluster: {}, user: { "token-file": file }, legacy: noLegacy, now: () => clock });
    expect((await credentials()).headers.Authorization).toBe("Bearer one");
    fs.writeFileSync(file, "two\n");
    clock += 30_000;
    expect((await credentials()).headers.Authorization).toBe("Bearer one");
    clock += 31_000;
    expect((await credentials()).headers.Authorization).toBe("Bearer two");
  });

  test("certificate, key and CA files are read once a minute; unchanged bytes come back as the same Buffer", async () => {
    let clock = 0;
    const cert = write("rotating.crt", "CERT-1");
    const ca = write("rotating-ca.crt", "CA-1");
    const credentials = credentialSource({
      cluster: { "certificate-authority": ca },
      user: { "client-certificate": cert, "client-key-data": Buffer.from("KEY").toString("base64") },
      legacy: noLegacy,
      now: () => clock,
    });
    const first = (await credentials()).tls;
    expect([String(first.cert), String(first.ca), String(first.key)]).toEqual(["CERT-1", "CA-1", "KEY"]);
    fs.writeFileSync(cert, "CERT-2");
    clock += 30_000;
    const within = (await credentials()).tls;
    expect(within.cert).toBe(first.cert); // not read again within the minute
    expect(within.key).toBe(first.key); // inline data decoded once
    clock += 31_000;
    const after = (await credentials()).tls;
    expect(String(after.cert)).toBe("CERT-2"); // renewed in place: picked up
    expect(after.ca).toBe(first.ca); // read again, same bytes: the same Buffer, the same TLS identity
  });

  test("an auth-provider is left to client-node, and only then is it asked", async () => {
    let asked = 0;
    const legacy = () => {
      asked++;
      return { applyToHTTPSOptions: async (opts: any) => Object.assign(opts, { headers: { Authorization: "Bearer legacy" }, rejectUnauthorized: false }) } as any;
    };
    const credentials = credentialSource({ cluster: {}, user: { "auth-provider": { name: "oidc", config: {} } }, legacy });
    expect(asked).toBe(0);
    expect(await credentials()).toEqual({ headers: { Authorization: "Bearer legacy" }, tls: { rejectUnauthorized: false } });
    expect(asked).toBe(1);
  });

  test("failures are one line with the kubeconfig exit code: a missing plugin, a failing one, an unreadable file", async () => {
    const failing = write("exec-failing.sh", "#!/bin/sh\necho 'token expired, run: login' >&2\nexit 1\n");
    fs.chmodSync(failing, 0o755);
    const cases: [Record<string, unknown>, string][] = [
      [{ exec: { command: path.join(dir, "no-such-plugin") } }, `credential plugin "${path.join(dir, "no-such-plugin")}" of user "u" failed: command not found`],
      [{ exec: { command: failing } }, `credential plugin "${failing}" of user "u" failed: token expired, run: login`],
      [{ "client-key": path.join(dir, "no-such-key") }, `cannot read ${path.join(dir, "no-such-key")} named in kubeconfig: ENOENT`],
    ];
    for (const [user, message] of cases) {
      const credentials = credentialSource({ cluster: {}, user, legacy: noLegacy });
      const transport = createTransport({ server: "https://unused.example", credentials, userName: "u" });
      const error: any = await transport.credentials().catch((e) => e);
      expect(isKtctlError(error)).toBe(true);
      expect({ code: error.exitCode, message: error.message }).toEqual({ code: ExitCode.kubeconfig, message });
    }
  });
});

describe("kubeconfig errors are one line with the kubeconfig exit code", () => {
  test("malformed YAML", () => {
    const f = write("bad/yaml.yaml", "clusters: [\n  - name: x\n  bad: : :");
    expectKubeconfigError(() => loadKubeconfig({ kubeconfig: f }, {}), /is not valid YAML/);
  });
  test("a kubeconfig that is not a mapping", () => {
    const f = write("bad/list.yaml", "- a\n- b\n");
    expectKubeconfigError(() => loadKubeconfig({ kubeconfig: f }, {}), /expected a mapping/);
  });
  test("--kubeconfig naming a missing file", () => {
    expectKubeconfigError(() => loadKubeconfig({ kubeconfig: path.join(dir, "nope.yaml") }, {}), /cannot read kubeconfig .*nope\.yaml/);
  });
  test("unreadable kubeconfig", () => {
    // A directory cannot be read as a file, whoever runs the test (root reads any mode bits).
    fs.mkdirSync(path.join(dir, "bad/dir.yaml"), { recursive: true });
    expectKubeconfigError(() => loadKubeconfig({ kubeconfig: path.join(dir, "bad/dir.yaml") }, {}), /cannot read kubeconfig .*EISDIR/);
  });
  test("unknown context", () => {
    const f = write("bad/ctx.yaml", kubeconfigYaml({ current: "a", clusters: [["c", "https://c.example"]], contexts: [["a", "c"]] }));
    expectKubeconfigError(() => loadKubeconfig({ kubeconfig: f, context: "zzz" }, {}), /context "zzz" not found/);
  });
  test("no current context", () => {
    const f = write("bad/nocurrent.yaml", kubeconfigYaml({ clusters: [["c", "https://c.example"]], contexts: [["a", "c"]] }));
    expectKubeconfigError(() => loadKubeconfig({ kubeconfig: f }, {}), /no current context/);
  });
  test("context naming a missing cluster or user", () => {
    const f = write("bad/refs.yaml", kubeconfigYaml({ current: "a", clusters: [["c", "https://c.example"]], contexts: [["a", "gone"], ["b", "c", "ghost"]] }));
    expectKubeconfigError(() => loadKubeconfig({ kubeconfig: f }, {}), /refers to cluster "gone"/);
    expectKubeconfigError(() => loadKubeconfig({ kubeconfig: f, context: "b" }, {}), /refers to user "ghost"/);
  });
  test("token-file that cannot be read", () => {
    const f = write(
      "bad/token.yaml",
      `current-context: a\nclusters: [{name: c, cluster: {server: "https://c.example"}}]\ncontexts: [{name: a, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {token-file: missing-token}}]\n`,
    );
    expectKubeconfigError(() => loadKubeconfig({ kubeconfig: f }, {}), /cannot read token-file .*missing-token/);
  });
  test("nothing to load", () => {
    expectKubeconfigError(() => loadKubeconfig({}, { HOME: path.join(dir, "empty-home") }), /no kubeconfig found/);
    expectKubeconfigError(() => loadKubeconfig({}, { KUBECONFIG: path.join(dir, "x.yaml"), HOME: dir }), /none of the files in KUBECONFIG/);
  });
});
