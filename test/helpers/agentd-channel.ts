import { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { describeFrameError, encodeFrame, FrameDecoder } from "../../src/agentd/frames.ts";
import { type FromAgent, parseFromAgent, type ToAgent } from "../../src/agentd/protocol.ts";

/**
 * A test's end of an agentd connection, over any Duplex (plain or TLS), standing where the
 * control plane's session (src/cp/session/channel.ts) would: typed messages out, checked messages in. agentd is untrusted input like any peer:
 * a frame that breaks the framing or does not check ends the channel with a reason.
 */
export class AgentdChannel {
  private readonly decoder = new FrameDecoder();
  private readonly listeners = new Set<(msg: FromAgent) => void>();
  /** Resolves once the stream closed; with the reason when this side ended it over a bad frame. */
  readonly closed: Promise<{ reason?: string }>;
  private reason: string | undefined;

  constructor(private readonly stream: Duplex) {
    this.closed = new Promise((resolve) => stream.once("close", () => resolve({ reason: this.reason })));
    stream.on("error", () => {}); // the close that follows is what the channel reports
    // Frames are small and answer each other (ack, then done): Nagle would hold the second one
    // until the peer's delayed ACK, ~40 ms a command.
    if (stream instanceof Socket) stream.setNoDelay(true);
    stream.on("data", (chunk: Buffer) => this.receive(chunk));
  }

  send(msg: ToAgent): void {
    if (this.stream.writable) this.stream.write(encodeFrame(msg));
  }

  /** Calls `listener` with every message from now on; returns how to stop. */
  onMessage(listener: (msg: FromAgent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    this.stream.destroy();
  }

  private receive(chunk: Buffer): void {
    const { frames, error } = this.decoder.push(chunk);
    for (const frame of frames) {
      const parsed = parseFromAgent(frame);
      if (!parsed.ok) {
        this.fail(`agentd sent a bad message: ${parsed.error}`);
        return;
      }
      for (const l of this.listeners) l(parsed.msg);
    }
    if (error) this.fail(`agentd sent a bad frame: ${describeFrameError(error)}`);
  }

  private fail(reason: string): void {
    this.reason ??= reason;
    this.stream.destroy();
  }
}
