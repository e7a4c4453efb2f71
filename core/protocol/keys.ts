// Keys of the tunnel. The host makes one ed25519 pair per session; the private half never leaves
// the laptop, the public half goes into the shadow's environment. The shadow makes its own host
// key at start (see client.ts for why the host does not pin it).

import { createHash } from "node:crypto";
import { utils, type ParsedKey } from "ssh2";

export interface SessionKeyPair {
  /** OpenSSH private key (PEM "OPENSSH PRIVATE KEY"), unencrypted: it lives only in this process. */
  privateKey: string;
  /** One authorized_keys line: "ssh-ed25519 AAAA... comment". */
  publicKey: string;
}

export function createSessionKeyPair(comment = "ktctl-session"): SessionKeyPair {
  const pair = generateEd25519(comment);
  return { privateKey: pair.private, publicKey: pair.public };
}

/** A fresh private host key for the shadow's SSH endpoint. */
export function createHostKey(): string {
  return generateEd25519().private;
}

/**
 * ssh2's generator, checked: under Bun about 1 in 250 of its ed25519 private keys is one ssh2
 * itself then refuses to parse ("Malformed OpenSSH private key"), which would fail a session or a
 * shadow at random. A new pair is drawn until one parses.
 */
function generateEd25519(comment?: string): { private: string; public: string } {
  for (let attempt = 1; ; attempt++) {
    const pair = utils.generateKeyPairSync("ed25519", comment === undefined ? undefined : { comment });
    if (!(utils.parseKey(pair.private) instanceof Error)) return pair;
    if (attempt >= 16) throw new Error("could not generate a usable ed25519 key");
  }
}

/** Parses an OpenSSH public key line; only ed25519 keys are accepted. */
export function parseAuthorizedKey(line: string): ParsedKey {
  let parsed: ParsedKey | Error;
  try {
    parsed = utils.parseKey(line.trim());
  } catch (error) {
    parsed = error as Error;
  }
  if (parsed instanceof Error || Array.isArray(parsed)) {
    throw new Error(`not an OpenSSH public key (${parsed instanceof Error ? parsed.message : "several keys"})`);
  }
  if (parsed.isPrivateKey()) throw new Error("expected a public key, got a private key");
  if (parsed.type !== "ssh-ed25519") throw new Error(`expected an ssh-ed25519 key, got ${parsed.type}`);
  return parsed;
}

/** OpenSSH-style fingerprint ("SHA256:..."), for logs. */
export function fingerprint(key: ParsedKey | Buffer): string {
  const blob = Buffer.isBuffer(key) ? key : key.getPublicSSH();
  return "SHA256:" + createHash("sha256").update(blob).digest("base64").replace(/=+$/, "");
}
