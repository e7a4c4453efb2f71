// Finds the shared libraries (and the dynamic loader) a Linux binary needs, so an image can carry
// exactly those. A native binary is asked of `ldd`, which runs the real loader; a binary for
// another architecture is resolved by reading its ELF dynamic section against a sysroot that holds
// that architecture's libraries (Debian's libc6-<arch>-cross puts one in /usr/<triplet>).

import { realpath } from "node:fs/promises";
import { basename, join } from "node:path";

export type SharedLibrary = {
  /** Where the library must sit inside the image (what the loader will look up). */
  path: string;
  /** The file on this machine holding its bytes (symlinks resolved). */
  source: string;
  /** True for the program interpreter named in PT_INTERP. */
  loader: boolean;
};

export type ElfMachine = "x86_64" | "aarch64";

export type ElfDynamicInfo = {
  machine: ElfMachine;
  interpreter?: string;
  needed: string[];
};

const MACHINES: Record<number, ElfMachine> = { 62: "x86_64", 183: "aarch64" };
export const MULTIARCH_TRIPLET: Record<ElfMachine, string> = { x86_64: "x86_64-linux-gnu", aarch64: "aarch64-linux-gnu" };

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NULL = 0n;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;
const DT_STRSZ = 10n;

async function readRange(file: string, offset: number, length: number): Promise<DataView> {
  const buffer = await Bun.file(file).slice(offset, offset + length).arrayBuffer();
  if (buffer.byteLength !== length) throw new Error(`${file}: truncated ELF file`);
  return new DataView(buffer);
}

/** Reads PT_INTERP and DT_NEEDED from a 64-bit little-endian ELF file (x86_64 or aarch64). */
export async function readElfDynamic(file: string): Promise<ElfDynamicInfo> {
  const header = await readRange(file, 0, 64);
  if (header.getUint32(0, false) !== 0x7f454c46) throw new Error(`${file}: not an ELF file`);
  if (header.getUint8(4) !== 2 || header.getUint8(5) !== 1) throw new Error(`${file}: only 64-bit little-endian ELF is supported`);
  const machine = MACHINES[header.getUint16(18, true)];
  if (machine === undefined) throw new Error(`${file}: unsupported ELF machine ${header.getUint16(18, true)}`);

  const phoff = Number(header.getBigUint64(32, true));
  const phentsize = header.getUint16(54, true);
  const phnum = header.getUint16(56, true);
  const table = await readRange(file, phoff, phentsize * phnum);
  const loads: { vaddr: number; offset: number; filesz: number }[] = [];
  let dynamic: { offset: number; size: number } | undefined;
  let interp: { offset: number; size: number } | undefined;
  for (let i = 0; i < phnum; i++) {
    const base = i * phentsize;
    const type = table.getUint32(base, true);
    const offset = Number(table.getBigUint64(base + 8, true));
    const vaddr = Number(table.getBigUint64(base + 16, true));
    const filesz = Number(table.getBigUint64(base + 32, true));
    if (type === PT_LOAD) loads.push({ vaddr, offset, filesz });
    else if (type === PT_DYNAMIC) dynamic = { offset, size: filesz };
    else if (type === PT_INTERP) interp = { offset, size: filesz };
  }

  const decoder = new TextDecoder();
  const cString = (view: DataView, at: number) => {
    const bytes = new Uint8Array(view.buffer, view.byteOffset + at);
    const end = bytes.indexOf(0);
    return decoder.decode(end < 0 ? bytes : bytes.subarray(0, end));
  };
  const interpreter = interp ? cString(await readRange(file, interp.offset, interp.size), 0) : undefined;
  if (!dynamic) return { machine, interpreter, needed: [] };

  const dyn = await readRange(file, dynamic.offset, dynamic.size);
  const neededOffsets: number[] = [];
  let strtabAddress: number | undefined;
  let strtabSize = 0;
  for (let at = 0; at + 16 <= dyn.byteLength; at += 16) {
    const tag = dyn.getBigInt64(at, true);
    const value = dyn.getBigUint64(at + 8, true);
    if (tag === DT_NULL) break;
    if (tag === DT_NEEDED) neededOffsets.push(Number(value));
    else if (tag === DT_STRTAB) strtabAddress = Number(value);
    else if (tag === DT_STRSZ) strtabSize = Number(value);
  }
  if (neededOffsets.length === 0) return { machine, interpreter, needed: [] };
  if (strtabAddress === undefined) throw new Error(`${file}: dynamic section has no string table`);
  const segment = loads.find((load) => strtabAddress! >= load.vaddr && strtabAddress! < load.vaddr + load.filesz);
  if (!segment) throw new Error(`${file}: string table address is outside every loaded segment`);
  const strtab = await readRange(file, strtabAddress - segment.vaddr + segment.offset, strtabSize);
  return { machine, interpreter, needed: neededOffsets.map((offset) => cString(strtab, offset)) };
}

