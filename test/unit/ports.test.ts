import { describe, expect, test } from "bun:test";
import { createServer, type Server } from "node:net";
import { ExitCode, isKtctlError, type KtctlError } from "../../core/errors.ts";
import { assertLocalPortFree, isLocalPortListening, parsePorts } from "../../core/ports.ts";

function errorOf(fn: () => unknown): KtctlError {
  try {
    fn();
  } catch (error) {
    if (isKtctlError(error)) return error;
    throw error;
  }
  throw new Error("expected a KtctlError");
}

async function rejectionOf(promise: Promise<unknown>): Promise<KtctlError> {
  try {
    await promise;
  } catch (error) {
    if (isKtctlError(error)) return error;
    throw error;
  }
  throw new Error("expected a KtctlError");
}

function listen(host: string): Promise<{ server: Server; port: number }> {
  return new Promise((resolve, reject) => {
    const server = createServer((socket) => socket.end());
    server.once("error", reject);
    server.listen(0, host, () => resolve({ server, port: (server.address() as { port: number }).port }));
  });
}

const close = (server: Server) => new Promise<void>((resolve) => server.close(() => resolve()));

describe("parsePorts", () => {
  test("a bare port maps to itself", () => {
    expect(parsePorts("8080")).toEqual([{ local: 8080, remote: 8080 }]);
  });

  test("LOCAL:REMOTE lists, several specs, spaces tolerated", () => {
    expect(parsePorts("8080", "9090:80,8443:443")).toEqual([
      { local: 8080, remote: 8080 },
      { local: 9090, remote: 80 },
      { local: 8443, remote: 443 },
    ]);
    expect(parsePorts(" 1:65535 , 2 ")).toEqual([{ local: 1, remote: 65535 }, { local: 2, remote: 2 }]);
  });

  test("not a number", () => {
    const error = errorOf(() => parsePorts("abc"));
    expect(error.message).toBe('invalid port "abc": expected a number 1-65535');
    expect(error.exitCode).toBe(ExitCode.usage);
    expect(errorOf(() => parsePorts("80:http")).message).toBe('invalid port "http": expected a number 1-65535');
    expect(errorOf(() => parsePorts("-1")).message).toBe('invalid port "-1": expected a number 1-65535');
    expect(errorOf(() => parsePorts("8.5")).message).toBe('invalid port "8.5": expected a number 1-65535');
  });

  test("out of range", () => {
    const error = errorOf(() => parsePorts("70000"));
    expect(error.message).toBe("port 70000 out of range 1-65535");
    expect(error.exitCode).toBe(ExitCode.usage);
    expect(errorOf(() => parsePorts("0:80")).message).toBe("port 0 out of range 1-65535");
  });

  test("shape errors", () => {
    expect(errorOf(() => parsePorts("1:2:3")).message).toBe('invalid port "1:2:3": expected PORT or LOCAL:REMOTE');
    expect(errorOf(() => parsePorts("80,,81")).message).toBe('invalid port list "80,,81": empty entry');
    expect(errorOf(() => parsePorts()).message).toBe("no port given");
    expect(errorOf(() => parsePorts("8080:80", "8080:81")).message).toBe("local port 8080 given twice");
  });
});

describe("local port checks", () => {
  test("a port with a listener is in use, on loopback and on all addresses", async () => {
    const { server, port } = await listen("127.0.0.1");
    try {
      const error = await rejectionOf(assertLocalPortFree(port));
      expect(error.message).toBe(`local port ${port} is already in use`);
      expect(error.exitCode).toBe(ExitCode.portInUse);
      expect((await rejectionOf(assertLocalPortFree(port, "0.0.0.0"))).exitCode).toBe(ExitCode.portInUse);
      expect(await isLocalPortListening(port)).toBe(true);
    } finally {
      await close(server);
    }
  });

  test("a listener on all addresses takes the loopback port too", async () => {
    const { server, port } = await listen("0.0.0.0");
    try {
      expect((await rejectionOf(assertLocalPortFree(port))).message).toBe(`local port ${port} is already in use`);
    } finally {
      await close(server);
    }
  });

  test("once the listener is gone the port is free and nothing answers", async () => {
    const { server, port } = await listen("127.0.0.1");
    await close(server);
    await assertLocalPortFree(port);
    expect(await isLocalPortListening(port)).toBe(false);
    // The check itself must not keep the port: a real listener can take it right after.
    const again = createServer();
    await new Promise<void>((resolve, reject) => {
      again.once("error", reject);
      again.listen(port, "127.0.0.1", () => resolve());
    });
    await close(again);
  });
});
