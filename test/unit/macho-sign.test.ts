import { describe, expect, test } from "bun:test";
import { signAdHoc, verifySignature } from "../../build/macho-sign.ts";

/**
 * A small Mach-O executable laid out like a Bun darwin binary: __TEXT from offset 0, __LINKEDIT
 * last, and an LC_CODE_SIGNATURE whose data (here a stale placeholder) ends the file.
 */
function fakeMachO(bodyBytes: number): Uint8Array<ArrayBuffer> {
  const commands = [segment("__TEXT", 0, 0), segment("__LINKEDIT", 0, 0), new Uint8Array(16)];
  const headerSize = 32 + commands.reduce((sum, c) => sum + c.length, 0);
  const linkeditOffset = 8192;
  const dataoff = headerSize + bodyBytes;
  const staleSignature = new Uint8Array(64).fill(0xab);
  const file = new Uint8Array(dataoff + staleSignature.length);
  const view = new DataView(file.buffer);
  view.setUint32(0, 0xfeedfacf, true);
  view.setUint32(4, 0x0100000c, true); // arm64
  view.setUint32(12, 2, true); // MH_EXECUTE
  view.setUint32(16, commands.length, true);
  view.setUint32(20, headerSize - 32, true);
  let offset = 32;
  for (const command of commands) {
    file.set(command, offset);
    offset += command.length;
  }
  const text = 32;
  view.setBigUint64(text + 32, BigInt(linkeditOffset), true);
  view.setBigUint64(text + 48, BigInt(linkeditOffset), true);
  const linkedit = 32 + 72;
  view.setBigUint64(linkedit + 40, BigInt(linkeditOffset), true);
  view.setBigUint64(linkedit + 48, BigInt(file.length - linkeditOffset), true);
  const signature = 32 + 144;
  view.setUint32(signature, 0x1d, true);
  view.setUint32(signature + 4, 16, true);
  view.setUint32(signature + 8, dataoff, true);
  view.setUint32(signature + 12, staleSignature.length, true);
  for (let i = headerSize; i < dataoff; i++) file[i] = (i * 7919) & 0xff;
  file.set(staleSignature, dataoff);
  return file;
}

function segment(name: string, fileoff: number, filesize: number): Uint8Array {
  const command = new Uint8Array(72);
  const view = new DataView(command.buffer);
  view.setUint32(0, 0x19, true);
  view.setUint32(4, 72, true);
  command.set(new TextEncoder().encode(name), 8);
  view.setBigUint64(40, BigInt(fileoff), true);
  view.setBigUint64(48, BigInt(filesize), true);
  return command;
}

describe("ad hoc Mach-O signatures", () => {
  test("a signed binary verifies: every page of what precedes the signature is hashed", () => {
    const signed = signAdHoc(fakeMachO(20_000), "ktctl");
    const check = verifySignature(signed);
    expect(check.problems).toEqual([]);
    expect(check.identifier).toBe("ktctl");
    expect(check.adHoc).toBe(true);
    expect(check.pages).toBe(Math.ceil(check.codeLimit / 4096));
    expect(check.codeLimit % 16).toBe(0);
  });

  test("the stale signature Bun leaves is found and replaced", () => {
    expect(() => verifySignature(fakeMachO(5000))).toThrow(/not an embedded-signature SuperBlob/);
    const once = signAdHoc(fakeMachO(5000), "ktctl");
    // Signing is deterministic and re-signing a signed binary changes nothing.
    expect(Buffer.from(signAdHoc(once, "ktctl")).equals(Buffer.from(once))).toBe(true);
  });

  test("a tampered copy fails, naming the first page that changed", () => {
    const signed = signAdHoc(fakeMachO(20_000), "ktctl");
    const tampered = signed.slice();
    tampered[2 * 4096 + 10]! ^= 0xff;
    tampered[4 * 4096 + 1]! ^= 0x01;
    const { problems, pages } = verifySignature(tampered);
    expect(problems).toEqual([`CodeDirectory: 2 of ${pages} page hashes differ, the first at page 2`]);
    expect(verifySignature(signAdHoc(tampered, "ktctl")).problems).toEqual([]);
  });

  test("a changed requirement set and a signature that covers too little are reported", () => {
    const signed = signAdHoc(fakeMachO(9000), "ktctl");
    const view = new DataView(signed.buffer);
    const dataoff = view.getUint32(32 + 144 + 8, true);
    const requirementsOffset = new DataView(signed.buffer, dataoff).getUint32(12 + 8 + 4);
    const changed = signed.slice();
    changed[dataoff + requirementsOffset + 11]! ^= 1;
    expect(verifySignature(changed).problems).toEqual(["CodeDirectory: the requirements hash differs"]);

    const grown = signed.slice();
    new DataView(grown.buffer).setUint32(32 + 144 + 8, dataoff + 16, true);
    expect(() => verifySignature(grown)).toThrow(/runs past the end|not an embedded-signature/);
  });

  test("files that are not thin 64-bit Mach-O are refused", () => {
    expect(() => signAdHoc(new Uint8Array(64), "ktctl", "x.exe")).toThrow(/x.exe: not a thin 64-bit/);
  });
});
