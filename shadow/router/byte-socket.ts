// The router's sockets: Bun's own TCP sockets (Bun.listen / Bun.connect) behind a small wrapper
// that gives them what a proxy needs and Bun leaves to the caller: a write queue for the bytes the
// kernel did not take yet, a "drained" signal to resume whoever produced them, and a half-close
// that waits for that queue. node:net sockets do all this too, through the stream machinery, and
// that machinery was most of the router's own CPU per request (docs/architecture.md, "Mesh router").

import type { Socket, SocketHandler, TCPSocketListener } from "bun";
import type { Upstream } from "../../core/protocol/router.ts";

/** Who gets a socket's events; replaced as the socket passes from one owner to the next. */
export interface ByteSink {
  data(chunk: Buffer): void;
  /** The peer sent its FIN: it sends nothing more, and may still read. */
  end(): void;
  /** The socket is gone (closed by either side, reset, or failed). */
  close(error?: Error): void;
  /** Every queued byte has reached the kernel: a producer paused for this socket may go on. */
  drain(): void;
  /** No traffic for the idle time set with `idleTimeout`. */
  timeout?(): void;
}

type RawSocket = Socket<ByteSocket>;

export class ByteSocket {
  sink: ByteSink | undefined;
  private queue: Uint8Array[] = [];
  private shutdownWhenFlushed = false;
  private closeWhenFlushed = false;
  private paused = false;
  /** Closed, reset or destroyed: writes are dropped. */
  closed = false;
  /** The peer's FIN arrived. */
  readEnded = false;

  constructor(private readonly socket: RawSocket) {}

  /** Bytes waiting for the kernel: non-zero means the producer should wait for `drain`. */
  get backlog(): number {
    return this.queue.length;
  }

  /** Writes or queues the bytes; false when some had to be queued (wait for the sink's drain). */
  write(bytes: Uint8Array): boolean {
    if (this.closed || bytes.length === 0) return !this.closed;
    if (this.queue.length > 0) {
      this.queue.push(bytes);
      return false;
    }
    const written = this.socket.write(bytes);
    if (written === bytes.length) return true;
    if (written < 0) return false;
    this.queue.push(bytes.subarray(written));
    return false;
  }

  /** Sends FIN once the queue is out; reading goes on. */
  shutdown(): void {
    if (this.closed) return;
    if (this.queue.length > 0) this.shutdownWhenFlushed = true;
    else this.socket.shutdown();
  }

  /** Closes once the queue is out. */
  end(): void {
    if (this.closed) return;
    if (this.queue.length > 0) this.closeWhenFlushed = true;
    else this.socket.end();
  }

  /** Closes now, dropping whatever is queued; its owner, who asked, hears nothing more. */
  destroy(): void {
    this.sink = undefined;
    if (this.closed) return;
    this.closed = true;
    this.queue = [];
    this.socket.terminate();
  }

  pause(): void {
    if (this.paused || this.closed) return;
    this.paused = true;
    this.socket.pause();
  }

  resume(): void {
    if (!this.paused || this.closed) return;
    this.paused = false;
    this.socket.resume();
  }

  /** Seconds without traffic before the sink's `timeout` (0: never). */
  idleTimeout(seconds: number): void {
    if (!this.closed) this.socket.timeout(seconds);
  }

  setNoDelay(): void {
    this.socket.setNoDelay(true);
  }

  /** Called on the socket's drain event: writes what the kernel can take now. */
  flushQueue(): void {
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      const written = this.socket.write(head);
      if (written < 0) return;
      if (written < head.length) {
        this.queue[0] = head.subarray(written);
        return;
      }
      this.queue.shift();
    }
    if (this.closeWhenFlushed) this.socket.end();
    else if (this.shutdownWhenFlushed) this.socket.shutdown();
    this.sink?.drain();
  }

  markClosed(error?: Error): void {
    if (this.closed && !this.sink) return;
    this.closed = true;
    this.queue = [];
    const sink = this.sink;
    this.sink = undefined;
    sink?.close(error);
  }
}

