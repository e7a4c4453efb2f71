// Test helpers for the tunnel: a real shadow process on loopback, local TCP servers, stream readers.
// Nothing here sleeps to wait for readiness: the shadow is ready when it says so on stdout.

import net from "node:net";
import path from "node:path";
import type { Duplex } from "node:stream";
import { SHADOW_ENV } from "../../core/protocol/tunnel.ts";

/** Set KTCTL_TEST_SHADOW_BIN to a compiled shadow to run the same tests against the binary. */
export const SHADOW_COMMAND = process.env.KTCTL_TEST_SHADOW_BIN
  ? [process.env.KTCTL_TEST_SHADOW_BIN]
  : [process.execPath, path.join(import.meta.dir, "../../shadow/main.ts")];

export class ShadowProcess {
  private constructor(
    readonly process: ReturnType<typeof Bun.spawn>,
    readonly port: number,
    readonly lines: string[],
    private readonly watchers: Set<() => void>,
  ) {}

  /** Starts `bun shadow/main.ts` and resolves once it listens (port 0 = any free port). */
  static async start(authorizedKey: string, port = 0, extraEnv: Record<string, string> = {}): Promise<ShadowProcess> {
    const child = Bun.spawn(SHADOW_COMMAND, {
      env: {
        ...process.env,
        [SHADOW_ENV.authorizedKey]: authorizedKey,
        [SHADOW_ENV.tunnelPort]: String(port),
        [SHADOW_ENV.tunnelHost]: "127.0.0.1",
        [SHADOW_ENV.sessionId]: "test-session",
        [SHADOW_ENV.logLevel]: "debug",
        ...extraEnv,
      },
      stdout: "pipe",
      stderr: "pipe",
    });
    const lines: string[] = [];
    const watchers = new Set<() => void>();
    pump(child.stdout as ReadableStream<Uint8Array>, lines, watchers);
    pump(child.stderr as ReadableStream<Uint8Array>, lines, watchers);
    const listening = await waitForLine(lines, watchers, /tunnel\.listening .*port=(\d+)/, 15_000, child.exited);
    return new ShadowProcess(child, Number(listening[1]), lines, watchers);
  }

  waitFor(pattern: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
    return waitForLine(this.lines, this.watchers, pattern, timeoutMs, this.process.exited);
  }

  count(pattern: RegExp): number {
    return this.lines.filter((line) => pattern.test(line)).length;
  }

  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<number> {
    this.process.kill(signal);
    return this.process.exited;
  }
}

function pump(stream: ReadableStream<Uint8Array>, lines: string[], watchers: Set<() => void>): void {
  void (async () => {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of stream) {
      pending += decoder.decode(chunk, { stream: true });
      const parts = pending.split("\n");
      pending = parts.pop()!;
      if (parts.length === 0) continue;
      lines.push(...parts);
      for (const wake of [...watchers]) wake();
    }
  })();
}

function waitForLine(
  lines: string[],
  watchers: Set<() => void>,
  pattern: RegExp,
  timeoutMs: number,
  exited: Promise<number>,
): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    const check = () => {
      for (const line of lines) {
        const match = pattern.exec(line);
        if (match) {
          done();
          resolve(match);
          return true;
        }
      }
      return false;
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms; got:\n${lines.join("\n")}`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      watchers.delete(check);
    };
    if (check()) return;
    watchers.add(check);
    exited.then((code) => {
      if (!watchers.has(check)) return;
      if (check()) return;
      done();
      reject(new Error(`shadow exited (${code}) before printing ${pattern}:\n${lines.join("\n")}`));
    });
  });
}

export interface LocalServer {
  port: number;
  connections: number;
  close(): Promise<void>;
}

/** A TCP server on loopback; `handle` gets each connection (half-open allowed). */
/** A connected pair of sockets on loopback (both half-open capable): `near` is ours, `far` the peer. */
export async function socketPair(): Promise<{ near: net.Socket; far: net.Socket; close(): void }> {
  const listener = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
  const accepted = new Promise<net.Socket>((resolve) => listener.once("connection", resolve));
  const near = net.connect({ port: (listener.address() as net.AddressInfo).port, host: "127.0.0.1", allowHalfOpen: true });
  await new Promise((resolve) => near.once("connect", resolve));
  const far = await accepted;
  return {
    near,
    far,
    close: () => {
      near.destroy();
      far.destroy();
      listener.close();
    },
  };
}

export async function localServer(handle: (socket: net.Socket) => void): Promise<LocalServer> {
  const server = net.createServer({ allowHalfOpen: true });
  const result: LocalServer = {
    port: 0,
    connections: 0,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  server.on("connection", (socket) => {
    result.connections++;
    socket.on("error", () => {});
    handle(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  result.port = (server.address() as net.AddressInfo).port;
  return result;
}

export const echoServer = () => localServer((socket) => socket.pipe(socket));

/** Reads a stream to its end. */
export function readAll(stream: Duplex): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.once("end", () => resolve(Buffer.concat(chunks)));
    stream.once("error", reject);
  });
}

/** Writes `payload`, half-closes, and reads the whole answer. */
export async function exchange(stream: Duplex, payload: Buffer | string): Promise<Buffer> {
  const answer = readAll(stream);
  stream.end(payload);
  return answer;
}

export function connectTcp(port: number, host = "127.0.0.1"): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host, allowHalfOpen: true });
    socket.once("connect", () => {
      socket.off("error", reject);
      resolve(socket);
    });
    socket.once("error", reject);
  });
}

/** A port that was free a moment ago (for listeners the test asks the shadow to open). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "0.0.0.0", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Records a tunnel's state changes and lets a test wait for the next one of a kind. */
export class StateLog {
  readonly seen: { state: string; detail?: string; at: number }[] = [];
  private readonly watchers = new Set<() => void>();

  readonly listener = (state: string, detail?: string) => {
    this.seen.push({ state, detail, at: Date.now() });
    for (const wake of [...this.watchers]) wake();
  };

  /** Resolves with the first `state` recorded at or after index `from`. */
  waitFor(state: string, from: number, timeoutMs: number): Promise<{ state: string; detail?: string; at: number }> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const hit = this.seen.slice(from).find((entry) => entry.state === state);
        if (!hit) return;
        clearTimeout(timer);
        this.watchers.delete(check);
        resolve(hit);
      };
      const timer = setTimeout(() => {
        this.watchers.delete(check);
        reject(new Error(`tunnel did not become ${state} within ${timeoutMs} ms (saw ${JSON.stringify(this.seen)})`));
      }, timeoutMs);
      this.watchers.add(check);
      check();
    });
  }
}

/** A logger that keeps what it is told, for assertions. */
export function memoryLogger() {
  const messages: { level: string; message: string }[] = [];
  const at = (level: string) => (message: string) => void messages.push({ level, message });
  return { messages, logger: { debug: at("debug"), info: at("info"), warn: at("warn") } };
}
