import type { Logger } from "pino";
import { type AgentContext, type AgentPhase, agentPhase } from "../../machines/agent.ts";
import type { LeaseContext } from "../../machines/lease.ts";
import type { PoolContext } from "../../machines/pool.ts";
import {
  type AgentSummary,
  type Decision,
  limitReached,
  planPool,
  renewal,
} from "../../machines/pool-plan.ts";
import type { CorralEvent } from "../events/catalogue.ts";
import type { AggregateRef } from "../events/envelope.ts";
import { uuidv7 } from "../events/id.ts";
import type { PoolConfig } from "../events/pool.ts";
import type { Runtime } from "../runtime/types.ts";
import type { ActorHost, ActorView } from "./actor-host.ts";
import {
  AcquireCancelledError,
  AcquireTimeoutError,
  LeaseNotActiveError,
  PoolClosedError,
  PoolError,
  RejectedInputError,
} from "./errors.ts";

export interface AcquireOptions {
  timeoutMs: number;
  holder?: string;
  ttlMs?: number;
  signal?: AbortSignal;
}

export interface LeaseGrant {
  leaseId: string;
  pool: string;
  agentId: string;
  generation: number;
  ports: number[];
  expiresAt: number;
  ttlMs: number;
  runtime: "docker" | "process";
  instanceId: string;
}

interface AgentEntry extends AgentSummary {
  leasesServed: number;
  generation: number;
  instanceId: string | null;
  ports: number[];
  leaseId: string | null;
}

interface Waiter {
  resolve(agentId: string): void;
  reject(err: Error): void;
}

const SPAWN_BACKOFF_START_MS = 500;
const SPAWN_BACKOFF_MAX_MS = 30_000;

export interface SupervisorDeps {
  name: string;
  host: ActorHost;
  runtimeFor(kind: PoolConfig["runtime"]): Runtime;
  clock: () => number;
  log: Logger;
}

/**
 * The live side of one pool: an in-memory view of its agents and leases (kept current from the
 * events the host stores), the idle queue and the waiting acquirers, and a maintenance loop that
 * asks `planPool` what to do. Every decision is recorded as a pool event before anything acts on
 * it; acquire and release touch only the agent and the lease, never a pool-wide record.
 */
export class PoolSupervisor {
  readonly name: string;
  state: "new" | "open" | "closing" | "closed" = "new";
  config: PoolConfig | null = null;
  private readonly host: ActorHost;
  private readonly deps: SupervisorDeps;
  private readonly agents = new Map<string, AgentEntry>();
  private readonly leases = new Map<string, { agentId: string; expiresAt: number }>();
  private idle: string[] = [];
  private readonly reserved = new Set<string>();
  private readonly waiters: Waiter[] = [];
  private spawnPausedUntil = 0;
  private spawnBackoffMs = SPAWN_BACKOFF_START_MS;
  private timer: NodeJS.Timeout | undefined;
  private planning = false;
  private planAgain = false;
  private readonly closedWaiters: (() => void)[] = [];

  constructor(deps: SupervisorDeps) {
    this.deps = deps;
    this.name = deps.name;
    this.host = deps.host;
  }

  private get ref(): AggregateRef {
    return { kind: "pool", id: this.name };
  }

  // --- views, kept current by the control plane ------------------------------------------------

  observePool(view: ActorView): void {
    const ctx = view.context as PoolContext;
    this.config = ctx.config;
    const before = this.state;
    this.state = view.value as typeof this.state;
    if (this.state !== "open") this.rejectWaiters(new PoolClosedError(this.name));
    if (this.state === "closed") for (const w of this.closedWaiters.splice(0)) w();
    if (before !== this.state) this.kick();
  }

