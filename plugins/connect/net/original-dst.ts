// The destination a redirected connection was really meant for. Linux keeps it in the connection's
// conntrack entry and gives it to the accepting program through getsockopt(SO_ORIGINAL_DST). Bun
// has no getsockopt of its own, but calls libc's through bun:ffi (also in a compiled binary), and
// node:net sockets expose their descriptor. This is what lets ONE listener take every captured
// connection, whatever its address and port.

import type { Socket } from "node:net";
import type { ErrorsApi } from "../../../core/plugin-api.ts";

const SOL_IP = 0;
const SO_ORIGINAL_DST = 80;
const AF_INET = 2;
const LIBC_NAMES = ["libc.so.6", "libc.musl-x86_64.so.1", "libc.musl-aarch64.so.1", "libc.so"];

export interface Destination {
  host: string;
  port: number;
}

export type OriginalDestination = (socket: Socket) => Destination | undefined;

/** The descriptor of an accepted node:net socket (Bun keeps it on the handle). */
export function socketFd(socket: Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === "number" && fd >= 0 ? fd : undefined;
}

/** Decodes a struct sockaddr_in (family, port and address in network order). */
export function decodeSockaddrIn(bytes: Uint8Array): Destination | undefined {
  const family = bytes[0]! | (bytes[1]! << 8); // sa_family_t is host order (little endian on x86 and arm)
  if (family !== AF_INET) return undefined;
  return { host: `${bytes[4]}.${bytes[5]}.${bytes[6]}.${bytes[7]}`, port: (bytes[2]! << 8) | bytes[3]! };
}

/** Loads getsockopt from libc; throws a KtctlError when this system cannot provide it. */
export async function loadOriginalDestination(errors: ErrorsApi): Promise<OriginalDestination> {
  if (process.platform !== "linux") throw new errors.KtctlError("reading a connection's original destination works on Linux only", errors.ExitCode.failure);
  const { dlopen, FFIType, ptr } = await import("bun:ffi");
  let getsockopt: ((fd: number, level: number, name: number, value: unknown, length: unknown) => number) | undefined;
  const failures: string[] = [];
  for (const name of LIBC_NAMES) {
    try {
      const lib = dlopen(name, { getsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 } });
      getsockopt = lib.symbols.getsockopt as typeof getsockopt;
      break;
    } catch (error) {
      failures.push(`${name}: ${(error as Error).message}`);
    }
  }
  if (!getsockopt) {
    throw new errors.KtctlError(`cannot load libc for transparent capture (${failures.join("; ")})`, errors.ExitCode.failure, "use --mode proxy");
  }
  const call = getsockopt;
  return (socket) => {
    const fd = socketFd(socket);
    if (fd === undefined) return undefined;
    const address = new Uint8Array(16);
    const length = new Uint32Array([address.length]);
    if (call(fd, SOL_IP, SO_ORIGINAL_DST, ptr(address), ptr(length)) !== 0) return undefined;
    return decodeSockaddrIn(address);
  };
}
