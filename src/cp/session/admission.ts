import type { Logger } from "pino";
import { REFUSED_MESSAGE } from "../../agentd/protocol.ts";
import type { Input, Offer } from "../actor-host.ts";
import { type Cause, causedBy } from "../caused-by.ts";
import type { ControlOf } from "./channel.ts";
import type { Connection } from "./connect.ts";
import type { LiveRegistry } from "./live-registry.ts";
import {
  type AgentRecord,
  checkRegistration,
  classifyAtHello,
  type RegisterFacts,
  type ResolvedAgent,
  type UntrustedReason,
} from "./register.ts";

/** The peer being admitted, and the event its admission follows (SessionConnected). */
interface Seen {
  agentId: string;
  generation: number;
  conn: Connection;
  cause?: Cause;
}

export interface AdmissionDeps {
  offer(ref: { kind: "agent"; id: string }, input: Input): Promise<Offer>;
  resolve(agentId: string): Promise<ResolvedAgent | null>;
  agentOf(agentId: string): Promise<AgentRecord | null>;
  registry: Pick<LiveRegistry, "registrationOf" | "agentOfThumbprint">;
  /** Other agents the dialer reaches at `address`. */
  sharersOf(agentId: string, address: string): string[];
  registerTimeoutMs: number;
  log: Logger;
}

/**
 * What follows hello-ack: classify the peer against the registry (welcome again, ask it to
 * register, or untrusted), run the register cross-checks (register.ts) and record the verdict on
 * the agent — AgentRegistered then welcome, or AgentUntrusted then the generic refusal. An
 * untrusted peer keeps its connection: the control plane must still reach it. Registrations run
 * one at a time, so two peers cannot both bind one thumbprint between a check and its event.
 */
export class Admission {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: AdmissionDeps) {}

  /**
   * Once the peer was welcomed (registered now or before with this certificate): what its session
   * follows — AgentRegistered, or `cause` (SessionConnected) when welcomed again with no event.
   * Null when it was not. What admission records is caused by `cause`.
   */
  async admit(
    agentId: string,
    generation: number,
    conn: Connection,
    cause?: Cause,
  ): Promise<{ cause?: Cause } | null> {
    const { channel } = conn;
    const heard = classifyAtHello(
      this.deps.registry.registrationOf(agentId),
      generation,
      conn.peer.thumbprint,
    );
    if (heard.kind === "welcome") {
      channel.send({ t: "welcome" });
      return { cause };
    }
    const seen = { agentId, generation, conn, cause };
    if (heard.kind === "untrusted") return this.untrusted(seen, heard.reason, heard.detail);
    channel.send({ t: "register-required" });
    const register = await channel.expect("register", this.deps.registerTimeoutMs);
    if ("missing" in register) {
      if (register.missing === "timeout") return this.untrusted(seen, "register_timeout", register.reason);
      return null;
    }
    return this.serially(() => this.register(seen, register));
  }

  private async register(seen: Seen, msg: ControlOf<"register">): Promise<{ cause?: Cause } | null> {
    const { agentId, generation, conn } = seen;
    const verdict = checkRegistration(await this.gather(agentId, generation, conn, msg));
    if (!verdict.ok) return this.untrusted(seen, verdict.reason, verdict.detail);
    let cause = seen.cause;
    if (!verdict.idempotent) {
      const { thumbprint, peerCN } = verdict;
      const offered = await this.deps.offer(
        { kind: "agent", id: agentId },
        { type: "AgentRegistered", data: { generation, thumbprint, peerCN }, ...causedBy(seen.cause) },
      );
      if (!offered.accepted) {
        // The agent moved on (recycled, failed) between hello and register: nothing to welcome.
        this.deps.log.info({ agentId, generation }, "registration not recorded: the agent moved on");
        conn.channel.send({ t: "refused", message: REFUSED_MESSAGE });
        return null;
      }
      cause = offered.event;
    }
    this.deps.log.info({ agentId, generation, idempotent: verdict.idempotent }, "agent registered");
    conn.channel.send({ t: "welcome" });
    return { cause };
  }

  /** The facts the checks read. The world is asked only about the agent that was dialled. */
  private async gather(
    agentId: string,
    generation: number,
    conn: Connection,
    msg: ControlOf<"register">,
  ): Promise<RegisterFacts> {
    const claimed = msg.agentId === agentId;
    const [agent, runtime] = claimed
      ? await Promise.all([this.deps.agentOf(agentId), this.deps.resolve(agentId)])
      : [null, null];
    const { registry } = this.deps;
    return {
      dialled: { agentId, generation },
      peer: { ...conn.peer, cert: conn.cert, address: conn.remote },
      claims: { poolId: msg.poolId, agentId: msg.agentId },
      agent,
      runtime,
      sharers: runtime ? this.deps.sharersOf(agentId, runtime.address) : [],
      registration: registry.registrationOf(agentId),
      thumbprintOwner:
        conn.peer.thumbprint === null ? undefined : registry.agentOfThumbprint(conn.peer.thumbprint),
    };
  }

  private async untrusted(seen: Seen, reason: UntrustedReason, detail: string): Promise<null> {
    const { agentId, generation, conn } = seen;
    this.deps.log.warn({ agentId, generation, reason, detail }, "registration rejected");
    await this.deps.offer(
      { kind: "agent", id: agentId },
      {
        type: "AgentUntrusted",
        data: { generation, reason, detail: detail.slice(0, 4096) },
        ...causedBy(seen.cause),
      },
    );
    conn.channel.send({ t: "refused", message: REFUSED_MESSAGE });
    return null;
  }

  private serially<T>(task: () => Promise<T>): Promise<T> {
    const next = this.queue.then(task, task);
    this.queue = next.catch(() => {});
    return next;
  }
}
