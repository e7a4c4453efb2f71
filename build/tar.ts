// A deterministic tar writer (and a reader to check what it wrote). Images must be byte-for-byte
// reproducible, so every header field that a system tar would take from the host (mtime, owner
// names, device numbers) is fixed by the caller or zeroed here.

export type TarEntry =
  | { type: "file"; path: string; data: Uint8Array; mode: number; uid?: number; gid?: number; mtime?: number }
  | { type: "dir"; path: string; mode: number; uid?: number; gid?: number; mtime?: number }
  | { type: "symlink"; path: string; target: string; uid?: number; gid?: number; mtime?: number };

export type TarRecord = {
  type: "file" | "dir" | "symlink" | "other";
  path: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  target: string;
  data: Uint8Array<ArrayBuffer>;
};

const BLOCK = 512;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Tar paths are relative, use "/" and carry a trailing "/" for directories. */
export function normalizeTarPath(path: string, isDir: boolean): string {
  const parts = path.split("/").filter((part) => part !== "" && part !== ".");
  if (parts.length === 0) throw new Error(`tar: empty path "${path}"`);
  if (parts.includes("..")) throw new Error(`tar: path escapes the archive root: "${path}"`);
  const joined = parts.join("/");
  return isDir ? `${joined}/` : joined;
}

/** Writes the entries in the order given; callers sort when they want canonical archives. */
export function writeTar(entries: readonly TarEntry[]): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (const entry of entries) {
    const path = normalizeTarPath(entry.path, entry.type === "dir");
    const target = entry.type === "symlink" ? entry.target : "";
    const data = entry.type === "file" ? entry.data : new Uint8Array(0);
    const mode = entry.type === "symlink" ? 0o777 : entry.mode;
    const typeflag = entry.type === "file" ? "0" : entry.type === "dir" ? "5" : "2";
    const common = { uid: entry.uid ?? 0, gid: entry.gid ?? 0, mtime: entry.mtime ?? 0 };

    const split = splitUstarName(path);
    const needsPax = split === undefined || encoder.encode(target).length > 100;
    if (needsPax) {
      const records: string[] = [];
      if (split === undefined) records.push(paxRecord("path", path));
      if (encoder.encode(target).length > 100) records.push(paxRecord("linkpath", target));
      const body = encoder.encode(records.join(""));
      chunks.push(header({ name: `PaxHeaders/${lastComponent(path)}`.slice(0, 100), prefix: "", mode: 0o644, size: body.length, typeflag: "x", linkname: "", ...common }));
      chunks.push(padded(body));
    }
    const names = split ?? { prefix: "", name: path.slice(0, 100) };
    chunks.push(header({ ...names, mode, size: data.length, typeflag, linkname: truncateUtf8(target, 100), ...common }));
    if (data.length > 0) chunks.push(padded(data));
  }
  chunks.push(new Uint8Array(BLOCK * 2));
  return chunks;
}

