// Ad hoc code signatures for thin 64-bit Mach-O executables, written and checked without Apple's
// tools. `bun build --compile` inserts its payload into a darwin binary after Bun's own build
// signed it, so the signature it carries no longer matches the file (macOS on arm64 refuses to run
// such a binary; x64 warns or refuses, depending on policy). Signing replaces that signature with a
// SuperBlob holding a SHA-256 CodeDirectory (one hash per 4096-byte page of everything before the
// signature) and an empty requirement set, the form `codesign --sign -` writes.
//
// Everything inside a code signature is big-endian; the Mach-O header and load commands are
// little-endian (both supported CPUs are).

import { createHash } from "node:crypto";

const MH_MAGIC_64 = 0xfeedfacf;
const MH_EXECUTE = 2;
const LC_SEGMENT_64 = 0x19;
const LC_CODE_SIGNATURE = 0x1d;

const CSMAGIC_EMBEDDED_SIGNATURE = 0xfade0cc0;
const CSMAGIC_CODEDIRECTORY = 0xfade0c02;
const CSMAGIC_REQUIREMENTS = 0xfade0c01;
const CSSLOT_CODEDIRECTORY = 0;
const CSSLOT_REQUIREMENTS = 2;
const CSSLOT_ALTERNATE_CODEDIRECTORIES = 0x1000;
const CS_ADHOC = 0x2;
const CS_HASHTYPE_SHA256 = 2;
const CS_EXECSEG_MAIN_BINARY = 0x1;
const CODEDIRECTORY_VERSION = 0x20400; // the first with execSeg fields, which arm64 kernels read
const CODEDIRECTORY_HEADER = 88;
const HASH_SIZE = 32;
const PAGE_SHIFT = 12;
const PAGE_SIZE = 1 << PAGE_SHIFT;
const SPECIAL_SLOTS = 2; // -1 Info.plist (none: zeros), -2 requirements
/** Segments are mapped in 16 KiB pages on arm64; 4 KiB on x64 divides it. */
const SEGMENT_ALIGN = 0x4000;

type Segment = { name: string; commandOffset: number; vmsize: bigint; fileoff: bigint; filesize: bigint };
type MachOLayout = {
  fileType: number;
  segments: Segment[];
  /** Offset of the LC_CODE_SIGNATURE command and the data it points at. */
  signature?: { commandOffset: number; dataoff: number; datasize: number };
};

