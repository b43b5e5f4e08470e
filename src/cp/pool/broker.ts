import type { Logger } from "pino";
import type { Lease } from "../../../machines/agent.ts";
import type { CorralEvent } from "../../events/catalogue.ts";
import type { AggregateRef } from "../../events/envelope.ts";
import { agentOfLease, newLeaseId } from "../../events/lease-id.ts";
import { DEFAULT_MAX_LEASE_TTL_MS, type PoolConfig } from "../../events/pool.ts";
import { leaseOutcome } from "../../projections/leases.ts";
import type { ActorHost } from "../actor-host.ts";
import { causedBy } from "../caused-by.ts";
import {
  AcquireCancelledError,
  AcquireTimeoutError,
  LeaseNotActiveError,
  LeaseTokenInvalidError,
  PoolError,
} from "../errors.ts";
import type { Scheduler } from "../scheduler.ts";
import { asAgentView } from "../views.ts";
import type { PoolAgent, PoolAgents } from "./agents.ts";
import { leaseTokenMatches, newLeaseToken } from "./lease-token.ts";

export interface AcquireOptions {
  timeoutMs: number;
  holder?: string;
  ttlMs?: number;
  signal?: AbortSignal;
  /** The request's correlation (src/api/service.ts): the grant event carries it. */
  correlationId?: string;
}

export interface LeaseGrant {
  leaseId: string;
  /** Shown to the acquirer once; the stream keeps only its hash. */
  leaseToken: string;
  pool: string;
  agentId: string;
  generation: number;
  ports: number[];
  expiresAt: number;
  ttlMs: number;
  runtime: "docker" | "process";
  instanceId: string;
}

interface Waiter {
  key: string;
  resolve(agentId: string): void;
  reject(err: Error): void;
}

export interface BrokerDeps {
  pool: string;
  host: ActorHost;
  agents: PoolAgents;
  scheduler: Scheduler;
  log: Logger;
  /** The pool's configuration while it is open; throws PoolClosedError otherwise. */
  openConfig(): PoolConfig;
  /** The runtime's live view: does this instance run? (the health check on grant) */
  isRunning(runtime: PoolConfig["runtime"], instanceId: string): boolean;
  /** An agent's stored events, to say how a lease that is no longer held ended. */
  history(agentId: string): Promise<CorralEvent[]>;
  /** Someone is waiting: the maintainer may spawn for the demand. */
  demand(): void;
}

/**
 * The lease broker of one pool: acquire, release, renew and revoke, the idle queue and the
 * acquirers waiting for an agent. Each operation is one event on the agent it concerns (the
 * lease is a phase of its agent), so "an agent is in at most one lease" holds by optimistic
 * concurrency on that agent's subject; the idle queue and the reservations only avoid
 * contention, they decide nothing.
 */
export class LeaseBroker {
  private idle: string[] = [];
  private readonly reserved = new Set<string>();
  private readonly waiters: Waiter[] = [];
  private waiterSeq = 0;

  constructor(private readonly deps: BrokerDeps) {}

  get waiting(): number {
    return this.waiters.length;
  }

  /** An agent became idle (and may serve): the longest waiter gets it, or it joins the queue. */
  offerIdle(agent: PoolAgent): void {
    const waiter = this.waiters.shift();
    if (!waiter) {
      this.idle.push(agent.id);
      return;
    }
    this.reserved.add(agent.id);
    waiter.resolve(agent.id);
  }

  async acquire(opts: AcquireOptions): Promise<LeaseGrant> {
    const config = this.deps.openConfig();
    checkTtl(config, opts.ttlMs);
    const deadline = this.deps.scheduler.now() + opts.timeoutMs;
    for (;;) {
      const agentId = this.takeIdle() ?? (await this.waitForAgent(deadline, opts));
      try {
        const agent = this.deps.agents.get(agentId);
        if (agent?.phase !== "idle" || !agent.instanceId) continue;
        if (!this.deps.isRunning(config.runtime, agent.instanceId)) {
          await this.replaceUnhealthy(agent, opts.correlationId);
          continue;
        }
        const grant = await this.grant(agent, agent.instanceId, config, opts);
        if (grant) return grant;
        // Refused: the agent changed state under us (drained, failed); take another.
      } finally {
        this.reserved.delete(agentId);
      }
    }
  }

