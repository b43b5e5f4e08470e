import type { ExecMsg } from "../../agentd/protocol.ts";
import { QueueFullError } from "./errors.ts";
import type { ExecSession } from "./session-port.ts";

/** One command the dispatcher holds until it is final. */
export interface QueuedCommand {
  id: string;
  agentId: string;
  /** The lease it runs under: it ends with that lease. */
  leaseId?: string;
  /** A cancel was asked for (its lease ended); once is enough. */
  cancelling?: boolean;
  /** Set once its CommandCreated is stored (the dispatch effect); a reserved slot has none yet. */
  msg?: ExecMsg;
  /** The dispatch attempt the command aggregate is on: what acks and sends are recorded for. */
  attempt: number;
  /** The session its frame went out on, while that session lives. */
  sentOn?: ExecSession;
}

export const DEFAULT_QUEUE_CAPACITY = 16;

/**
 * The commands each agent has waiting or running, in arrival order, at most `capacity` per agent
 * for new requests (backpressure: QueueFullError). Commands recovered after a restart are taken
 * whatever the count: they were accepted before.
 */
export class AgentQueues {
  private readonly byAgent = new Map<string, Map<string, QueuedCommand>>();
  private readonly byId = new Map<string, QueuedCommand>();

  constructor(readonly capacity = DEFAULT_QUEUE_CAPACITY) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError(`queue capacity ${capacity}: must be ≥ 1`);
  }

  /** Holds a slot for a new command, or throws QueueFullError. */
  reserve(agentId: string, id: string, leaseId: string): QueuedCommand {
    if ((this.byAgent.get(agentId)?.size ?? 0) >= this.capacity)
      throw new QueueFullError(agentId, this.capacity);
    const c = this.take(agentId, id);
    c.leaseId = leaseId;
    return c;
  }

  /** The command `id`, taken into its agent's queue if it is not there (a recovered one). */
  take(agentId: string, id: string): QueuedCommand {
    const held = this.byId.get(id);
    if (held) return held;
    const c: QueuedCommand = { id, agentId, attempt: 0 };
    const q = this.byAgent.get(agentId) ?? new Map<string, QueuedCommand>();
    this.byAgent.set(agentId, q);
    q.set(id, c);
    this.byId.set(id, c);
    return c;
  }

  get(id: string): QueuedCommand | undefined {
    return this.byId.get(id);
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  of(agentId: string): QueuedCommand[] {
    return [...(this.byAgent.get(agentId)?.values() ?? [])];
  }

  remove(id: string): void {
    const c = this.byId.get(id);
    if (!c) return;
    this.byId.delete(id);
    const q = this.byAgent.get(c.agentId);
    q?.delete(id);
    if (q?.size === 0) this.byAgent.delete(c.agentId);
  }

  get size(): number {
    return this.byId.size;
  }
}
