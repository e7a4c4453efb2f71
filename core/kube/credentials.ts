// The kubeconfig's credentials for the chosen context, computed here rather than by client-node: the
// cluster's TLS settings and the user's certificate, key, token, token-file, basic auth,
// impersonation and exec plugins, with client-node's rules (the same precedence, an exec
// credential cached until it expires). Loading client-node costs a process about 30 ms and a few
// MiB it keeps for its whole life, and nothing on the way of a mode needs it; a legacy
// auth-provider (gcp, azure, oidc) is left to it, loaded for that user only.

import { spawn } from "node:child_process";
import fs from "node:fs";
import type { KubeConfig } from "@kubernetes/client-node";

export interface TlsMaterial {
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  rejectUnauthorized: boolean;
  serverName?: string;
}

export interface Credentials {
  headers: Record<string, string>;
  tls: TlsMaterial;
}

/** Why credentials could not be had, with what the message needs to name. */
export class CredentialFailure extends Error {
  constructor(
    message: string,
    /** The user's credential plugin (exec command or auth-provider name), when it was the one failing. */
    readonly plugin?: string,
    readonly code?: string,
    readonly path?: string,
  ) {
    super(message);
  }
}

type Entry = Record<string, unknown>;

/**
 * client-go re-reads a token-file about once a minute (projected tokens rotate); so do we, and the
 * certificate, key and CA files too (renewed in place, e.g. by kubeadm), instead of on every request.
 */
const FILE_REREAD_MS = 60_000;

export interface CredentialOptions {
  /** The cluster entry's `cluster` mapping (paths already absolute). */
  cluster: Entry;
  /** The user entry's `user` mapping (paths absolute, exec env prepared); undefined without a user. */
  user?: Entry;
  userName?: string;
  /** client-node's KubeConfig for the same context, loaded only for an auth-provider. */
  legacy: () => KubeConfig;
  now?: () => number;
}

/** A function that gives the headers and TLS for one request, running an exec plugin when its credential expired. */
export function credentialSource(options: CredentialOptions): () => Promise<Credentials> {
  const { cluster, user } = options;
  const now = options.now ?? Date.now;
  if (user?.["auth-provider"] && !execOfAuthProvider(user)) return credentialsFromClientNode(options.legacy);

  const files = new FileReader(now);
  const decoded = new Map<string, Buffer>();
  /** A path's bytes (re-read once a minute) or inline base64 data (decoded once). */
  const fileOrData = (file: unknown, data: unknown): Buffer | undefined => {
    if (typeof file === "string" && file) return files.bytes(file);
    if (typeof data !== "string" || !data) return undefined;
    let bytes = decoded.get(data);
    if (!bytes) decoded.set(data, (bytes = Buffer.from(data, "base64")));
    return bytes;
  };
  let execCredential: { status: ExecStatus; expires?: number } | undefined;
  let execRunning: Promise<ExecStatus> | undefined;

  const exec = user ? ((user.exec as Entry | undefined) ?? execOfAuthProvider(user)) : undefined;
  const execStatus = async (): Promise<ExecStatus> => {
    if (execCredential && (execCredential.expires === undefined || execCredential.expires > now())) return execCredential.status;
    // Requests at the start come together: they share one run of the plugin.
    execRunning ??= runExec(exec!).then(
      (status) => {
        execRunning = undefined;
        const expires = status.expirationTimestamp ? Date.parse(status.expirationTimestamp) : undefined;
        execCredential = { status, expires: Number.isNaN(expires) ? undefined : expires };
        return status;
      },
      (error) => {
        execRunning = undefined;
        throw error;
      },
    );
    return execRunning;
  };

  return async () => {
    const tls: TlsMaterial = { rejectUnauthorized: cluster["insecure-skip-tls-verify"] !== true };
    const headers: Record<string, string> = {};
    if (typeof cluster["tls-server-name"] === "string" && cluster["tls-server-name"]) tls.serverName = cluster["tls-server-name"];
    // The cluster's TLS settings apply with or without a user (client-node needed a user for them).
    const ca = fileOrData(cluster["certificate-authority"], cluster["certificate-authority-data"]);
    if (ca) tls.ca = ca;
    if (!user) return { headers, tls };
    const cert = fileOrData(user["client-certificate"], user["client-certificate-data"]);
    if (cert) tls.cert = cert;
    const key = fileOrData(user["client-key"], user["client-key-data"]);
    if (key) tls.key = key;
    if (typeof user.as === "string" && user.as) headers["Impersonate-User"] = user.as;
    if (exec) {
      const status = await execStatus();
      if (status.clientCertificateData) tls.cert = status.clientCertificateData;
      if (status.clientKeyData) tls.key = status.clientKeyData;
      if (status.token) headers.Authorization = `Bearer ${status.token}`;
    }
    // A token in the kubeconfig wins over the plugin's, as in client-node.
    if (typeof user.token === "string" && user.token) headers.Authorization = `Bearer ${user.token}`;
    else if (typeof user["token-file"] === "string" && user["token-file"]) {
      // Without the newline an editor or `echo` leaves (client-go trims it too).
      headers.Authorization = `Bearer ${files.bytes(user["token-file"]).toString().trim()}`;
    }
    if (typeof user.username === "string" && user.username) {
      headers.Authorization = `Basic ${Buffer.from(`${user.username}:${String(user.password ?? "")}`).toString("base64")}`;
    }
    return { headers, tls };
  };
}

