import type { TLSSocket } from "node:tls";
import type { Logger } from "pino";
import { describeFrameError, encodeFrame, FrameDecoder } from "../../agentd/frames.ts";
import { type FromAgent, parseFromAgent, type ToAgent } from "../../agentd/protocol.ts";
import type { Scheduler } from "../scheduler.ts";

type Control = Extract<FromAgent, { t: "hello-ack" | "register" }>;
export type ControlOf<T extends Control["t"]> = Extract<Control, { t: T }>;

/** What `expect` gives when the awaited message does not come. */
export type Missing = { missing: "timeout" | "ended"; reason: string };

let keys = 0;

/**
 * One mTLS connection to an agentd, as frames: `send` encodes, incoming bytes go through the frame
 * decoder and `parseFromAgent` (everything agentd sends is untrusted input). The handshake's
 * control messages (hello-ack, register) are awaited with `expect`; every other message goes to
 * `onMessage`. A broken frame or a message that does not parse ends the connection: the two sides
 * are out of step. `ended` resolves with why it ended; `intentional` says the control plane
 * closed it (nothing is recorded then). Closing the socket is the dialer's (dialer.ts).
 */
export class Channel {
  private readonly decoder = new FrameDecoder();
  private readonly waiters = new Map<string, (m: Control | Missing) => void>();
  private endedWith: string | undefined;
  private resolveEnded!: (reason: string) => void;
  readonly ended: Promise<string>;
  intentional = false;
  onMessage: (msg: FromAgent) => void = () => {};

  constructor(
    readonly socket: TLSSocket,
    private readonly scheduler: Scheduler,
    private readonly log: Logger,
  ) {
    this.ended = new Promise((r) => {
      this.resolveEnded = r;
    });
    socket.on("data", (chunk: Buffer) => this.receive(chunk));
    socket.on("error", (err: NodeJS.ErrnoException) =>
      this.end(`transport_error: ${err.code ?? err.message}`),
    );
    socket.on("close", () => this.end("peer_closed"));
  }

  get isOpen(): boolean {
    return this.endedWith === undefined;
  }

  send(msg: ToAgent): void {
    if (!this.isOpen) return;
    this.socket.write(encodeFrame(msg));
  }

  /** The next `t` message, or why none came within `timeoutMs`. */
  expect<T extends Control["t"]>(t: T, timeoutMs: number): Promise<ControlOf<T> | Missing> {
    if (!this.isOpen) return Promise.resolve({ missing: "ended", reason: this.endedWith ?? "ended" });
    const key = `session-channel:${++keys}`;
    return new Promise((resolve) => {
      const settle = (m: Control | Missing) => {
        this.waiters.delete(t);
        this.scheduler.disarm(key);
        resolve(m as ControlOf<T> | Missing);
      };
      this.waiters.set(t, settle);
      this.scheduler.arm(key, this.scheduler.now() + timeoutMs, () =>
        settle({ missing: "timeout", reason: `no ${t} within ${timeoutMs} ms` }),
      );
    });
  }

  /** Ends the connection; `intentional` when the control plane chose to (nothing is recorded). */
  close(reason: string, intentional: boolean): void {
    if (intentional && this.isOpen) this.intentional = true;
    this.end(reason);
  }

  private receive(chunk: Buffer): void {
    const { frames, error } = this.decoder.push(chunk);
    for (const frame of frames) {
      if (!this.isOpen) return;
      const parsed = parseFromAgent(frame);
      if (!parsed.ok) {
        this.log.warn({ error: parsed.error }, "agentd sent a message that does not parse");
        this.end("bad_message");
        return;
      }
      const waiter = this.waiters.get(parsed.msg.t);
      if (waiter && (parsed.msg.t === "hello-ack" || parsed.msg.t === "register")) waiter(parsed.msg);
      else this.onMessage(parsed.msg);
    }
    if (error) {
      this.log.warn({ error: describeFrameError(error) }, "agentd sent a broken frame");
      this.end("bad_frame");
    }
  }

  private end(reason: string): void {
    if (this.endedWith !== undefined) return;
    this.endedWith = reason;
    for (const waiter of [...this.waiters.values()]) waiter({ missing: "ended", reason });
    // The socket itself is closed by the dialer (its close is what the fd-leak ceiling counts).
    this.socket.pause();
    this.resolveEnded(reason);
  }
}
