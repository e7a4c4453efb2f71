// The key pair of a shared shadow. A shadow lets in exactly one public key, so every process that
// shares it must hold the same private key: it lives in <home>/shared/<key>.key (0600, in a 0700
// directory), made by whichever process needs it first. Creation is atomic (a complete file is
// linked into place, or another process's file wins), so two connects starting together agree.

import { chmod, link, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { utils } from "ssh2";
import { ExitCode, KtctlError } from "../errors.ts";
import { dnsSafe } from "../session/labels.ts";
import { createSessionKeyPair, type SessionKeyPair } from "../protocol/keys.ts";

export const sharedKeysDir = (home: string): string => join(home, "shared");

/** The file of a share key: a safe file name whatever the key holds. */
export function sharedKeyPath(home: string, key: string): string {
  const safe = dnsSafe(key);
  if (!safe) throw new KtctlError(`invalid share key ${JSON.stringify(key)}`, ExitCode.usage);
  return join(sharedKeysDir(home), `${safe}.key`);
}

/** The public half of an OpenSSH private key, as an authorized_keys line. */
export function publicKeyOf(privateKey: string, comment: string): string {
  const parsed = utils.parseKey(privateKey);
  if (parsed instanceof Error || Array.isArray(parsed) || !parsed.isPrivateKey() || parsed.type !== "ssh-ed25519") {
    throw new Error("not an unencrypted ed25519 private key");
  }
  return `${parsed.type} ${parsed.getPublicSSH().toString("base64")} ${comment}`;
}

const isErrno = (error: unknown, code: string) => (error as NodeJS.ErrnoException)?.code === code;

/** The pair stored for `key` under `home`, created (atomically) when there is none yet. */
export async function loadSharedKeyPair(home: string, key: string): Promise<SessionKeyPair> {
  const path = sharedKeyPath(home, key);
  const comment = `ktctl-shared-${dnsSafe(key)}`;
  await mkdir(sharedKeysDir(home), { recursive: true, mode: 0o700 });
  try {
    return await readPair(path, comment);
  } catch (error) {
    if (!isErrno(error, "ENOENT")) throw error;
  }
  const pair = createSessionKeyPair(comment);
  const tmp = `${path}.${process.pid}-${randomBytes(4).toString("hex")}`;
  await writeFile(tmp, pair.privateKey, { mode: 0o600, flag: "wx" });
  try {
    await link(tmp, path);
    return pair;
  } catch (error) {
    if (!isErrno(error, "EEXIST")) throw error;
    // Another process made it first: use theirs, so both authenticate to the same shadow.
    return await readPair(path, comment);
  } finally {
    await rm(tmp, { force: true });
  }
}

async function readPair(path: string, comment: string): Promise<SessionKeyPair> {
  const mode = (await stat(path)).mode & 0o777;
  // A private key others can read is a key others can use: narrow it, as ssh insists on.
  if (mode & 0o077) await chmod(path, 0o600);
  const privateKey = await readFile(path, "utf8");
  try {
    return { privateKey, publicKey: publicKeyOf(privateKey, comment) };
  } catch (error) {
    throw new KtctlError(`${path} holds no usable key (${(error as Error).message})`, ExitCode.failure, `remove it; ktctl makes a new one`);
  }
}