/** client-node's own answer: for the auth-providers it implements (gcp, azure, oidc), and in a pod. */
export function credentialsFromClientNode(legacy: () => KubeConfig): () => Promise<Credentials> {
  return async () => {
    const kc = legacy();
    const opts: Record<string, any> = {};
    try {
      await kc.applyToHTTPSOptions(opts);
    } catch (error) {
      const err = error as NodeJS.ErrnoException;
      throw new CredentialFailure(err?.message || String(error), kc.getCurrentUser()?.authProvider?.name, err?.code, err?.path);
    }
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries((opts.headers ?? {}) as Record<string, unknown>)) if (v !== undefined) headers[k] = String(v);
    if (opts.auth) headers.Authorization = `Basic ${Buffer.from(String(opts.auth)).toString("base64")}`;
    const tls: TlsMaterial = { rejectUnauthorized: opts.rejectUnauthorized !== false };
    if (opts.ca) tls.ca = opts.ca;
    if (opts.cert) tls.cert = opts.cert;
    if (opts.key) tls.key = opts.key;
    if (opts.servername) tls.serverName = opts.servername;
    return { headers, tls };
  };
}

/** An auth-provider that is an exec plugin in disguise (client-node runs those as exec too). */
function execOfAuthProvider(user: Entry): Entry | undefined {
  const provider = user["auth-provider"] as Entry | undefined;
  const config = provider?.config as Entry | undefined;
  return (config?.exec as Entry | undefined) ?? undefined;
}

/**
 * Files named by the kubeconfig, read at most once a minute each. A file read again with the same
 * bytes gives back the same Buffer, so the transport sees the same TLS identity without hashing it.
 */
class FileReader {
  private readonly read = new Map<string, { bytes: Buffer; readAt: number }>();

  constructor(private readonly now: () => number) {}

  bytes(file: string): Buffer {
    const known = this.read.get(file);
    if (known && this.now() - known.readAt <= FILE_REREAD_MS) return known.bytes;
    const fresh = readBytes(file);
    const bytes = known?.bytes.equals(fresh) ? known.bytes : fresh;
    this.read.set(file, { bytes, readAt: this.now() });
    return bytes;
  }
}

function readBytes(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (error) {
    const err = error as NodeJS.ErrnoException;
    throw new CredentialFailure(err.message, undefined, err.code, file);
  }
}

interface ExecStatus {
  token?: string;
  clientCertificateData?: string;
  clientKeyData?: string;
  expirationTimestamp?: string;
}

/** Runs an exec credential plugin once: stdout is an ExecCredential, a failure says stderr's first line. */
function runExec(exec: Entry): Promise<ExecStatus> {
  const command = String(exec.command ?? "");
  const args = Array.isArray(exec.args) ? exec.args.map(String) : [];
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const entry of Array.isArray(exec.env) ? (exec.env as Entry[]) : []) if (typeof entry?.name === "string") env[entry.name] = String(entry.value ?? "");
  return new Promise((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    let failed: NodeJS.ErrnoException | undefined;
    const child = spawn(command, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.setEncoding("utf8").on("data", (data: string) => (stdout += data));
    child.stderr.setEncoding("utf8").on("data", (data: string) => (stderr += data));
    child.on("error", (error) => (failed = error));
    child.on("close", (code) => {
      if (failed) return reject(new CredentialFailure(failed.message, command, failed.code));
      if (code !== 0) return reject(new CredentialFailure(stderr || `exit code ${code}`, command));
      try {
        const status = (JSON.parse(stdout) as { status?: ExecStatus })?.status;
        if (!status || typeof status !== "object") throw new Error("its answer has no status");
        resolve(status);
      } catch (error) {
        reject(new CredentialFailure(`its answer is not an ExecCredential: ${(error as Error).message}`, command));
      }
    });
  });
}
