import { randomInt } from "node:crypto";
import type { TLSSocket } from "node:tls";
import type { Logger } from "pino";
import { type BackoffOptions, backoffSchedule, DIAL_BACKOFF } from "../../../machines/backoff.ts";
import type { EventType } from "../../events/catalogue.ts";
import { isValidId } from "../../events/envelope.ts";
import type { TlsIdentity } from "../../identity/tls.ts";
import { silentLogger } from "../../log.ts";
import type { Input, Offer } from "../actor-host.ts";
import { type Cause, causedBy } from "../caused-by.ts";
import type { Scheduler } from "../scheduler.ts";
import { Admission } from "./admission.ts";
import { type AgentSession, KEEPALIVE, type KeepaliveOptions, LiveSession } from "./agent-session.ts";
import { type Connection, connectOnce } from "./connect.ts";
import type { LiveRegistry } from "./live-registry.ts";
import { type AgentRecord, normalAddress, type ResolvedAgent } from "./register.ts";

/** The control plane's sessions to agentds: the entry every agent's dial goes through. */
export interface Sessions {
  /**
   * Dials the agent's agentd unless a dial is in flight or connected (dedup); fire-and-forget.
   * The session's events follow `cause` (the event that asked for the dial), each the one before.
   */
  dial(agentId: string, generation: number, cause?: Cause): void;
  /** The agent's session once it is registered (welcomed); undefined otherwise. */
  get(agentId: string): AgentSession | undefined;
  /** Called once per established, registered session (after register or an idempotent welcome). */
  onReady(listener: (s: AgentSession) => void | Promise<void>): void;
  /** Ends one agent's session and dial on purpose (its instance is going away): records nothing. */
  drop(agentId: string): Promise<void>;
  /** Ends every session on purpose: records nothing. */
  close(): Promise<void>;
}

export interface SessionOptions {
  backoff: BackoffOptions;
  keepalive: KeepaliveOptions;
  /** TLS connect plus hello-ack, per attempt (ms). */
  handshakeTimeoutMs: number;
  /** register-required → register (ms); past it the agent is untrusted (register_timeout). */
  registerTimeoutMs: number;
  /** Consecutive failed socket closes before the dial gives up (fd-leak-ceiling). */
  closeFailureCeiling: number;
  /** Wait before re-dialling a session that broke (ms), so a peer that drops at once is not hammered. */
  redialDelayMs: number;
}

export const SESSION_DEFAULTS: SessionOptions = {
  backoff: DIAL_BACKOFF,
  keepalive: KEEPALIVE,
  handshakeTimeoutMs: 10_000,
  registerTimeoutMs: 30_000,
  closeFailureCeiling: 5,
  redialDelayMs: 500,
};

export interface SessionsDeps {
  /** The actor host's `offer`: every fact is stored before anything acts on it. */
  offer(ref: { kind: "session" | "agent"; id: string }, input: Input): Promise<Offer>;
  /** The runtime's answer for an agent's current instance; null when it has none running. */
  resolve(agentId: string): Promise<ResolvedAgent | null>;
  /** The host's record of an agent (its pool, generation, whether it is live); null when none. */
  agentOf(agentId: string): Promise<AgentRecord | null>;
  /** A live copy of the registry projection (live-registry.ts). */
  registry: Pick<LiveRegistry, "registrationOf" | "agentOfThumbprint">;
  /** The control plane's client certificate, its key and the corral CA. */
  tls: TlsIdentity;
  /** Backoff waits, handshake and register timeouts, keepalive: tests drive it (ManualScheduler). */
  scheduler: Scheduler;
  log?: Logger;
  options?: Partial<SessionOptions>;
  /** Seeds each dial cycle's jitter (default: crypto). */
  seed?: () => number;
  /** Closes a socket; a rejection counts towards the fd-leak ceiling (a test seam). */
  closeSocket?: (socket: TLSSocket) => Promise<void>;
}

/** One agent's dial loop: its current connection, and what stops it. */
interface Entry {
  agentId: string;
  generation: number;
  stopped: boolean;
  /** The address of the current cycle (for ambiguous-address checks). */
  address: string | null;
  /** The socket of the attempt under way, cut on stop so the stop need not wait for its timeout. */
  attempt: TLSSocket | null;
  /** The open connection (the session's), closed on stop. */
  connection: Connection | null;
  /** The registered session, while it lasts. */
  session: LiveSession | null;
  closeFailures: number;
  wake: (() => void) | null;
  done: Promise<void>;
  /** What the next fact recorded names as its cause: the last one recorded, first the dial's cause. */
  cause: Cause | undefined;
}

export function createSessions(deps: SessionsDeps): Sessions {
  return new Dialer(deps);
}

let sleeps = 0;

