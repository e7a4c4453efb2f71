// The shadow's end of the control channel. Roles register what they answer; the tunnel role
// serves the channel. A new request type is added to core/protocol/tunnel.ts first.

import type { Duplex } from "node:stream";
import { ControlLink } from "../core/protocol/control-link.ts";
import {
  isControlRequest,
  type ControlReply,
  type ControlRequest,
  type ReplyFor,
  type StreamFailedEvent,
} from "../core/protocol/tunnel.ts";
import type { ShadowLog } from "./log.ts";

type RequestType = ControlRequest["type"];
type ReplyBody<T extends RequestType> = Omit<ReplyFor<T>, "id">;

/** Which connection a request came from (for logs and per-connection answers). */
export interface ControlPeer {
  connection: number;
}

export type ControlHandler<T extends RequestType> = (
  request: Extract<ControlRequest, { type: T }>,
  peer: ControlPeer,
) => Promise<ReplyBody<T>> | ReplyBody<T>;

/** Throw this from a handler to answer with a specific error code. */
export class ControlAnswerError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export class ControlHandlers {
  private readonly handlers = new Map<RequestType, ControlHandler<any>>();

  handle<T extends RequestType>(type: T, handler: ControlHandler<T>): void {
    if (this.handlers.has(type)) throw new Error(`control request "${type}" already has a handler`);
    this.handlers.set(type, handler);
  }

  async answer(request: ControlRequest, peer: ControlPeer): Promise<ControlReply> {
    const handler = this.handlers.get(request.type);
    if (!handler) {
      return { type: "error", id: request.id, code: "unsupported", message: `this shadow does not answer "${request.type}"` };
    }
    try {
      return { ...(await handler(request, peer)), id: request.id } as ControlReply;
    } catch (error) {
      const code = error instanceof ControlAnswerError ? error.code : ((error as { code?: string }).code ?? "failed");
      return { type: "error", id: request.id, code, message: (error as Error).message };
    }
  }
}

/** A served control channel; `notify` sends unsolicited events to the host. */
export interface ControlSession {
  notify(event: StreamFailedEvent): void;
  close(): void;
}

export function serveControl(channel: Duplex, handlers: ControlHandlers, peer: ControlPeer, log: ShadowLog): ControlSession {
  const link: ControlLink = new ControlLink(channel, {
    onMessage: (message) => {
      if (!isControlRequest(message)) {
        log.warn("control.unexpected", { conn: peer.connection, type: message.type });
        return;
      }
      handlers.answer(message, peer).then((reply) => link.send(reply));
    },
    onProtocolError: (error) => log.warn("control.protocol-error", { conn: peer.connection, error: error.message }),
  });
  return { notify: (event) => void link.send(event), close: () => link.close() };
}
