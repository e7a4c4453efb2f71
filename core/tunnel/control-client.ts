// The host's end of the control channel: numbered requests with bounded waits, plus the
// shadow's stream-failure notes kept until the failed open asks for them.

import type { Duplex } from "node:stream";
import { ControlLink } from "../protocol/control-link.ts";
import {
  REPLY_TYPE,
  type ControlReply,
  type ControlRequest,
  type ReplyFor,
  type StreamFailedEvent,
} from "../protocol/tunnel.ts";

type RequestType = ControlRequest["type"];
type RequestInit<T extends RequestType> = Omit<Extract<ControlRequest, { type: T }>, "id">;

/** The shadow answered a request with an error reply. */
export class ControlRequestError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ControlRequestError";
  }
}

interface Pending {
  expect: ControlReply["type"];
  resolve(reply: ControlReply): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

// Failure notes whose open never came back for them (a race with a dropped link) must not pile up.
const MAX_KEPT_FAILURES = 256;

export class ControlClient {
  private readonly link: ControlLink;
  private readonly pending = new Map<number, Pending>();
  private readonly streamFailures = new Map<number, StreamFailedEvent>();
  private nextId = 1;

  constructor(channel: Duplex, onBroken: (reason: string) => void) {
    this.link = new ControlLink(channel, {
      onMessage: (message) => {
        if (message.type === "stream-failed") return this.keepFailure(message);
        if (!("id" in message)) return;
        const waiter = this.pending.get(message.id);
        if (!waiter) return;
        this.pending.delete(message.id);
        clearTimeout(waiter.timer);
        if (message.type === "error") waiter.reject(new ControlRequestError(message.code, message.message));
        else if (message.type !== waiter.expect) {
          waiter.reject(new Error(`the shadow answered "${message.type}" to a request expecting "${waiter.expect}"`));
        } else waiter.resolve(message as ControlReply);
      },
      onProtocolError: (error) => onBroken(`control channel: ${error.message}`),
      onClose: () => {
        this.failAll(new Error("control channel closed"));
        onBroken("control channel closed");
      },
    });
  }

  request<T extends RequestType>(request: RequestInit<T> & { type: T }, timeoutMs: number): Promise<ReplyFor<T>> {
    const id = this.nextId++;
    return new Promise<ReplyFor<T>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`the shadow did not answer "${request.type}" within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        expect: REPLY_TYPE[request.type],
        resolve: resolve as (reply: ControlReply) => void,
        reject,
        timer,
      });
      if (!this.link.send({ ...request, id } as ControlRequest)) {
        this.pending.delete(id);
        clearTimeout(timer);
        reject(new Error("control channel closed"));
      }
    });
  }

  /** Sends a ping without waiting: the answer only needs to arrive as traffic. */
  nudge(): void {
    this.link.send({ type: "ping", id: 0 });
  }

  /** The shadow's reason for refusing the stream opened with originator port `ref`, if it sent one. */
  takeStreamFailure(ref: number): StreamFailedEvent | undefined {
    const failure = this.streamFailures.get(ref);
    this.streamFailures.delete(ref);
    return failure;
  }

  /** The connection is gone: fail what waits, without touching the channel. */
  abandon(reason: string): void {
    this.failAll(new Error(`tunnel link lost (${reason})`));
  }

  private keepFailure(event: StreamFailedEvent): void {
    this.streamFailures.set(event.ref, event);
    if (this.streamFailures.size > MAX_KEPT_FAILURES) {
      this.streamFailures.delete(this.streamFailures.keys().next().value!);
    }
  }

  private failAll(error: Error): void {
    for (const waiter of this.pending.values()) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
    }
    this.pending.clear();
  }
}