/**
 * The dialer (ARCHITECTURE.md, "Sessions"). One loop per agent: a cycle records
 * SessionConnecting (with the seed of its backoff waits), tries until an attempt gets a hello-ack
 * or the schedule runs out (SessionFailed gave_up), records SessionConnected, admits the peer
 * (admission.ts: welcome, register or untrusted), then holds the session. A session that breaks
 * is recorded (SessionBroken) and dialled again; one the control plane closes records nothing.
 * After `closeFailureCeiling` socket closes in a row failed, the loop gives up (fd-leak-ceiling).
 */
class Dialer implements Sessions {
  private readonly entries = new Map<string, Entry>();
  private readonly listeners: ((s: AgentSession) => void | Promise<void>)[] = [];
  private readonly opts: SessionOptions;
  private readonly log: Logger;
  private readonly admission: Admission;
  private closed = false;

  constructor(private readonly deps: SessionsDeps) {
    this.opts = { ...SESSION_DEFAULTS, ...deps.options };
    this.log = deps.log ?? silentLogger;
    this.admission = new Admission({
      ...deps,
      log: this.log,
      registerTimeoutMs: this.opts.registerTimeoutMs,
      sharersOf: (agentId, address) => this.sharersOf(agentId, address),
    });
  }

  dial(agentId: string, generation: number, cause?: Cause): void {
    if (!isValidId(agentId) || !Number.isSafeInteger(generation) || generation < 1) {
      throw new TypeError(`dial needs an agent id and a generation >= 1, got ${agentId} ${generation}`);
    }
    if (this.closed) return;
    const current = this.entries.get(agentId);
    if (current && current.generation >= generation) return;
    if (current) void this.stop(current);
    const entry: Entry = {
      agentId,
      generation,
      stopped: false,
      address: null,
      attempt: null,
      connection: null,
      session: null,
      closeFailures: 0,
      wake: null,
      done: Promise.resolve(),
      cause,
    };
    this.entries.set(agentId, entry);
    entry.done = this.loop(entry)
      .catch((err: unknown) => {
        // The store failed under the loop (nothing more can be recorded): leave no socket behind.
        this.log.error({ err, agentId }, "dial loop failed");
        entry.attempt?.destroy();
        entry.connection?.channel.close("error", true);
        entry.connection?.channel.socket.destroy();
      })
      .finally(() => {
        if (this.entries.get(agentId) === entry) this.entries.delete(agentId);
      });
  }

  get(agentId: string): AgentSession | undefined {
    return this.entries.get(agentId)?.session ?? undefined;
  }

  onReady(listener: (s: AgentSession) => void | Promise<void>): void {
    this.listeners.push(listener);
  }