  /** The one event of an acquire. */
  private async grant(
    agent: PoolAgent,
    instanceId: string,
    config: PoolConfig,
    opts: AcquireOptions,
  ): Promise<LeaseGrant | undefined> {
    const at = this.deps.scheduler.now();
    const ttlMs = opts.ttlMs ?? config.leaseTtlMs;
    const leaseId = newLeaseId(agent.id, at);
    const expiresAt = at + ttlMs;
    const { token, hash } = newLeaseToken();
    const offered = await this.deps.host.offer(agentRef(agent.id), {
      type: "AgentLeased",
      data: { leaseId, poolId: this.deps.pool, holder: opts.holder ?? "", ttlMs, expiresAt, tokenHash: hash },
      at,
      correlationId: opts.correlationId,
    });
    if (!offered.accepted) return undefined;
    return {
      leaseId,
      leaseToken: token,
      pool: this.deps.pool,
      agentId: agent.id,
      generation: agent.generation,
      ports: agent.ports,
      expiresAt,
      ttlMs,
      runtime: config.runtime,
      instanceId,
    };
  }

  /** `correlationId`: the request's (src/api/service.ts), on the release event. */
  async release(
    leaseId: string,
    leaseToken: string,
    correlationId?: string,
  ): Promise<{ leaseId: string; agentId: string }> {
    const { agentId } = await this.held(leaseId, leaseToken);
    const offered = await this.deps.host.offer(agentRef(agentId), {
      type: "AgentReleased",
      data: { leaseId },
      correlationId,
    });
    if (!offered.accepted) throw await this.notHeld(leaseId, agentId);
    return { leaseId, agentId };
  }

  /** Extends a lease to `ttlMs` (default: its own TTL) from now; a renewal must extend it. */
  async renew(
    leaseId: string,
    leaseToken: string,
    ttlMs?: number,
    correlationId?: string,
  ): Promise<{ leaseId: string; expiresAt: number }> {
    const { agentId, lease } = await this.held(leaseId, leaseToken);
    if (ttlMs !== undefined) checkTtl(this.deps.openConfig(), ttlMs);
    const expiresAt = this.deps.scheduler.now() + (ttlMs ?? lease.ttlMs);
    if (expiresAt <= lease.expiresAt) {
      throw new PoolError(
        "lease_not_extended",
        `renewing lease ${leaseId} for ${ttlMs ?? lease.ttlMs} ms would end it at ` +
          `${new Date(expiresAt).toISOString()}, before its current end ` +
          `${new Date(lease.expiresAt).toISOString()}: a renewal must extend the lease`,
      );
    }
    const offered = await this.deps.host.offer(agentRef(agentId), {
      type: "AgentLeaseRenewed",
      data: { leaseId, expiresAt },
      correlationId,
    });
    if (!offered.accepted) throw await this.notHeld(leaseId, agentId);
    return { leaseId, expiresAt };
  }

  /** Ends every lease of the pool (it is closing); agents that moved on meanwhile are skipped. */
  async revokeAll(reason: string, cause?: CorralEvent): Promise<number> {
    const held = this.deps.agents.all().filter((a) => a.lease !== null);
    const offers = await Promise.all(
      held.map((a) =>
        this.deps.host.offer(agentRef(a.id), {
          type: "AgentLeaseRevoked",
          data: { leaseId: (a.lease as Lease).id, reason },
          ...causedBy(cause),
        }),
      ),
    );
    return offers.filter((o) => o.accepted).length;
  }