export function concatChunks(chunks: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  const total = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

/** Reads ustar and pax ("x") archives such as writeTar and GNU tar produce. */
export function readTar(archive: Uint8Array<ArrayBuffer>): TarRecord[] {
  const records: TarRecord[] = [];
  let offset = 0;
  let pax: Record<string, string> = {};
  while (offset + BLOCK <= archive.length) {
    const block = archive.subarray(offset, offset + BLOCK);
    if (block.every((byte) => byte === 0)) break;
    if (readOctal(block, 148, 8) !== checksum(block)) throw new Error(`tar: bad header checksum at offset ${offset}`);
    const size = readOctal(block, 124, 12);
    const typeflag = String.fromCharCode(block[156] ?? 0);
    const data = archive.subarray(offset + BLOCK, offset + BLOCK + size);
    offset += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
    if (typeflag === "x") {
      pax = parsePax(data);
      continue;
    }
    const prefix = readString(block, 345, 155);
    const name = readString(block, 0, 100);
    records.push({
      type: typeflag === "0" || typeflag === "\0" ? "file" : typeflag === "5" ? "dir" : typeflag === "2" ? "symlink" : "other",
      path: pax.path ?? (prefix ? `${prefix}/${name}` : name),
      mode: readOctal(block, 100, 8),
      uid: readOctal(block, 108, 8),
      gid: readOctal(block, 116, 8),
      mtime: readOctal(block, 136, 12),
      target: pax.linkpath ?? readString(block, 157, 100),
      data,
    });
    pax = {};
  }
  return records;
}

type HeaderFields = {
  name: string;
  prefix: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
};

function header(fields: HeaderFields): Uint8Array {
  const block = new Uint8Array(BLOCK);
  writeString(block, 0, 100, fields.name);
  writeOctal(block, 100, 8, fields.mode & 0o7777);
  writeOctal(block, 108, 8, fields.uid);
  writeOctal(block, 116, 8, fields.gid);
  writeOctal(block, 124, 12, fields.size);
  writeOctal(block, 136, 12, fields.mtime);
  block.fill(0x20, 148, 156); // checksum is computed with its own field as spaces
  writeString(block, 156, 1, fields.typeflag);
  writeString(block, 157, 100, fields.linkname);
  writeString(block, 257, 6, "ustar\0");
  writeString(block, 263, 2, "00");
  writeOctal(block, 329, 8, 0);
  writeOctal(block, 337, 8, 0);
  writeString(block, 345, 155, fields.prefix);
  const sum = checksum(block);
  writeString(block, 148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
  return block;
}

function checksum(block: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (block[i] ?? 0);
  return sum;
}

/** ustar keeps up to 100 bytes of name plus 155 bytes of prefix, split at a "/". */
function splitUstarName(path: string): { name: string; prefix: string } | undefined {
  const bytes = encoder.encode(path);
  if (bytes.length <= 100) return { name: path, prefix: "" };
  if (bytes.length > 256) return undefined;
  const searchFrom = path.endsWith("/") ? path.length - 2 : path.length - 1;
  for (let cut = path.lastIndexOf("/", searchFrom); cut > 0; cut = path.lastIndexOf("/", cut - 1)) {
    const prefix = path.slice(0, cut);
    const name = path.slice(cut + 1);
    if (encoder.encode(prefix).length <= 155 && encoder.encode(name).length <= 100) return { name, prefix };
  }
  return undefined;
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bodyLength = encoder.encode(body).length;
  // The record starts with its own total length in decimal, which counts its own digits.
  let length = bodyLength;
  while (length !== bodyLength + String(length).length) length = bodyLength + String(length).length;
  return `${length}${body}`;
}

function parsePax(data: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  let offset = 0;
  while (offset < data.length) {
    const space = data.indexOf(0x20, offset);
    if (space < 0) break;
    const length = Number(decoder.decode(data.subarray(offset, space)));
    if (!Number.isInteger(length) || length <= 0) break;
    const record = decoder.decode(data.subarray(space + 1, offset + length - 1));
    const equals = record.indexOf("=");
    if (equals > 0) out[record.slice(0, equals)] = record.slice(equals + 1);
    offset += length;
  }
  return out;
}

function padded(data: Uint8Array): Uint8Array {
  const rest = data.length % BLOCK;
  if (rest === 0) return data;
  const out = new Uint8Array(data.length + BLOCK - rest);
  out.set(data);
  return out;
}

function writeString(block: Uint8Array, offset: number, length: number, value: string): void {
  const bytes = encoder.encode(value);
  if (bytes.length > length) throw new Error(`tar: "${value}" does not fit in ${length} bytes`);
  block.set(bytes, offset);
}

function writeOctal(block: Uint8Array, offset: number, length: number, value: number): void {
  if (!Number.isInteger(value) || value < 0) throw new Error(`tar: bad numeric field ${value}`);
  const digits = value.toString(8);
  if (digits.length > length - 1) throw new Error(`tar: ${value} does not fit in a ${length}-byte field`);
  writeString(block, offset, length, `${digits.padStart(length - 1, "0")}\0`);
}

function readString(block: Uint8Array, offset: number, length: number): string {
  const field = block.subarray(offset, offset + length);
  const end = field.indexOf(0);
  return decoder.decode(end < 0 ? field : field.subarray(0, end));
}

function readOctal(block: Uint8Array, offset: number, length: number): number {
  const text = readString(block, offset, length).trim();
  return text === "" ? 0 : parseInt(text, 8);
}

function lastComponent(path: string): string {
  const parts = path.split("/").filter(Boolean);
  return parts[parts.length - 1] ?? "entry";
}

function truncateUtf8(value: string, maxBytes: number): string {
  let out = value;
  while (encoder.encode(out).length > maxBytes) out = out.slice(0, -1);
  return out;
}
