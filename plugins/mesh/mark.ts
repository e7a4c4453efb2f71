// The developer's mark: the header (and value) that sends a request to their laptop. Given as
// `--versionMark [KEY:]VALUE` (kt-connect's spelling), or generated when the user names none.

import { randomBytes } from "node:crypto";
import type { RouterApi } from "../../core/plugin-api.ts";

export interface Mark {
  /** As the user spells it (HTTP/1 headers are case-insensitive; h2 and gRPC see it lowercase). */
  header: string;
  value: string;
  generated: boolean;
}

const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

/** `<user>-<4 random>`: readable in logs, unlikely to clash, valid as a header value and a label value. */
export function generateMarkValue(owner: string, random: (n: number) => Uint8Array = randomBytes): string {
  const user = owner
    .split("@")[0]!
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 20)
    .replace(/-+$/, "");
  const bytes = random(4);
  let suffix = "";
  for (const byte of bytes) suffix += ALPHABET[byte % ALPHABET.length];
  return `${user || "dev"}-${suffix}`;
}

/**
 * "VALUE" (header VERSION), "KEY:" (value generated) or "KEY:VALUE". Throws the router's
 * ContractError with the reason when the header or value cannot travel as a mark.
 */
export function parseMark(router: RouterApi, spec: string | undefined, owner: string, random?: (n: number) => Uint8Array): Mark {
  const { ContractError, checkMarkHeader, checkMarkValue } = router;
  const text = spec?.trim() ?? "";
  let header = router.defaultMarkHeader;
  let value = text;
  const colon = text.indexOf(":");
  if (colon >= 0) {
    header = text.slice(0, colon).trim();
    value = text.slice(colon + 1).trim();
    if (!header) throw new ContractError(`--versionMark "${spec}": the header name before ":" is empty`);
  }
  checkMarkHeader(header);
  if (!value) return { header, value: generateMarkValue(owner, random), generated: true };
  checkMarkValue(value);
  return { header, value, generated: false };
}

const shellQuote = (text: string) => (/^[A-Za-z0-9_\-.:/=@]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`);

/** A curl line that reaches the laptop through the mesh, to paste in a pod of the namespace. */
export function curlLine(mark: Mark, service: string, namespace: string, port: number, path = "/"): string {
  const url = `http://${service}.${namespace}${port === 80 ? "" : `:${port}`}${path}`;
  return `curl -H ${shellQuote(`${mark.header}: ${mark.value}`)} ${shellQuote(url)}`;
}
