import { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { Logger } from "../log.ts";
import { describeFrameError, encodeFrame, FrameDecoder } from "./frames.ts";
import { type FromAgent, parseToAgent, type ToAgent } from "./protocol.ts";

/**
 * One control-plane connection to agentd, over any byte stream (TLS in production, a plain
 * socket in tests): frames in, checked messages to the engine, frames out. A frame that breaks
 * the framing ends the connection after one `error` naming why; a well-framed message that does
 * not check is answered with an `error` and the connection goes on.
 */

/**
 * Output frames queued for a peer beyond which more output is dropped (results, heartbeats and
 * pongs still go): a control plane that reads slowly must not grow agentd without bound.
 */
const MAX_QUEUED_BYTES = 8 * 1024 * 1024;

/** A refusal names what was wrong in at most this many characters (a frame may hold thousands of faults). */
const MAX_REASON = 2000;

/** How long a connection we ended may linger before it is cut (a peer that never closes its side). */
const END_GRACE_MS = 1000;

export class Connection {
  /** Set by the engine once the peer said hello. */
  helloDone = false;
  private closed = false;
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly decoder = new FrameDecoder();

  constructor(
    private readonly stream: Duplex,
    private readonly onMessage: (conn: Connection, msg: ToAgent) => void,
    onClose: (conn: Connection) => void,
    private readonly log: Logger,
  ) {
    // Frames are small and answer each other (ack, then done): Nagle would hold the second one
    // until the peer's delayed ACK, ~40 ms a command.
    if (stream instanceof Socket) stream.setNoDelay(true);
    stream.on("data", (chunk: Buffer) => this.receive(chunk));
    stream.on("error", (err) => log.debug({ err: err.message }, "agentd: connection error"));
    stream.once("close", () => {
      this.closed = true;
      clearInterval(this.heartbeat);
      onClose(this);
    });
  }

  get open(): boolean {
    return !this.closed && this.stream.writable;
  }

  /** Whether the peer is so far behind that streamed output should wait for the result's tails. */
  get congested(): boolean {
    return this.stream.writableLength > MAX_QUEUED_BYTES;
  }

  send(msg: FromAgent): void {
    if (this.open) this.stream.write(encodeFrame(msg));
  }

  /** Sends `make()` every `ms` until the connection closes. */
  startHeartbeat(ms: number, make: () => FromAgent): void {
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => this.send(make()), ms);
  }

  /** Ends the connection after what was sent so far; cut after a grace if the peer holds on. */
  end(): void {
    clearInterval(this.heartbeat);
    this.stream.end();
    setTimeout(() => this.stream.destroy(), END_GRACE_MS).unref();
  }

  /** A bug in handling one message answers that message; it does not take agentd down. */
  private deliver(msg: ToAgent): void {
    try {
      this.onMessage(this, msg);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.log.error({ err: message, t: msg.t }, "agentd: internal error");
      this.send({ t: "error", id: "id" in msg ? msg.id : "", code: "internal", message: "internal error" });
    }
  }

  private receive(chunk: Buffer): void {
    if (this.closed) return;
    const { frames, error } = this.decoder.push(chunk);
    for (const frame of frames) {
      const parsed = parseToAgent(frame);
      if (parsed.ok) this.deliver(parsed.msg);
      else {
        const reason = parsed.error.slice(0, MAX_REASON);
        this.log.warn({ reason }, "agentd: message refused");
        this.send({ t: "error", id: idOf(frame), code: "bad_message", message: reason });
      }
    }
    if (error) {
      const message = describeFrameError(error);
      this.log.warn({ reason: message }, "agentd: bad frame, closing the connection");
      this.send({ t: "error", id: "", code: "bad_frame", message });
      this.end();
      this.closed = true;
    }
  }
}

/** The id a refused message claimed, when it has a usable one: the peer learns which one failed. */
function idOf(frame: unknown): string {
  if (typeof frame !== "object" || frame === null || !("id" in frame)) return "";
  return typeof frame.id === "string" && frame.id.length <= 200 ? frame.id : "";
}