function handlers(onOpen?: (socket: ByteSocket) => void, open?: Set<ByteSocket>): SocketHandler<ByteSocket> {
  return {
    open(socket) {
      socket.data = new ByteSocket(socket);
      socket.setNoDelay(true);
      open?.add(socket.data);
      onOpen?.(socket.data);
    },
    data(socket, chunk) {
      socket.data.sink?.data(chunk);
    },
    drain(socket) {
      socket.data.flushQueue();
    },
    end(socket) {
      const byteSocket = socket.data;
      byteSocket.readEnded = true;
      byteSocket.sink?.end();
    },
    timeout(socket) {
      socket.data.sink?.timeout?.();
    },
    error(socket, error) {
      socket.data?.markClosed(error);
    },
    close(socket, error) {
      if (!socket.data) return;
      open?.delete(socket.data);
      socket.data.markClosed(error);
    },
  };
}

export interface ByteListener {
  server: TCPSocketListener<ByteSocket>;
  /** Accepted connections not closed yet. */
  open: Set<ByteSocket>;
}

/** Listens on host:port; every accepted connection is handed to `accept` before any byte is read. */
export function listenBytes(host: string, port: number, accept: (socket: ByteSocket) => void): ByteListener {
  const open = new Set<ByteSocket>();
  const server = Bun.listen<ByteSocket>({ hostname: host, port, allowHalfOpen: true, socket: handlers(accept, open) });
  return { server, open };
}

export class ConnectError extends Error {
  constructor(
    readonly upstream: Upstream,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ConnectError";
  }
}

/** Upstreams are long-lived objects (a listener's fallback, a route's targets): their keys are made once. */
const keys = new WeakMap<Upstream, string>();

export function upstreamKey(upstream: Upstream): string {
  let key = keys.get(upstream);
  if (key === undefined) keys.set(upstream, (key = `${upstream.host}:${upstream.port}`));
  return key;
}

const CONNECT_HANDLERS = handlers();

/** Opens a TCP connection, bounded by a timeout; rejects with a ConnectError carrying the errno code. */
export async function connectBytes(upstream: Upstream, timeoutMs: number): Promise<ByteSocket> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new ConnectError(upstream, "ETIMEDOUT", `no answer from ${upstreamKey(upstream)} within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  const connecting = Bun.connect<ByteSocket>({ hostname: upstream.host, port: upstream.port, allowHalfOpen: true, socket: CONNECT_HANDLERS });
  try {
    const socket = await Promise.race([connecting, timedOut]);
    return socket.data;
  } catch (error) {
    // A connect that completes after the timeout must not linger.
    void connecting.then((late) => late.terminate(), () => undefined);
    if (error instanceof ConnectError) throw error;
    const { code = "ECONNREFUSED", message } = error as NodeJS.ErrnoException;
    throw new ConnectError(upstream, code, `${upstreamKey(upstream)}: ${message}`);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Joins two sockets both ways until both are done: bytes, back-pressure (a side that cannot keep
 * up pauses the other) and each side's FIN, so half-closing protocols work.
 */
export function spliceBytes(a: ByteSocket, b: ByteSocket, onClose?: () => void): void {
  let closed = false;
  const closeBoth = () => {
    if (closed) return;
    closed = true;
    a.destroy();
    b.destroy();
    onClose?.();
  };
  const oneWay = (from: ByteSocket, to: ByteSocket): ByteSink => ({
    data: (chunk) => {
      if (!to.write(chunk)) from.pause();
    },
    end: () => {
      to.shutdown();
      if (to.readEnded) closeWhenFlushed(from, to);
    },
    close: closeBoth,
    drain: () => to.resume(),
  });
  // Both directions finished: close once each side's queue is out.
  const closeWhenFlushed = (x: ByteSocket, y: ByteSocket) => {
    x.end();
    y.end();
  };
  a.sink = oneWay(a, b);
  b.sink = oneWay(b, a);
  // What happened before the splice (a FIN already read, a socket already gone) still counts.
  if (a.closed || b.closed) return closeBoth();
  if (a.readEnded) a.sink.end();
  if (b.readEnded) b.sink.end();
}
