import { expect, test } from "bun:test";
import net from "node:net";
import { SerialWriter } from "../../shadow/serial-writer.ts";

/** A connected pair on loopback: `client` is ours to write on, `server` the peer. */
async function pair(): Promise<{ client: net.Socket; server: net.Socket; close(): void }> {
  const listener = net.createServer();
  await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
  const accepted = new Promise<net.Socket>((resolve) => listener.once("connection", resolve));
  const client = net.connect((listener.address() as net.AddressInfo).port, "127.0.0.1");
  await new Promise((resolve) => client.once("connect", resolve));
  const server = await accepted;
  return {
    client,
    server,
    close: () => {
      client.destroy();
      server.destroy();
      listener.close();
    },
  };
}

test("buffers behind a busy socket reach the peer whole and in order, each written as given (never joined), then the FIN", async () => {
  const { client, server, close } = await pair();
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
    for (let i = 0; i < 24; i++) {
      const buffer = Buffer.alloc(512 * 1024, i);
      sent.push(buffer);
      writer.write(buffer);
    }
    // The peer has read nothing yet: most of it waits, and says so.
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

test("each buffer's callback runs once it is written; onFlushed once nothing is left", async () => {
  const { client, server, close } = await pair();
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