  async drop(agentId: string): Promise<void> {
    const entry = this.entries.get(agentId);
    if (entry) await this.stop(entry);
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.entries.values()].map((e) => this.stop(e)));
  }

  private async stop(e: Entry): Promise<void> {
    e.stopped = true;
    e.wake?.();
    e.attempt?.destroy();
    e.connection?.channel.close("closed", true);
    await e.done;
  }

  private async loop(e: Entry): Promise<void> {
    for (let redial = false; !e.stopped; redial = true) {
      if (redial) await this.sleep(e, this.opts.redialDelayMs);
      if (e.stopped || (await this.cycle(e)) === "ended") return;
    }
  }

  /**
   * One dial cycle; "broken" when an established session broke and the agent is dialled again.
   * An instance that moved (restarted at another address) mid-cycle starts a new cycle there.
   */
  private async cycle(e: Entry): Promise<"broken" | "ended"> {
    for (;;) {
      const target = await this.deps.resolve(e.agentId);
      if (e.stopped) return "ended";
      if (!target) {
        this.log.info({ agentId: e.agentId }, "no running instance to dial");
        await this.record(e, "SessionFailed", {
          generation: e.generation,
          reason: "not_running",
          attempts: 0,
        });
        return "ended";
      }
      e.address = target.address;
      const seed = (this.deps.seed ?? (() => randomInt(0, 2 ** 32)))() >>> 0;
      const connecting = { generation: e.generation, address: target.address, seed };
      if (!(await this.record(e, "SessionConnecting", connecting)).accepted) return "ended";
      const outcome = await this.connect(e, target.address, seed);
      if (outcome === "moved") continue;
      return outcome ? this.hold(e, outcome.connection, outcome.attempts) : "ended";
    }
  }

  /** Attempts until one gets a hello-ack, waiting the cycle's backoff between them. */
  private async connect(e: Entry, address: string, seed: number) {
    const waits = backoffSchedule(seed, this.opts.backoff);
    const connectDeps = { ...this.deps, log: this.log, timeoutMs: this.opts.handshakeTimeoutMs };
    for (let attempt = 1; ; attempt++) {
      let socket: TLSSocket | undefined;
      try {
        const connection = await connectOnce(e.agentId, address, connectDeps, (s) => {
          socket = s;
          e.attempt = s;
        });
        e.attempt = null;
        if (!e.stopped) return { connection, attempts: attempt };
        connection.channel.close("closed", true);
        await this.closeSocket(e, connection.channel.socket);
        return null;
      } catch (err) {
        this.log.debug({ agentId: e.agentId, attempt, err }, "dial attempt failed");
        e.attempt = null;
        if (socket) await this.closeSocket(e, socket);
      }
      if (e.stopped) return null;
      const reason =
        e.closeFailures >= this.opts.closeFailureCeiling
          ? "fd-leak-ceiling"
          : attempt > waits.length
            ? "gave_up"
            : null;
      if (reason) {
        this.log.warn({ agentId: e.agentId, reason, attempts: attempt }, "dial failed");
        await this.record(e, "SessionFailed", { generation: e.generation, reason, attempts: attempt });
        return null;
      }
      await this.sleep(e, waits[attempt - 1] ?? 0);
      if (e.stopped) return null;
      // Asked again before each retry: a restarted instance may listen elsewhere now.
      const now = await this.deps.resolve(e.agentId);
      if (e.stopped) return null;
      if (!now) {
        await this.record(e, "SessionFailed", {
          generation: e.generation,
          reason: "not_running",
          attempts: attempt,
        });
        return null;
      }
      if (normalAddress(now.address) !== normalAddress(address)) return "moved" as const;
    }
  }

  /** Records the connection, admits the peer, holds the session until it ends. */
  private async hold(e: Entry, conn: Connection, attempts: number): Promise<"broken" | "ended"> {
    e.connection = conn;
    const { channel } = conn;
    const connected = { generation: e.generation, attempts, ...conn.peer };
    if (!(await this.record(e, "SessionConnected", connected)).accepted || e.stopped) {
      channel.close("closed", true);
      await this.closeSocket(e, channel.socket);
      return "ended";
    }
    const session = new LiveSession(
      e.agentId,
      e.generation,
      conn.hello,
      conn.peer,
      channel,
      this.deps.scheduler,
      this.opts.keepalive,
      this.log,
    );
    const admitted = await this.admission.admit(e.agentId, e.generation, conn, e.cause);
    if (admitted && !e.stopped && channel.isOpen) {
      session.cause = admitted.cause;
      e.session = session;
      this.ready(session);
    }
    const reason = await session.closed;
    e.session = null;
    e.connection = null;
    await this.closeSocket(e, channel.socket);
    if (channel.intentional || e.stopped) return "ended";
    this.log.info({ agentId: e.agentId, reason }, "session broke");
    await this.record(e, "SessionBroken", { generation: e.generation, reason });
    if (e.closeFailures >= this.opts.closeFailureCeiling) {
      await this.record(e, "SessionFailed", {
        generation: e.generation,
        reason: "fd-leak-ceiling",
        attempts,
      });
      return "ended";
    }
    return "broken";
  }

  private ready(session: AgentSession): void {
    for (const listener of this.listeners) {
      Promise.resolve()
        .then(() => listener(session))
        .catch((err: unknown) =>
          this.log.error({ err, agentId: session.agentId }, "session listener failed"),
        );
    }
  }

  /** Records a fact of this dial, caused by the one before it (or by what asked for the dial). */
  private async record<T extends EventType>(e: Entry, type: T, data: Input<T>["data"]): Promise<Offer> {
    const input = { type, data, ...causedBy(e.cause) } as Input;
    const offered = await this.deps.offer({ kind: "session", id: e.agentId }, input);
    if (offered.accepted) e.cause = offered.event;
    return offered;
  }

  /** Closes a socket; a failure counts towards the ceiling, a success resets the count. */
  private async closeSocket(e: Entry, socket: TLSSocket): Promise<void> {
    try {
      await (this.deps.closeSocket ?? destroySocket)(socket);
      e.closeFailures = 0;
    } catch (err) {
      e.closeFailures++;
      this.log.warn({ agentId: e.agentId, err, failures: e.closeFailures }, "closing a socket failed");
    }
  }

  private sleep(e: Entry, ms: number): Promise<void> {
    const key = `session-wait:${++sleeps}`;
    return new Promise((resolve) => {
      const done = () => {
        e.wake = null;
        this.deps.scheduler.disarm(key);
        resolve();
      };
      e.wake = done;
      this.deps.scheduler.arm(key, this.deps.scheduler.now() + ms, done);
    });
  }

  /** Other agents this dialer reaches at `address` now. */
  private sharersOf(agentId: string, address: string): string[] {
    const out: string[] = [];
    for (const e of this.entries.values()) {
      if (
        e.agentId !== agentId &&
        !e.stopped &&
        e.address !== null &&
        normalAddress(e.address) === normalAddress(address)
      ) {
        out.push(e.agentId);
      }
    }
    return out;
  }
}

/** The default close: destroy the socket and wait until it is closed. */
function destroySocket(socket: TLSSocket): Promise<void> {
  if (socket.closed) return Promise.resolve();
  return new Promise((resolve) => {
    socket.once("close", () => resolve());
    socket.destroy();
  });
}