  observeAgent(view: ActorView, event?: CorralEvent): void {
    const ctx = view.context as AgentContext;
    const id = view.ref.id;
    const phase: AgentPhase = view.status === "done" ? (view.value as AgentPhase) : agentPhase(view.value);
    const prev = this.agents.get(id);
    const at = event?.at ?? this.deps.clock();
    const entry: AgentEntry = {
      id,
      phase,
      generation: ctx.generation,
      instanceId: ctx.instanceId,
      ports: ctx.ports,
      leaseId: ctx.leaseId,
      leasesServed: ctx.leasesServed,
      generationLeases: ctx.generationLeases,
      recycles: ctx.recycles,
      readyAt: ctx.readyAt,
      idleSince: phase === "idle" ? (prev?.phase === "idle" ? prev.idleSince : at) : null,
    };
    if (phase === "stopped" || phase === "failed") this.agents.delete(id);
    else this.agents.set(id, entry);

    if (phase === "failed" && ctx.error) this.onFailed(id, prev, ctx, at);
    if (phase === "idle" && prev?.phase !== "idle") this.onIdle(entry);
    if (prev?.phase === "starting" && phase === "idle") this.spawnBackoffMs = SPAWN_BACKOFF_START_MS;
    if (phase !== prev?.phase) this.kick();
    if (this.state === "closing" && this.liveCount() === 0) this.finishClose();
  }

  observeLease(view: ActorView): void {
    const ctx = view.context as LeaseContext;
    if (view.value === "granted")
      this.leases.set(view.ref.id, { agentId: ctx.agentId, expiresAt: ctx.expiresAt });
    else this.leases.delete(view.ref.id);
  }

  // --- acquire / release / renew ---------------------------------------------------------------

  async acquire(opts: AcquireOptions): Promise<LeaseGrant> {
    const config = this.openConfig();
    const started = this.deps.clock();
    const deadline = started + opts.timeoutMs;
    for (;;) {
      const agentId = this.takeIdle() ?? (await this.waitForAgent(deadline, opts));
      const agent = this.agents.get(agentId);
      if (agent?.phase !== "idle" || !agent.instanceId) {
        this.reserved.delete(agentId);
        continue;
      }
      // Health check on grant: the runtime's live view says the instance runs.
      if (!this.deps.runtimeFor(config.runtime).isRunning(agent.instanceId)) {
        this.reserved.delete(agentId);
        this.deps.log.warn({ pool: this.name, agent: agentId }, "idle agent is not running; replacing it");
        this.failAgent(agentId, "unhealthy", "the runtime says the instance is not running");
        continue;
      }
      try {
        return await this.grant(agent, config, opts);
      } catch (err) {
        if (err instanceof RejectedInputError) continue; // it changed state under us; take another
        throw err;
      } finally {
        this.reserved.delete(agentId);
      }
    }
  }

  private async grant(agent: AgentEntry, config: PoolConfig, opts: AcquireOptions): Promise<LeaseGrant> {
    const at = this.deps.clock();
    const ttlMs = opts.ttlMs ?? config.leaseTtlMs;
    const leaseId = uuidv7(at);
    const expiresAt = at + ttlMs;
    const agentRef: AggregateRef = { kind: "agent", id: agent.id };
    const leaseRef: AggregateRef = { kind: "lease", id: leaseId };
    // Both facts are stored before the client hears of its lease; in parallel, to halve latency.
    const [leased, granted] = await Promise.allSettled([
      this.host.send(agentRef, { type: "AgentLeased", data: { leaseId }, at }),
      this.host.send(leaseRef, {
        type: "LeaseGranted",
        data: { poolId: this.name, agentId: agent.id, holder: opts.holder ?? "", ttlMs, expiresAt },
        at,
      }),
    ]);
    if (leased.status === "fulfilled" && granted.status === "fulfilled") {
      return {
        leaseId,
        pool: this.name,
        agentId: agent.id,
        generation: agent.generation,
        ports: agent.ports,
        expiresAt,
        ttlMs,
        runtime: config.runtime,
        instanceId: agent.instanceId as string,
      };
    }
    // Undo whichever half was stored, so no agent is held by a lease nobody has.
    if (granted.status === "fulfilled") {
      await this.host
        .send(leaseRef, { type: "LeaseRevoked", data: { reason: "agent unavailable" } })
        .catch(() => {});
    }
    if (leased.status === "fulfilled") {
      await this.host.send(agentRef, { type: "AgentReleased", data: { leaseId } }).catch(() => {});
    }
    throw leased.status === "rejected" ? leased.reason : (granted as PromiseRejectedResult).reason;
  }

