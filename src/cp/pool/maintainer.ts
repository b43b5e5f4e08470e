import type { Logger } from "pino";
import type { AgentPhase } from "../../../machines/agent.ts";
import type { PoolContext } from "../../../machines/pool.ts";
import { type Decision, nextFailureStreak, planPool, spawnBackoffMs } from "../../../machines/pool-plan.ts";
import type { CorralEvent } from "../../events/catalogue.ts";
import type { AggregateRef } from "../../events/envelope.ts";
import { uuidv7 } from "../../events/id.ts";
import type { ActorHost, Input } from "../actor-host.ts";
import { type Cause, causedBy } from "../caused-by.ts";
import type { Scheduler } from "../scheduler.ts";
import type { PoolAgents } from "./agents.ts";

/** The pool events the maintainer records itself (and the reconciler's removals). */
const OWN_DECISIONS: ReadonlySet<string> = new Set([
  "PoolAgentSpawned",
  "PoolAgentRetired",
  "PoolAgentRecycled",
  "PoolOrphanRemoved",
]);

function causeOf(e: CorralEvent): Cause {
  return { id: e.id, correlationId: e.correlationId };
}

export interface MaintainerDeps {
  pool: string;
  host: ActorHost;
  agents: PoolAgents;
  scheduler: Scheduler;
  log: Logger;
  /** The pool's own state as its events made it (null before its first event). */
  poolState(): { value: "new" | "open" | "closing" | "closed"; context: PoolContext } | null;
  /** Acquirers waiting for an agent (demand). */
  waiting(): number;
}

/**
 * Keeps one pool at its targets: asks `planPool` (machines/pool-plan.ts) what to do and records
 * each decision on the pool — spawn, retire, recycle — before anything acts on it (the pool's
 * effects turn them into inputs for the agents). It plans when something changes, at every
 * maintenance tick, and when a spawn backoff ends; both deadlines go through the scheduler.
 * Everything a plan reads is rebuilt by a replay: the pool's context (config, backoff) and its
 * agents' states.
 */
export class Maintainer {
  private running = false;
  private planning = false;
  private planAgain = false;
  /** When the last plan began (a large pool spaces its plans: `kick`). */
  private lastPlanAt = Number.NEGATIVE_INFINITY;
  /** Spawn failures are recorded one at a time: each one's streak builds on the last. */
  private failures: Promise<void> = Promise.resolve();
  /**
   * What each decision names as its cause (`corral trace`): a spawn the last event that made the
   * pool plan (its config, a failure, an agent changing phase), a retire or recycle its agent's
   * last event, a retire for closing the pool's.
   */
  private trigger: Cause | undefined;
  private poolCause: Cause | undefined;
  private readonly agentCauses = new Map<string, Cause>();

  constructor(private readonly deps: MaintainerDeps) {}

  private get ref(): AggregateRef {
    return { kind: "pool", id: this.deps.pool };
  }

  private get tickKey(): string {
    return `maintain:${this.deps.pool}`;
  }

  private get planKey(): string {
    return `plan:${this.deps.pool}`;
  }

  private get retryKey(): string {
    return `spawn-retry:${this.deps.pool}`;
  }

  start(): void {
    this.running = true;
    this.kick();
  }

  stop(): void {
    this.running = false;
    this.deps.scheduler.disarm(this.planKey);
    this.deps.scheduler.disarm(this.tickKey);
    this.deps.scheduler.disarm(this.retryKey);
  }

  /**
   * Plans as soon as the scheduler gets to it, coalesced: every change that arrives before then
   * (a burst of acquires and releases) makes one plan, and one plan runs at a time.
   */
  kick(): void {
    if (!this.running) return;
    if (this.planning) {
      this.planAgain = true;
      return;
    }
    const { scheduler } = this.deps;
    if (scheduler.armedAt(this.planKey) !== undefined) return;
    // A plan reads every agent (~0.1 ms per 1,000): a pool of thousands plans at most once per
    // ms per 1,000 agents, not once per change (bench/scale-agents.ts measures acquire and spawn).
    const spacing = Math.floor(this.deps.agents.size / 1_000);
    scheduler.arm(this.planKey, Math.max(scheduler.now(), this.lastPlanAt + spacing), () => this.plan());
  }

  private plan(): void {
    if (!this.running || !this.deps.poolState()?.context.config) return;
    this.planning = true;
    this.planAgain = false;
    this.lastPlanAt = this.deps.scheduler.now();
    void this.maintain()
      .catch((err: unknown) => this.deps.log.error({ err, pool: this.deps.pool }, "pool maintenance failed"))
      .finally(() => {
        this.planning = false;
        this.armTick();
        if (this.planAgain) this.kick();
      });
  }

