import { expect, test } from "bun:test";
import { SerialWriter } from "../../shadow/serial-writer.ts";
import { socketPair } from "./tunnel-harness.ts";

test("buffers behind a busy socket reach the peer whole and in order, each written as given (never joined), then the FIN", async () => {
  const { near: client, far: server, close } = await socketPair();
  try {
    const joined: number[] = [];
    const spy = client as unknown as { _writev(chunks: { chunk: Buffer }[], callback: () => void): void };
    const writev = spy._writev.bind(client);
    spy._writev = (chunks, callback) => {
      joined.push(chunks.length);
      writev(chunks, callback);
    };
    const writer = new SerialWriter(client);
    const sent: Buffer[] = [];
    const firstWritten = Promise.withResolvers<void>();
    for (let i = 0; i < 24; i++) {
      const buffer = Buffer.alloc(512 * 1024, i);
      sent.push(buffer);
      writer.write(buffer, i === 0 ? () => firstWritten.resolve() : undefined);
    }
    // The socket took the first buffer; the peer has read nothing: the rest waits, and says so.
    await firstWritten.promise;
    expect(writer.pending).toBeGreaterThan(8 * 1024 * 1024);
    writer.end();
    const received: Buffer[] = [];
    for await (const chunk of server) received.push(chunk as Buffer);
    expect(Buffer.concat(received).equals(Buffer.concat(sent))).toBe(true);
    expect(joined).toEqual([]);
    expect(writer.pending).toBe(0);
  } finally {
    close();
  }
});

test("a socket destroyed with buffers queued: each queued buffer's callback hears it, and nothing is left pending", async () => {
  const { near: client, far: server, close } = await socketPair();
  try {
    server.pause();
    const writer = new SerialWriter(client);
    const heard: (string | undefined)[] = [];
    const all: Promise<void>[] = [];
    for (let i = 0; i < 8; i++) {
      const written = Promise.withResolvers<void>();
      all.push(written.promise);
      writer.write(Buffer.alloc(4 * 1024 * 1024, i), (error) => (heard.push(error ? "error" : "written"), written.resolve()));
    }
    client.destroy();
    await Promise.all(all);
    expect(heard).toHaveLength(8);
    expect(heard.at(-1)).toBe("error");
    expect(writer.pending).toBe(0);
  } finally {
    close();
  }
});

test("each buffer's callback runs once it is written; onFlushed once nothing is left", async () => {
  const { near: client, far: server, close } = await socketPair();
  try {
    server.resume();
    const writer = new SerialWriter(client);
    const order: string[] = [];
    const flushed = new Promise<void>((resolve) => (writer.onFlushed = () => (order.push("flushed"), resolve())));
    writer.write(Buffer.from("a"), () => order.push("a"));
    writer.write(Buffer.from("b"), () => order.push("b"));
    await flushed;
    expect(order).toEqual(["a", "b", "flushed"]);
  } finally {
    close();
  }
});
