// One end of the control channel: newline-delimited, validated messages over a duplex stream.
// Used by the host (core/tunnel/control-client.ts) and by the shadow (shadow/control.ts).

import type { Duplex } from "node:stream";
import {
  ControlLineDecoder,
  ControlProtocolError,
  decodeControlMessage,
  encodeControlMessage,
  type ControlMessage,
} from "./tunnel.ts";

export interface ControlLinkHandlers {
  onMessage(message: ControlMessage): void;
  /** The peer broke the protocol; the link is already closed. */
  onProtocolError(error: ControlProtocolError): void;
  /** The channel is gone (either side closed it, or the connection died). */
  onClose?(): void;
}

export class ControlLink {
  private readonly lines = new ControlLineDecoder();
  private open = true;

  constructor(
    private readonly channel: Duplex,
    private readonly handlers: ControlLinkHandlers,
  ) {
    channel.on("data", (chunk: Buffer) => this.receive(chunk));
    channel.on("error", () => this.close());
    channel.once("close", () => this.closed());
    channel.once("end", () => this.closed());
  }

  get isOpen(): boolean {
    return this.open;
  }

  /** Returns false when the link is already closed (the message is dropped). */
  send(message: ControlMessage): boolean {
    if (!this.open) return false;
    this.channel.write(encodeControlMessage(message));
    return true;
  }

  close(): void {
    if (!this.open) return;
    this.channel.end();
    this.closed();
  }

  private receive(chunk: Buffer): void {
    if (!this.open) return;
    try {
      for (const line of this.lines.push(chunk)) this.handlers.onMessage(decodeControlMessage(line));
    } catch (error) {
      if (!(error instanceof ControlProtocolError)) throw error;
      this.close();
      this.handlers.onProtocolError(error);
    }
  }

  private closed(): void {
    if (!this.open) return;
    this.open = false;
    this.handlers.onClose?.();
  }
}
