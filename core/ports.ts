// Port specs as users type them ("8080", "9090:80,8443:443") and checks on local ports, each
// failure a KtctlError whose message names the offending value.

import { connect, createServer } from "node:net";
import { ExitCode, KtctlError } from "./errors.ts";

export interface PortMapping {
  local: number;
  remote: number;
}

function parsePortNumber(text: string): number {
  if (!/^\d+$/.test(text)) throw new KtctlError(`invalid port "${text}": expected a number 1-65535`, ExitCode.usage);
  const port = Number(text);
  if (port < 1 || port > 65535) throw new KtctlError(`port ${text} out of range 1-65535`, ExitCode.usage);
  return port;
}

/**
 * Parses "[LOCAL:]REMOTE" entries, comma-separated, from one or more specs. A bare port maps to
 * the same local port. A local port may appear only once: two remotes cannot share it.
 */
export function parsePorts(...specs: string[]): PortMapping[] {
  const mappings: PortMapping[] = [];
  const seenLocal = new Set<number>();
  for (const spec of specs) {
    for (const raw of spec.split(",")) {
      const entry = raw.trim();
      if (entry === "") throw new KtctlError(`invalid port list "${spec}": empty entry`, ExitCode.usage);
      const parts = entry.split(":");
      if (parts.length > 2)
        throw new KtctlError(`invalid port "${entry}": expected PORT or LOCAL:REMOTE`, ExitCode.usage);
      const remote = parsePortNumber(parts[parts.length - 1]!.trim());
      const local = parts.length === 2 ? parsePortNumber(parts[0]!.trim()) : remote;
      if (seenLocal.has(local))
        throw new KtctlError(`local port ${local} given twice`, ExitCode.usage, "map each local port to one remote port");
      seenLocal.add(local);
      mappings.push({ local, remote });
    }
  }
  if (mappings.length === 0) throw new KtctlError("no port given", ExitCode.usage);
  return mappings;
}

/**
 * Fails with a portInUse KtctlError if nothing can listen on host:port right now. Binding is the
 * only reliable test (a connect probe misses listeners on other addresses of the same port).
 */
export function assertLocalPortFree(port: number, host = "127.0.0.1"): Promise<void> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "EADDRINUSE")
        reject(new KtctlError(`local port ${port} is already in use`, ExitCode.portInUse, `stop what listens on it, or map another local port, e.g. ${port + 10000 <= 65535 ? port + 10000 : 18080}:<remote>`));
      else if (error.code === "EACCES")
        reject(new KtctlError(`local port ${port} needs administrator rights`, ExitCode.portInUse, "map a local port above 1023"));
      else if (error.code === "EADDRNOTAVAIL")
        reject(new KtctlError(`local address ${host} is not available on this machine`, ExitCode.portInUse));
      else reject(error);
    });
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve()));
  });
}

/** True when something accepts TCP connections on host:port. `timeoutMs` bounds a filtered port. */
export function isLocalPortListening(port: number, host = "127.0.0.1", timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host });
    const finish = (listening: boolean) => {
      socket.destroy();
      resolve(listening);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once("connect", () => finish(true));
    socket.once("error", () => finish(false));
  });
}