  async release(leaseId: string): Promise<{ leaseId: string; agentId: string }> {
    const lease = await this.leaseOfThisPool(leaseId);
    const agentId = (lease.context as LeaseContext).agentId;
    await Promise.all([
      this.host.send({ kind: "lease", id: leaseId }, { type: "LeaseReleased", data: {} }),
      this.host
        .send({ kind: "agent", id: agentId }, { type: "AgentReleased", data: { leaseId } })
        .catch((err) => {
          // The agent failed or was recycled meanwhile: the lease still ends.
          if (!(err instanceof RejectedInputError)) throw err;
        }),
    ]);
    return { leaseId, agentId };
  }

  async renew(leaseId: string, ttlMs?: number): Promise<{ leaseId: string; expiresAt: number }> {
    const lease = await this.leaseOfThisPool(leaseId);
    const ctx = lease.context as LeaseContext;
    const expiresAt = this.deps.clock() + (ttlMs ?? ctx.ttlMs);
    await this.host.send({ kind: "lease", id: leaseId }, { type: "LeaseRenewed", data: { expiresAt } });
    return { leaseId, expiresAt };
  }

  private async leaseOfThisPool(leaseId: string): Promise<ActorView> {
    const lease = await this.host.get({ kind: "lease", id: leaseId });
    const pool = (lease.context as LeaseContext).poolId;
    if (lease.value !== "new" && pool !== this.name) {
      throw new PoolError("wrong_pool", `lease ${leaseId} belongs to pool ${pool}, not ${this.name}`);
    }
    if (lease.value !== "granted") throw new LeaseNotActiveError(leaseId, String(lease.value));
    return lease;
  }

  /** A lease ran out: its holder may have left the agent in any state, so recycle it. */
  async leaseExpired(agentId: string): Promise<void> {
    const agent = this.agents.get(agentId);
    if (!agent || !this.config) return;
    await this.execute(renewal(this.config, agent, "lease-expired"));
  }

  // --- lifecycle ------------------------------------------------------------------------------

  start(): void {
    const every = this.config?.maintenanceIntervalMs ?? 1_000;
    this.timer = setInterval(() => this.kick(), every);
    this.timer.unref();
    this.kick();
  }