  rejectWaiters(err: Error): void {
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  /**
   * The lease as its agent holds it now, if `leaseToken` is its token; else the error that says
   * why not. A lease granted without a token hash cannot be proven: it ends by expiry or revoke.
   */
  private async held(leaseId: string, leaseToken: string): Promise<{ agentId: string; lease: Lease }> {
    const agentId = agentOfLease(leaseId);
    if (!agentId) throw new PoolError("bad_request", `${JSON.stringify(leaseId)} is not a lease id`);
    const lease = this.deps.agents.get(agentId)?.lease;
    if (lease?.id !== leaseId) throw await this.notHeld(leaseId, agentId);
    if (!leaseTokenMatches(leaseToken, lease.tokenHash)) throw new LeaseTokenInvalidError(leaseId);
    return { agentId, lease };
  }

  private async notHeld(leaseId: string, agentId: string): Promise<PoolError> {
    const view = asAgentView(await this.deps.host.get(agentRef(agentId)));
    const pool = view.context.poolId;
    if (view.seq > 0 && pool !== this.deps.pool) {
      return new PoolError("wrong_pool", `lease ${leaseId} belongs to pool ${pool}, not ${this.deps.pool}`);
    }
    const outcome = view.seq === 0 ? undefined : leaseOutcome(await this.deps.history(agentId), leaseId);
    return new LeaseNotActiveError(leaseId, outcome ?? "new");
  }

  /** Found by an acquire's health check: in that request's chain (`correlationId`). */
  private async replaceUnhealthy(agent: PoolAgent, correlationId?: string): Promise<void> {
    this.deps.log.warn({ pool: this.deps.pool, agent: agent.id }, "idle agent is not running; replacing it");
    await this.deps.host.offer(agentRef(agent.id), {
      type: "AgentFailed",
      data: { phase: "ready", code: "unhealthy", message: "the runtime says the instance is not running" },
      correlationId,
    });
  }

  private takeIdle(): string | undefined {
    while (this.idle.length > 0) {
      const id = this.idle.shift() as string;
      if (this.deps.agents.get(id)?.phase === "idle" && !this.reserved.has(id)) {
        this.reserved.add(id);
        return id;
      }
    }
    return undefined;
  }

  private waitForAgent(deadline: number, opts: AcquireOptions): Promise<string> {
    this.deps.openConfig();
    const { scheduler } = this.deps;
    if (deadline <= scheduler.now())
      return Promise.reject(new AcquireTimeoutError(this.deps.pool, opts.timeoutMs));
    return new Promise<string>((resolve, reject) => {
      const key = `acquire:${this.deps.pool}:${++this.waiterSeq}`;
      const settle = () => {
        scheduler.disarm(key);
        opts.signal?.removeEventListener("abort", onAbort);
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
      };
      const waiter: Waiter = {
        key,
        resolve: (id) => {
          settle();
          resolve(id);
        },
        reject: (err) => {
          settle();
          reject(err);
        },
      };
      const onAbort = () => waiter.reject(new AcquireCancelledError(this.deps.pool));
      if (opts.signal?.aborted) return onAbort();
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      scheduler.arm(key, deadline, () =>
        waiter.reject(new AcquireTimeoutError(this.deps.pool, opts.timeoutMs)),
      );
      this.waiters.push(waiter);
      this.deps.demand();
    });
  }
}

/** A pool caps the TTL a client may ask for (maxLeaseTtl): no lease may hold an agent for a day. */
function checkTtl(config: PoolConfig, ttlMs: number | undefined): void {
  const max = config.maxLeaseTtlMs ?? DEFAULT_MAX_LEASE_TTL_MS;
  if (ttlMs !== undefined && ttlMs > max) {
    throw new PoolError(
      "bad_request",
      `ttlMs: ${ttlMs} ms is longer than the pool's maxLeaseTtl of ${max} ms`,
    );
  }
}

function agentRef(id: string): AggregateRef {
  return { kind: "agent", id };
}