function readLayout(file: Uint8Array, name: string): MachOLayout {
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  if (file.length < 32 || view.getUint32(0, true) !== MH_MAGIC_64) {
    throw new Error(`${name}: not a thin 64-bit little-endian Mach-O file`);
  }
  const fileType = view.getUint32(12, true);
  const commandCount = view.getUint32(16, true);
  const segments: Segment[] = [];
  let signature: MachOLayout["signature"];
  let offset = 32;
  for (let i = 0; i < commandCount; i++) {
    const cmd = view.getUint32(offset, true);
    const size = view.getUint32(offset + 4, true);
    if (size < 8 || offset + size > file.length) throw new Error(`${name}: load command ${i} is malformed`);
    if (cmd === LC_SEGMENT_64) {
      segments.push({
        name: new TextDecoder().decode(file.subarray(offset + 8, offset + 24)).replace(/\0.*$/s, ""),
        commandOffset: offset,
        vmsize: view.getBigUint64(offset + 32, true),
        fileoff: view.getBigUint64(offset + 40, true),
        filesize: view.getBigUint64(offset + 48, true),
      });
    } else if (cmd === LC_CODE_SIGNATURE) {
      signature = { commandOffset: offset, dataoff: view.getUint32(offset + 8, true), datasize: view.getUint32(offset + 12, true) };
    }
    offset += size;
  }
  return { fileType, segments, signature };
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest();
const align = (value: number, to: number) => Math.ceil(value / to) * to;

function emptyRequirements(): Uint8Array {
  const blob = new Uint8Array(12);
  const view = new DataView(blob.buffer);
  view.setUint32(0, CSMAGIC_REQUIREMENTS);
  view.setUint32(4, blob.length);
  view.setUint32(8, 0);
  return blob;
}

function codeDirectory(file: Uint8Array, codeLimit: number, identifier: string, text: Segment | undefined, mainBinary: boolean, requirements: Uint8Array): Uint8Array {
  const ident = new TextEncoder().encode(`${identifier}\0`);
  const codeSlots = Math.ceil(codeLimit / PAGE_SIZE);
  const identOffset = CODEDIRECTORY_HEADER;
  const hashOffset = identOffset + ident.length + SPECIAL_SLOTS * HASH_SIZE;
  const length = hashOffset + codeSlots * HASH_SIZE;
  const blob = new Uint8Array(length);
  const view = new DataView(blob.buffer);
  view.setUint32(0, CSMAGIC_CODEDIRECTORY);
  view.setUint32(4, length);
  view.setUint32(8, CODEDIRECTORY_VERSION);
  view.setUint32(12, CS_ADHOC);
  view.setUint32(16, hashOffset);
  view.setUint32(20, identOffset);
  view.setUint32(24, SPECIAL_SLOTS);
  view.setUint32(28, codeSlots);
  view.setUint32(32, codeLimit);
  blob[36] = HASH_SIZE;
  blob[37] = CS_HASHTYPE_SHA256;
  blob[38] = 0; // platform
  blob[39] = PAGE_SHIFT;
  // spare2, scatterOffset, teamOffset, spare3 and codeLimit64 stay 0.
  view.setBigUint64(64, text?.fileoff ?? 0n);
  view.setBigUint64(72, text?.filesize ?? 0n);
  view.setBigUint64(80, mainBinary ? BigInt(CS_EXECSEG_MAIN_BINARY) : 0n);
  blob.set(ident, identOffset);
  blob.set(sha256(requirements), hashOffset - CSSLOT_REQUIREMENTS * HASH_SIZE);
  for (let page = 0; page < codeSlots; page++) {
    const start = page * PAGE_SIZE;
    blob.set(sha256(file.subarray(start, Math.min(start + PAGE_SIZE, codeLimit))), hashOffset + page * HASH_SIZE);
  }
  return blob;
}

function superBlob(blobs: { slot: number; blob: Uint8Array }[]): Uint8Array {
  const headerLength = 12 + blobs.length * 8;
  const length = headerLength + blobs.reduce((sum, b) => sum + b.blob.length, 0);
  const out = new Uint8Array(length);
  const view = new DataView(out.buffer);
  view.setUint32(0, CSMAGIC_EMBEDDED_SIGNATURE);
  view.setUint32(4, length);
  view.setUint32(8, blobs.length);
  let offset = headerLength;
  blobs.forEach(({ slot, blob }, i) => {
    view.setUint32(12 + i * 8, slot);
    view.setUint32(16 + i * 8, offset);
    out.set(blob, offset);
    offset += blob.length;
  });
  return out;
}

/** The size the signature will take: known before hashing, because the header that is hashed records it. */
function signatureSize(codeLimit: number, identifier: string): number {
  const cd = CODEDIRECTORY_HEADER + new TextEncoder().encode(identifier).length + 1 + SPECIAL_SLOTS * HASH_SIZE + Math.ceil(codeLimit / PAGE_SIZE) * HASH_SIZE;
  return align(12 + 2 * 8 + cd + emptyRequirements().length, 16);
}

/**
 * Returns the file with its old signature dropped and a fresh ad hoc one appended. The binary must
 * already have an LC_CODE_SIGNATURE command (every Bun darwin binary does) whose data ends the file.
 */
export function signAdHoc(input: Uint8Array, identifier: string, name = "Mach-O file"): Uint8Array<ArrayBuffer> {
  const layout = readLayout(input, name);
  const { signature } = layout;
  if (!signature) throw new Error(`${name}: no LC_CODE_SIGNATURE load command to reuse`);
  const linkedit = layout.segments.find((s) => s.name === "__LINKEDIT");
  if (!linkedit) throw new Error(`${name}: no __LINKEDIT segment`);
  if (signature.dataoff + signature.datasize !== input.length) {
    throw new Error(`${name}: the code signature (ending at ${signature.dataoff + signature.datasize}) does not end the file (${input.length} bytes)`);
  }
  // The new signature starts where the old one did, 16-byte aligned as codesign places it.
  const codeLimit = align(signature.dataoff, 16);
  const size = signatureSize(codeLimit, identifier);
  const out = new Uint8Array(codeLimit + size);
  out.set(input.subarray(0, Math.min(codeLimit, signature.dataoff)));
  const view = new DataView(out.buffer);
  view.setUint32(signature.commandOffset + 8, codeLimit, true);
  view.setUint32(signature.commandOffset + 12, size, true);
  const linkeditFileSize = BigInt(codeLimit + size) - linkedit.fileoff;
  const vmsize = BigInt(align(Number(linkeditFileSize), SEGMENT_ALIGN));
  view.setBigUint64(linkedit.commandOffset + 48, linkeditFileSize, true);
  view.setBigUint64(linkedit.commandOffset + 32, vmsize > linkedit.vmsize ? vmsize : linkedit.vmsize, true);

  const requirements = emptyRequirements();
  const text = layout.segments.find((s) => s.name === "__TEXT");
  const cd = codeDirectory(out, codeLimit, identifier, text, layout.fileType === MH_EXECUTE, requirements);
  const blob = superBlob([
    { slot: CSSLOT_CODEDIRECTORY, blob: cd },
    { slot: CSSLOT_REQUIREMENTS, blob: requirements },
  ]);
  out.set(blob, codeLimit);
  return out;
}

export type SignatureCheck = {
  identifier: string;
  flags: number;
  adHoc: boolean;
  pages: number;
  /** Bytes the signature covers (its codeLimit). */
  codeLimit: number;
  /** Everything that does not verify; empty when the signature is good. */
  problems: string[];
};

/** Checks every CodeDirectory's page hashes (and the requirements hash) against the file. */
export function verifySignature(file: Uint8Array, name = "Mach-O file"): SignatureCheck {
  const layout = readLayout(file, name);
  if (!layout.signature) throw new Error(`${name}: not signed (no LC_CODE_SIGNATURE)`);
  const { dataoff, datasize } = layout.signature;
  if (dataoff + datasize > file.length) throw new Error(`${name}: the code signature runs past the end of the file`);
  const sig = new DataView(file.buffer, file.byteOffset + dataoff, datasize);
  if (datasize < 12 || sig.getUint32(0) !== CSMAGIC_EMBEDDED_SIGNATURE) throw new Error(`${name}: the code signature is not an embedded-signature SuperBlob`);
  const count = sig.getUint32(8);
  const slots = Array.from({ length: count }, (_, i) => ({ slot: sig.getUint32(12 + i * 8), offset: sig.getUint32(16 + i * 8) }));
  const blobAt = (offset: number) => file.subarray(dataoff + offset, dataoff + offset + sig.getUint32(offset + 4));

  const problems: string[] = [];
  const directories = slots.filter((s) => s.slot === CSSLOT_CODEDIRECTORY || (s.slot >= CSSLOT_ALTERNATE_CODEDIRECTORIES && s.slot < CSSLOT_ALTERNATE_CODEDIRECTORIES + 5));
  if (directories.length === 0) throw new Error(`${name}: the code signature has no CodeDirectory`);
  const requirementsSlot = slots.find((s) => s.slot === CSSLOT_REQUIREMENTS);
  let primary: Omit<SignatureCheck, "problems"> | undefined;

  for (const directory of directories) {
    const cd = new DataView(file.buffer, file.byteOffset + dataoff + directory.offset);
    if (cd.getUint32(0) !== CSMAGIC_CODEDIRECTORY) throw new Error(`${name}: slot ${directory.slot} is not a CodeDirectory`);
    const flags = cd.getUint32(12);
    const hashOffset = cd.getUint32(16);
    const identOffset = cd.getUint32(20);
    const specialSlots = cd.getUint32(24);
    const codeSlots = cd.getUint32(28);
    const codeLimit = cd.getUint32(32);
    const hashSize = cd.getUint8(36);
    const hashType = cd.getUint8(37);
    const pageSize = 2 ** cd.getUint8(39);
    const bytes = new Uint8Array(file.buffer, file.byteOffset + dataoff + directory.offset);
    const end = bytes.indexOf(0, identOffset);
    const identifier = new TextDecoder().decode(bytes.subarray(identOffset, end));
    const label = directory.slot === 0 ? "CodeDirectory" : `CodeDirectory (slot 0x${directory.slot.toString(16)})`;
    if (hashType !== CS_HASHTYPE_SHA256 || hashSize !== HASH_SIZE) {
      // SHA-1 alternates are legacy; only SHA-256 directories are checked, one must exist.
      if (directory.slot === CSSLOT_CODEDIRECTORY) problems.push(`${label} uses hash type ${hashType}, not SHA-256`);
      continue;
    }
    if (codeLimit !== dataoff) problems.push(`${label} covers ${codeLimit} bytes, but the signature starts at ${dataoff}`);
    if (codeSlots !== Math.ceil(codeLimit / pageSize)) problems.push(`${label} has ${codeSlots} page hashes for ${codeLimit} bytes`);
    const stale: number[] = [];
    for (let page = 0; page < codeSlots; page++) {
      const start = page * pageSize;
      const expected = bytes.subarray(hashOffset + page * hashSize, hashOffset + (page + 1) * hashSize);
      if (!sha256(file.subarray(start, Math.min(start + pageSize, codeLimit, file.length))).equals(expected)) stale.push(page);
    }
    if (stale.length > 0) problems.push(`${label}: ${stale.length} of ${codeSlots} page hashes differ, the first at page ${stale[0]}`);
    if (requirementsSlot && specialSlots >= CSSLOT_REQUIREMENTS) {
      const expected = bytes.subarray(hashOffset - CSSLOT_REQUIREMENTS * hashSize, hashOffset - (CSSLOT_REQUIREMENTS - 1) * hashSize);
      if (!sha256(blobAt(requirementsSlot.offset)).equals(expected)) problems.push(`${label}: the requirements hash differs`);
    }
    primary ??= { identifier, flags, adHoc: (flags & CS_ADHOC) !== 0, pages: codeSlots, codeLimit };
  }
  if (!primary) throw new Error(`${name}: no SHA-256 CodeDirectory`);
  return { ...primary, problems };
}
