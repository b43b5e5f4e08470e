import type { Logger } from "pino";
import type { DoneMsg, ErrorMsg, ExecMsg, FromAgent, OpMsg } from "../../agentd/protocol.ts";
import type { Cause } from "../caused-by.ts";
import type { Scheduler } from "../scheduler.ts";
import type { Channel } from "./channel.ts";
import { SessionLostError } from "./errors.ts";

export type HelloAck = Extract<FromAgent, { t: "hello-ack" }>;
export type OutMsg = Extract<FromAgent, { t: "out" }>;
export type Heartbeat = Extract<FromAgent, { t: "heartbeat" }>;

/** What the control plane saw of the agentd's certificate (SessionConnected records the same). */
export interface PeerSeen {
  peerCN: string | null;
  thumbprint: string | null;
  /** "ok", or why the chain did not verify to the corral CA. */
  chain: string;
}

/** One registered session to an agent's agentd: what the init plan and exec dispatch use. */
export interface AgentSession {
  readonly agentId: string;
  readonly generation: number;
  readonly hello: HelloAck;
  readonly peer: PeerSeen;
  /**
   * Sends an exec/op frame (it carries `id`), resolves with its done or error frame. Rejects with
   * SessionLostError when the session ends first.
   */
  run(msg: ExecMsg | OpMsg, on?: RunListeners): Promise<DoneMsg | ErrorMsg>;
  cancel(id: string): void;
  /** Resolves with a reason when the session ends (never rejects). */
  readonly closed: Promise<string>;
  /** The event its readiness follows (AgentRegistered, or SessionConnected): the init plan's cause. */
  readonly cause?: Cause;
}

export interface RunListeners {
  ack?(): void;
  output?(o: OutMsg): void;
}

export interface KeepaliveOptions {
  /** A ping after this long (ms). */
  pingMs: number;
  /** No pong this long after a ping ends the session (ms). */
  pongTimeoutMs: number;
}

export const KEEPALIVE: KeepaliveOptions = { pingMs: 30_000, pongTimeoutMs: 10_000 };

interface Pending {
  resolve(result: DoneMsg | ErrorMsg): void;
  reject(err: Error): void;
  on: RunListeners;
}

let sessions = 0;

/**
 * An AgentSession over a Channel: commands multiplexed by id (ack, output chunks, then one done
 * or error each), a ping every `pingMs` that must be answered within `pongTimeoutMs`, and every
 * command still waiting rejected with SessionLostError when the connection ends.
 */
export class LiveSession implements AgentSession {
  private readonly pending = new Map<string, Pending>();
  private readonly key = `session-keepalive:${++sessions}`;
  /** The latest heartbeat agentd sent (memory, CPU, its command's state). */
  lastHeartbeat: Heartbeat | undefined;
  readonly closed: Promise<string>;
  /** Set by the dialer once the peer is admitted (AgentSession.cause). */
  cause: Cause | undefined;

  constructor(
    readonly agentId: string,
    readonly generation: number,
    readonly hello: HelloAck,
    readonly peer: PeerSeen,
    private readonly channel: Channel,
    private readonly scheduler: Scheduler,
    private readonly keepalive: KeepaliveOptions,
    private readonly log: Logger,
  ) {
    channel.onMessage = (msg) => this.receive(msg);
    this.closed = channel.ended.then((reason) => {
      this.scheduler.disarm(this.key);
      for (const [id, p] of this.pending) {
        this.pending.delete(id);
        p.reject(new SessionLostError(agentId, reason));
      }
      return reason;
    });
    this.armPing();
  }

  run(msg: ExecMsg | OpMsg, on: RunListeners = {}): Promise<DoneMsg | ErrorMsg> {
    if (!this.channel.isOpen)
      return this.closed.then((r) => Promise.reject(new SessionLostError(this.agentId, r)));
    if (this.pending.has(msg.id)) {
      return Promise.reject(new Error(`command ${msg.id} is already running on agent ${this.agentId}`));
    }
    return new Promise((resolve, reject) => {
      this.pending.set(msg.id, { resolve, reject, on });
      this.channel.send(msg);
    });
  }

  cancel(id: string): void {
    this.channel.send({ t: "cancel", id });
  }

  private receive(msg: FromAgent): void {
    switch (msg.t) {
      case "ack":
        this.pending.get(msg.id)?.on.ack?.();
        return;
      case "out":
        this.pending.get(msg.id)?.on.output?.(msg);
        return;
      case "done":
      case "error": {
        const p = this.pending.get(msg.id);
        if (p) {
          this.pending.delete(msg.id);
          p.resolve(msg);
        } else if (msg.t === "error") {
          // id "" is about the connection (a frame agentd could not read), not one command.
          this.log.warn(
            { agentId: this.agentId, code: msg.code, message: msg.message },
            "agentd reported an error",
          );
        }
        return;
      }
      case "heartbeat":
        this.lastHeartbeat = msg;
        return;
      case "pong":
        this.armPing();
        return;
      default:
        this.log.debug({ agentId: this.agentId, t: msg.t }, "unexpected message after the handshake");
    }
  }

  /** Next ping in `pingMs`; once sent, the same timer becomes the pong deadline. */
  private armPing(): void {
    const { pingMs, pongTimeoutMs } = this.keepalive;
    this.scheduler.arm(this.key, this.scheduler.now() + pingMs, () => {
      this.channel.send({ t: "ping" });
      this.scheduler.arm(this.key, this.scheduler.now() + pongTimeoutMs, () =>
        this.channel.close("keepalive_timeout", false),
      );
    });
  }
}
