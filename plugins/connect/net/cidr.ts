// IPv4 addresses and CIDR ranges as plain numbers: enough arithmetic for deciding what connect
// captures (cluster ranges, minus the API server and --excludeIps, plus --includeIps).

import type { ErrorsApi } from "../../../core/plugin-api.ts";

export interface Cidr {
  /** Network address as an unsigned 32-bit number (host bits zero). */
  base: number;
  prefix: number;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

export function parseIPv4(text: string): number | undefined {
  const m = IPV4.exec(text.trim());
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255) || m.slice(1).some((p) => p.length > 1 && p.startsWith("0"))) return undefined;
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export const isIPv4 = (text: string): boolean => parseIPv4(text) !== undefined;

export function formatIPv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join(".");
}

const maskOf = (prefix: number) => (prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0);

export function cidrOf(address: number, prefix: number): Cidr {
  return { base: (address & maskOf(prefix)) >>> 0, prefix };
}

/** "10.96.0.0/16" or a bare address (taken as /32); host bits are cleared. Undefined when invalid. */
export function tryParseCidr(text: string): Cidr | undefined {
  const [address, prefixText, extra] = text.trim().split("/");
  if (extra !== undefined || address === undefined) return undefined;
  const base = parseIPv4(address);
  if (base === undefined) return undefined;
  if (prefixText === undefined) return { base, prefix: 32 };
  if (!/^\d{1,2}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  if (prefix > 32) return undefined;
  return cidrOf(base, prefix);
}

const invalidCidr = (option: string, text: string) => `invalid ${option} "${text}": expected an IPv4 address or range such as 10.96.0.0/16`;

/** A range written in code (or a test), not typed by a user: invalid text is a plain programming error. */
export function parseCidr(text: string, option = "address range"): Cidr {
  const cidr = tryParseCidr(text);
  if (!cidr) throw new Error(invalidCidr(option, text));
  return cidr;
}

/** A flag value such as "10.1.0.0/16,192.168.3.4"; empty text gives an empty list; a bad part is a usage error. */
export function parseCidrList(text: string | undefined, option: string, errors: ErrorsApi): Cidr[] {
  if (!text?.trim()) return [];
  return text
    .split(",")
    .map((part) => part.trim())
    .filter(Boolean)
    .map((part) => {
      const cidr = tryParseCidr(part);
      if (!cidr) throw new errors.KtctlError(invalidCidr(option, part), errors.ExitCode.usage);
      return cidr;
    });
}

export const formatCidr = (cidr: Cidr): string => `${formatIPv4(cidr.base)}/${cidr.prefix}`;

const lastOf = (cidr: Cidr) => (cidr.base + 2 ** (32 - cidr.prefix) - 1) >>> 0;

export const cidrContains = (cidr: Cidr, address: number): boolean => ((address & maskOf(cidr.prefix)) >>> 0) === cidr.base;

export const cidrCovers = (outer: Cidr, inner: Cidr): boolean => outer.prefix <= inner.prefix && cidrContains(outer, inner.base);

export const cidrsOverlap = (a: Cidr, b: Cidr): boolean => cidrCovers(a, b) || cidrCovers(b, a);

/** Sorted, without duplicates and without ranges another one in the list already covers. */
export function normalizeCidrs(list: Cidr[]): Cidr[] {
  const sorted = [...list].sort((a, b) => a.base - b.base || a.prefix - b.prefix);
  const result: Cidr[] = [];
  for (const cidr of sorted) {
    if (result.some((kept) => cidrCovers(kept, cidr))) continue;
    result.push(cidr);
  }
  return result;
}

/**
 * The ranges of `from` that are not in `remove`, as CIDRs: for systems that capture by route, where
 * an exception cannot be a rule placed ahead of the capture (macOS routes, Windows).
 */
export function subtractCidrs(from: Cidr[], remove: Cidr[]): Cidr[] {
  let pending = normalizeCidrs(from);
  for (const hole of normalizeCidrs(remove)) {
    const next: Cidr[] = [];
    for (const cidr of pending) {
      if (!cidrsOverlap(cidr, hole)) next.push(cidr);
      else if (cidrCovers(hole, cidr)) continue;
      else next.push(...splitAround(cidr, hole));
    }
    pending = next;
  }
  return normalizeCidrs(pending);
}

/** `cidr` minus the smaller `hole` inside it: one sibling range per level down to the hole. */
function splitAround(cidr: Cidr, hole: Cidr): Cidr[] {
  const pieces: Cidr[] = [];
  let current = cidr;
  while (current.prefix < hole.prefix) {
    const prefix = current.prefix + 1;
    const low = { base: current.base, prefix };
    const high = { base: (current.base + 2 ** (32 - prefix)) >>> 0, prefix };
    if (cidrContains(low, hole.base)) {
      pieces.push(high);
      current = low;
    } else {
      pieces.push(low);
      current = high;
    }
  }
  return pieces;
}

/** First and last address of a range, e.g. for Windows' route and portproxy syntax. */
export function cidrBounds(cidr: Cidr): { first: string; last: string; mask: string } {
  return { first: formatIPv4(cidr.base), last: formatIPv4(lastOf(cidr)), mask: formatIPv4(maskOf(cidr.prefix)) };
}