  /**
   * An event of the pool was stored: what a spawn or a retire for closing follows next. The
   * maintainer's own decisions are not: a spawn is never caused by the spawn before it.
   */
  poolEvent(event: CorralEvent): void {
    if (OWN_DECISIONS.has(event.type)) return;
    this.trigger = causeOf(event);
    this.poolCause = this.trigger;
  }

  /** An event of one of the pool's agents was stored; `replans`: it changed the agent's phase. */
  agentEvent(agentId: string, event: CorralEvent, at: { ended: boolean; replans: boolean }): void {
    const cause = causeOf(event);
    if (at.replans) this.trigger = cause;
    if (at.ended) this.agentCauses.delete(agentId);
    else this.agentCauses.set(agentId, cause);
  }

  /** The pool's record changed: a spawn backoff may have begun, so plan again when it ends. */
  poolChanged(): void {
    const paused = this.deps.poolState()?.context.spawnPausedUntil ?? 0;
    if (this.running && paused > this.deps.scheduler.now()) {
      this.deps.scheduler.arm(this.retryKey, paused, () => this.kick());
    }
    this.kick();
  }

  /**
   * A spawn failed: record it with the backoff it causes. The streak counts failures since an
   * agent last became ready, so a replay of the pool's and its agents' events gives the same.
   */
  spawnFailed(
    agentId: string,
    error: { code: string; message: string },
    at: number,
    cause?: Cause,
  ): Promise<void> {
    const record = async () => {
      const ctx = this.deps.poolState()?.context;
      if (!ctx) return;
      const streak = nextFailureStreak(
        { streak: ctx.failureStreak, at: ctx.lastSpawnFailureAt },
        this.deps.agents.all(),
      );
      await this.deps.host.offer(this.ref, {
        type: "PoolSpawnFailed",
        data: {
          agentId,
          code: error.code,
          message: error.message,
          streak,
          retryAt: at + spawnBackoffMs(streak),
        },
        at,
        ...causedBy(cause), // the agent's failure: `corral trace` follows the chain there
      });
    };
    // After one that could not be recorded (its caller logs it), the next still runs.
    this.failures = this.failures.then(record, record);
    return this.failures;
  }

  private armTick(): void {
    const config = this.deps.poolState()?.context.config;
    if (!this.running || !config) return;
    this.deps.scheduler.arm(this.tickKey, this.deps.scheduler.now() + config.maintenanceIntervalMs, () =>
      this.kick(),
    );
  }

  private async maintain(): Promise<void> {
    const pool = this.deps.poolState();
    if (!pool?.context.config || pool.value === "new") return;
    const now = this.deps.scheduler.now();
    // A spawn recorded whose agent never reported (its effect failed) must not count forever.
    this.deps.agents.dropUnreported(now - pool.context.config.startTimeoutMs);
    const decisions = planPool({
      config: pool.context.config,
      state: pool.value,
      agents: this.deps.agents.all(),
      waiters: this.deps.waiting(),
      now,
      spawnPausedUntil: pool.context.spawnPausedUntil,
    });
    await Promise.all(decisions.map((d) => this.execute(d)));
  }

  /** Records a decision; its agent counts in the decided phase until it reports itself. */
  private async execute(d: Decision): Promise<void> {
    switch (d.type) {
      case "spawn": {
        const agentId = `${this.deps.pool}-${uuidv7(this.deps.scheduler.now())}`;
        return this.record(
          { type: "PoolAgentSpawned", data: { agentId, reason: d.reason }, ...causedBy(this.trigger) },
          agentId,
          "starting",
        );
      }
      case "retire": {
        const cause = d.reason === "closing" ? this.poolCause : this.agentCauses.get(d.agentId);
        return this.record(
          {
            type: "PoolAgentRetired",
            data: { agentId: d.agentId, reason: d.reason },
            ...causedBy(cause ?? this.trigger),
          },
          d.agentId,
          "draining",
        );
      }
      case "recycle":
        return this.record(
          {
            type: "PoolAgentRecycled",
            data: { agentId: d.agentId, reason: d.reason },
            ...causedBy(this.agentCauses.get(d.agentId) ?? this.trigger),
          },
          d.agentId,
          "recycling",
        );
    }
  }

  private async record(input: Input, agentId: string, phase: AgentPhase): Promise<void> {
    const prev = this.deps.agents.expect(agentId, phase, this.deps.scheduler.now());
    try {
      const offered = await this.deps.host.offer(this.ref, input);
      if (!offered.accepted) this.deps.agents.restore(agentId, prev);
    } catch (err) {
      this.deps.agents.restore(agentId, prev);
      throw err;
    }
  }
}