/** Parses `ldd` output; throws on "not found" so a missing library can never go unnoticed. */
export function parseLddOutput(output: string): { path: string; loader: boolean }[] {
  const libraries: { path: string; loader: boolean }[] = [];
  for (const raw of output.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.includes("statically linked") || line.includes("not a dynamic executable")) continue;
    const arrow = line.match(/^(\S+) => (.+?)(?: \(0x[0-9a-f]+\))?$/);
    if (arrow) {
      const [, name, target] = arrow;
      if (target === "not found") throw new Error(`ldd: shared library ${name} not found`);
      if (target!.startsWith("/")) libraries.push({ path: target!, loader: false });
      continue; // "name => (0x...)" is a virtual object such as the vDSO
    }
    const direct = line.match(/^(\/\S+) \(0x[0-9a-f]+\)$/);
    if (direct) libraries.push({ path: direct[1]!, loader: true });
    // anything else (linux-vdso.so.1 (0x...)) is provided by the kernel
  }
  return libraries;
}

async function toLibrary(path: string, loader: boolean, source = path): Promise<SharedLibrary> {
  return { path, source: await realpath(source), loader };
}

/** Libraries of a binary built for this machine, as the system loader resolves them. */
export async function sharedLibrariesByLdd(binary: string): Promise<SharedLibrary[]> {
  const proc = Bun.spawn(["ldd", binary], { stdout: "pipe", stderr: "pipe", env: { ...process.env, LC_ALL: "C" } });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0 && !/not a dynamic executable/.test(stdout + stderr)) throw new Error(`ldd ${binary} failed (${code}): ${stderr.trim()}`);
  const entries = parseLddOutput(stdout);
  return sortLibraries(await Promise.all(entries.map((entry) => toLibrary(entry.path, entry.loader))));
}

/**
 * Libraries of a binary for any supported architecture, looked up in `sysroot` the way the loader
 * would look them up in its default directories. They are placed in the image under the Debian
 * multiarch directory, which that loader searches without an ld.so.cache.
 */
export async function sharedLibrariesInSysroot(binary: string, sysroot: string): Promise<SharedLibrary[]> {
  const top = await readElfDynamic(binary);
  const triplet = MULTIARCH_TRIPLET[top.machine];
  const searchDirs = [`lib/${triplet}`, `usr/lib/${triplet}`, "lib", "usr/lib", "lib64", "usr/lib64"].map((dir) => join(sysroot, dir));
  const find = async (name: string): Promise<string> => {
    for (const dir of searchDirs) {
      const candidate = join(dir, name);
      if (await Bun.file(candidate).exists()) return candidate;
    }
    throw new Error(`shared library ${name} (needed by ${basename(binary)}) not found under ${sysroot}`);
  };

  const found = new Map<string, SharedLibrary>();
  const interpreterName = top.interpreter ? basename(top.interpreter) : undefined;
  if (top.interpreter) found.set(interpreterName!, await toLibrary(top.interpreter, true, await find(interpreterName!)));
  const queue = [...top.needed];
  while (queue.length > 0) {
    const name = queue.shift()!;
    if (found.has(name)) continue;
    const source = await find(name);
    found.set(name, await toLibrary(`/lib/${triplet}/${name}`, false, source));
    const info = await readElfDynamic(source);
    if (info.machine !== top.machine) throw new Error(`${source} is ${info.machine}, but ${basename(binary)} is ${top.machine}`);
    queue.push(...info.needed);
  }
  return sortLibraries([...found.values()]);
}

export function hostMachine(): ElfMachine | undefined {
  return process.arch === "x64" ? "x86_64" : process.arch === "arm64" ? "aarch64" : undefined;
}

/**
 * The libraries `binary` needs: `ldd` when the binary runs on this machine and no sysroot is given,
 * otherwise the ELF-and-sysroot lookup (default sysroot: /usr/<triplet>, as the cross libc packages lay it out).
 */
export async function sharedLibraries(binary: string, options: { sysroot?: string } = {}): Promise<SharedLibrary[]> {
  const { machine } = await readElfDynamic(binary);
  if (options.sysroot === undefined && process.platform === "linux" && machine === hostMachine()) return sharedLibrariesByLdd(binary);
  return sharedLibrariesInSysroot(binary, options.sysroot ?? `/usr/${MULTIARCH_TRIPLET[machine]}`);
}

function sortLibraries(libraries: SharedLibrary[]): SharedLibrary[] {
  return libraries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

if (import.meta.main) {
  const [binary, sysroot] = process.argv.slice(2);
  if (!binary) {
    console.error("usage: bun build/libs.ts BINARY [SYSROOT]");
    process.exit(2);
  }
  for (const library of await sharedLibraries(binary, { sysroot })) {
    console.log(`${library.path}\t${library.source}${library.loader ? "\t(loader)" : ""}`);
  }
}