  /** Stops supervising (the agents keep running; the next control plane adopts them). */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.rejectWaiters(
      new PoolError("shutting_down", `the control plane is shutting down (pool ${this.name})`),
    );
  }

  /** No new leases; agents are drained and stopped. Resolves when the pool is closed. */
  async close(opts: { reason?: string; revokeLeases?: boolean } = {}): Promise<void> {
    if (this.state === "closed") return;
    const closed = new Promise<void>((r) => this.closedWaiters.push(r));
    if (this.state === "open") {
      await this.host.send(this.ref, {
        type: "PoolCloseRequested",
        data: { reason: opts.reason ?? "requested" },
      });
    }
    if (opts.revokeLeases) {
      await Promise.all(
        [...this.leases.entries()].map(async ([leaseId, l]) => {
          await this.host
            .send({ kind: "lease", id: leaseId }, { type: "LeaseRevoked", data: { reason: "pool closed" } })
            .catch(() => {});
          await this.host
            .send({ kind: "agent", id: l.agentId }, { type: "AgentReleased", data: { leaseId } })
            .catch(() => {});
        }),
      );
    }
    this.kick();
    if (this.liveCount() === 0) this.finishClose();
    await closed;
  }

  status() {
    const counts: Record<string, number> = {};
    for (const a of this.agents.values()) counts[a.phase] = (counts[a.phase] ?? 0) + 1;
    return {
      pool: this.name,
      state: this.state,
      waiters: this.waiters.length,
      agents: [...this.agents.values()].map((a) => ({ ...a })),
      counts,
      spawnPausedUntil: this.spawnPausedUntil > this.deps.clock() ? this.spawnPausedUntil : null,
    };
  }

  // --- maintenance ----------------------------------------------------------------------------

  /** Plans now (coalesced: one plan at a time, one more if something changed meanwhile). */
  kick(): void {
    if (this.planning) {
      this.planAgain = true;
      return;
    }
    if (!this.config || this.state === "new" || !this.timer) return;
    this.planning = true;
    void (async () => {
      try {
        do {
          this.planAgain = false;
          await this.maintain();
        } while (this.planAgain);
      } catch (err) {
        this.deps.log.error({ err, pool: this.name }, "pool maintenance failed");
      } finally {
        this.planning = false;
      }
    })();
  }

  private async maintain(): Promise<void> {
    if (!this.config) return;
    const decisions = planPool({
      config: this.config,
      state: this.state === "new" ? "closed" : this.state,
      agents: [...this.agents.values()],
      waiters: this.waiters.length,
      now: this.deps.clock(),
      spawnPausedUntil: this.spawnPausedUntil,
    });
    await Promise.all(decisions.map((d) => this.execute(d)));
  }

  private async execute(d: Decision): Promise<void> {
    switch (d.type) {
      case "spawn": {
        const agentId = `${this.name}-${uuidv7(this.deps.clock())}`;
        await this.record(
          { type: "PoolAgentSpawned", data: { agentId, reason: d.reason } },
          agentId,
          "starting",
        );
        return;
      }
      case "retire":
        await this.record(
          { type: "PoolAgentRetired", data: { agentId: d.agentId, reason: d.reason } },
          d.agentId,
          "draining",
        );
        return;
      case "recycle":
        await this.record(
          { type: "PoolAgentRecycled", data: { agentId: d.agentId, reason: d.reason } },
          d.agentId,
          "recycling",
        );
        return;
    }
  }

  /**
   * Records a decision on the pool. The agent's entry is updated at once (placeholder for a new
   * one) so the next plan, which may run before the agent's own event lands, does not decide twice.
   */
  private async record(
    input:
      | { type: "PoolAgentSpawned"; data: { agentId: string; reason: "min" | "warm" | "demand" | "replace" } }
      | {
          type: "PoolAgentRetired";
          data: {
            agentId: string;
            reason: "idle-timeout" | "scale-down" | "max-recycles" | "closing" | "unhealthy";
          };
        }
      | {
          type: "PoolAgentRecycled";
          data: { agentId: string; reason: "max-leases" | "max-age" | "lease-expired" | "unhealthy" };
        },
    agentId: string,
    phase: AgentPhase,
  ): Promise<void> {
    const prev = this.agents.get(agentId);
    this.agents.set(agentId, {
      ...(prev ?? {
        id: agentId,
        generation: 0,
        instanceId: null,
        ports: [],
        leaseId: null,
        leasesServed: 0,
        generationLeases: 0,
        recycles: 0,
        readyAt: null,
      }),
      phase,
      idleSince: null,
    });
    try {
      await this.host.send(this.ref, input);
    } catch (err) {
      if (prev) this.agents.set(agentId, prev);
      else this.agents.delete(agentId);
      if (!(err instanceof RejectedInputError)) throw err;
    }
  }

  // --- internals ------------------------------------------------------------------------------

  private onIdle(entry: AgentEntry): void {
    if (this.state !== "open" || !this.config) return; // closing: the plan retires it
    const limit = limitReached(this.config, entry, this.deps.clock());
    if (limit) {
      void this.execute(renewal(this.config, entry, limit)).catch((err) =>
        this.deps.log.error({ err, agent: entry.id }, "recycle decision failed"),
      );
      return;
    }
    const waiter = this.waiters.shift();
    if (waiter) {
      this.reserved.add(entry.id);
      waiter.resolve(entry.id);
    } else {
      this.idle.push(entry.id);
    }
  }

  private onFailed(id: string, prev: AgentEntry | undefined, ctx: AgentContext, at: number): void {
    const error = ctx.error as NonNullable<AgentContext["error"]>;
    this.deps.log.warn({ pool: this.name, agent: id, ...error }, "agent failed");
    // A lease on a failed agent is over.
    for (const [leaseId, l] of this.leases) {
      if (l.agentId !== id) continue;
      void this.host
        .send(
          { kind: "lease", id: leaseId },
          { type: "LeaseRevoked", data: { reason: `agent failed: ${error.code}` } },
        )
        .catch(() => {});
    }
    if (prev?.phase === "starting" || error.phase !== "ready") {
      // A spawn that failed: record it, and back off before the next one.
      this.spawnPausedUntil = at + this.spawnBackoffMs;
      this.spawnBackoffMs = Math.min(this.spawnBackoffMs * 2, SPAWN_BACKOFF_MAX_MS);
      setTimeout(() => this.kick(), this.spawnBackoffMs).unref();
      void this.host
        .send(this.ref, {
          type: "PoolSpawnFailed",
          data: { agentId: id, code: error.code, message: error.message },
        })
        .catch(() => {});
    }
  }

  private failAgent(agentId: string, code: string, message: string): void {
    void this.host
      .send({ kind: "agent", id: agentId }, { type: "AgentFailed", data: { phase: "ready", code, message } })
      .catch((err) => {
        if (!(err instanceof RejectedInputError))
          this.deps.log.error({ err, agent: agentId }, "could not record agent failure");
      });
  }

  private takeIdle(): string | undefined {
    while (this.idle.length > 0) {
      const id = this.idle.shift() as string;
      const a = this.agents.get(id);
      if (a?.phase === "idle" && !this.reserved.has(id)) {
        this.reserved.add(id);
        return id;
      }
    }
    return undefined;
  }

  private waitForAgent(deadline: number, opts: AcquireOptions): Promise<string> {
    this.openConfig();
    const remaining = deadline - this.deps.clock();
    if (remaining <= 0) return Promise.reject(new AcquireTimeoutError(this.name, opts.timeoutMs));
    return new Promise<string>((resolve, reject) => {
      const waiter: Waiter = {
        resolve: (id) => {
          cleanup();
          resolve(id);
        },
        reject: (err) => {
          cleanup();
          reject(err);
        },
      };
      const drop = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
      };
      const timer = setTimeout(() => {
        drop();
        waiter.reject(new AcquireTimeoutError(this.name, opts.timeoutMs));
      }, remaining);
      const onAbort = () => {
        drop();
        waiter.reject(new AcquireCancelledError(this.name));
      };
      const cleanup = () => {
        clearTimeout(timer);
        opts.signal?.removeEventListener("abort", onAbort);
      };
      if (opts.signal?.aborted) return onAbort();
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(waiter);
      this.kick(); // demand may call for a spawn
    });
  }

  private rejectWaiters(err: Error): void {
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  private openConfig(): PoolConfig {
    if (this.state !== "open" || !this.config) throw new PoolClosedError(this.name);
    return this.config;
  }

  private liveCount(): number {
    let n = 0;
    for (const a of this.agents.values()) if (a.phase !== "stopped" && a.phase !== "failed") n++;
    return n;
  }

  private finishClose(): void {
    if (this.state !== "closing") return;
    void this.host.send(this.ref, { type: "PoolClosed", data: {} }).catch((err) => {
      if (!(err instanceof RejectedInputError))
        this.deps.log.error({ err, pool: this.name }, "could not record pool closed");
    });
  }
}
