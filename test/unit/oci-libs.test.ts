import { describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostMachine, parseLddOutput, readElfDynamic, sharedLibrariesByLdd, sharedLibrariesInSysroot } from "../../build/libs.ts";

const GLIBC_LDD = `
\tlinux-vdso.so.1 (0x00007ffd6a5f2000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2cd5baa000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f2cd5d9f000)
\tlibpthread.so.0 => /lib/x86_64-linux-gnu/libpthread.so.0 (0x00007f2cd5ba5000)
`;

describe("parseLddOutput", () => {
  test("keeps libraries and the loader, drops the vDSO", () => {
    expect(parseLddOutput(GLIBC_LDD)).toEqual([
      { path: "/lib/x86_64-linux-gnu/libc.so.6", loader: false },
      { path: "/lib64/ld-linux-x86-64.so.2", loader: true },
      { path: "/lib/x86_64-linux-gnu/libpthread.so.0", loader: false },
    ]);
  });
  test("a static binary needs nothing", () => {
    expect(parseLddOutput("\tstatically linked\n")).toEqual([]);
    expect(parseLddOutput("\tnot a dynamic executable\n")).toEqual([]);
  });
  test("a missing library is an error, never a silent gap", () => {
    expect(() => parseLddOutput("\tlibssl.so.3 => not found\n")).toThrow(/libssl.so.3 not found/);
  });
});

describe("readElfDynamic", () => {
  test("refuses a file that is not ELF", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ktctl-libs-test-"));
    try {
      await Bun.write(join(dir, "script"), "#!/bin/sh\n".padEnd(128, " "));
      await expect(readElfDynamic(join(dir, "script"))).rejects.toThrow(/not an ELF/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

// The Bun runtime running this test is itself a glibc-linked ELF binary: the same kind of file
// the build hands to these functions.
describe.if(process.platform === "linux" && hostMachine() !== undefined)("on this Linux machine", () => {
  test("the ELF reader finds the interpreter and the needed libraries of the running bun", async () => {
    const info = await readElfDynamic(process.execPath);
    expect(info.machine).toBe(hostMachine()!);
    expect(info.interpreter).toMatch(/^\/lib(64)?\/ld-linux-(x86-64|aarch64)\.so\.\d$/);
    expect(info.needed).toContain("libc.so.6");
  });

  test("ldd and the ELF-and-sysroot lookup agree on what the image must carry", async () => {
    const byLdd = await sharedLibrariesByLdd(process.execPath);
    const bySysroot = await sharedLibrariesInSysroot(process.execPath, "/");
    expect(bySysroot.map((l) => [l.path, l.loader])).toEqual(byLdd.map((l) => [l.path, l.loader]));
    expect(bySysroot.map((l) => l.source)).toEqual(byLdd.map((l) => l.source));
    const loader = byLdd.filter((l) => l.loader);
    expect(loader).toHaveLength(1);
    expect(loader[0]!.path).toBe((await readElfDynamic(process.execPath)).interpreter!);
    // sources are real files, so the image gets bytes and not a dangling link
    for (const library of byLdd) expect((await Bun.file(library.source).stat()).isFile()).toBe(true);
  });

  test("a library missing from the sysroot is reported by name", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ktctl-libs-test-"));
    try {
      await expect(sharedLibrariesInSysroot(process.execPath, dir)).rejects.toThrow(/not found under/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
