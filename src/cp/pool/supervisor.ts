import type { Logger } from "pino";
import type { PoolContext } from "../../../machines/pool.ts";
import { limitReached } from "../../../machines/pool-plan.ts";
import type { CorralEvent } from "../../events/catalogue.ts";
import type { PoolConfig } from "../../events/pool.ts";
import type { Runtime } from "../../runtime/types.ts";
import type { ActorHost } from "../actor-host.ts";
import { causedBy } from "../caused-by.ts";
import { PoolClosedError, PoolError } from "../errors.ts";
import type { Scheduler } from "../scheduler.ts";
import type { AgentView, PoolView } from "../views.ts";
import { PoolAgents } from "./agents.ts";
import { type AcquireOptions, LeaseBroker, type LeaseGrant } from "./broker.ts";
import { Maintainer } from "./maintainer.ts";

export type { AcquireOptions, LeaseGrant } from "./broker.ts";

export interface SupervisorDeps {
  name: string;
  host: ActorHost;
  runtimeFor(kind: PoolConfig["runtime"]): Runtime;
  /** An agent's stored events (to say how a lease that is no longer held ended). */
  history(agentId: string): Promise<CorralEvent[]>;
  scheduler: Scheduler;
  log: Logger;
}

type PoolState = "new" | "open" | "closing" | "closed";

/**
 * The live side of one pool, in three parts: its agents as their events made them (agents.ts),
 * the lease broker (broker.ts: acquire / release / renew / revoke and the waiters), and the
 * maintainer (maintainer.ts: plan → spawn / retire / recycle, backoff, ticks). This class feeds
 * them the events the actor host stores and closes the pool. It owns no decision: each one is an
 * event, and a replay of the stream rebuilds everything they read.
 */
export class PoolSupervisor {
  readonly name: string;
  private pool: { value: PoolState; context: PoolContext } | null = null;
  private readonly agents = new PoolAgents();
  private readonly broker: LeaseBroker;
  private readonly maintainer: Maintainer;
  private readonly closedWaiters: (() => void)[] = [];

  constructor(private readonly deps: SupervisorDeps) {
    this.name = deps.name;
    const common = {
      pool: deps.name,
      host: deps.host,
      agents: this.agents,
      scheduler: deps.scheduler,
      log: deps.log,
    };
    this.broker = new LeaseBroker({
      ...common,
      openConfig: () => this.openConfig(),
      isRunning: (runtime, instanceId) => deps.runtimeFor(runtime).isRunning(instanceId),
      history: deps.history,
      demand: () => this.maintainer.kick(),
    });
    this.maintainer = new Maintainer({
      ...common,
      poolState: () => this.pool,
      waiting: () => this.broker.waiting,
    });
  }

  get state(): PoolState {
    return this.pool?.value ?? "new";
  }

  get config(): PoolConfig | null {
    return this.pool?.context.config ?? null;
  }

  // --- the host's stored events, routed here by the control plane ---------------------------------

  observePool(view: PoolView, event?: CorralEvent): void {
    if (event) this.maintainer.poolEvent(event);
    const before = this.state;
    this.pool = { value: view.value as PoolState, context: view.context };
    if (this.state !== "open") this.broker.rejectWaiters(new PoolClosedError(this.name));
    if (this.state === "closed") for (const w of this.closedWaiters.splice(0)) w();
    if (before !== this.state) this.maintainer.kick();
    this.maintainer.poolChanged();
  }

  observeAgent(view: AgentView, event?: CorralEvent): void {
    const { prev, next, phase } = this.agents.observe(view);
    if (event) {
      const at = { ended: next === undefined, replans: phase !== prev?.phase };
      this.maintainer.agentEvent(view.ref.id, event, at);
    }
    if (phase === "failed") this.onFailed(view, prev?.phase, event);
    if (next?.phase === "idle" && prev?.phase !== "idle") {
      const config = this.config;
      // An agent past a recycle limit is renewed by the next plan, not handed out.
      if (this.state === "open" && config && !limitReached(config, next, this.deps.scheduler.now())) {
        this.broker.offerIdle(next);
      }
    }
    if (phase !== prev?.phase) this.maintainer.kick();
    if (this.state === "closing" && this.agents.size === 0) this.finishClose(event);
  }

  // --- the API's operations ---------------------------------------------------------------------

  acquire(opts: AcquireOptions): Promise<LeaseGrant> {
    return this.broker.acquire(opts);
  }

  release(
    leaseId: string,
    leaseToken: string,
    correlationId?: string,
  ): Promise<{ leaseId: string; agentId: string }> {
    return this.broker.release(leaseId, leaseToken, correlationId);
  }

  renew(
    leaseId: string,
    leaseToken: string,
    ttlMs?: number,
    correlationId?: string,
  ): Promise<{ leaseId: string; expiresAt: number }> {
    return this.broker.renew(leaseId, leaseToken, ttlMs, correlationId);
  }

  // --- lifecycle --------------------------------------------------------------------------------

  start(): void {
    this.maintainer.start();
  }

  /** Stops supervising (the agents keep running; the next control plane adopts them). */
  stop(): void {
    this.maintainer.stop();
    this.broker.rejectWaiters(
      new PoolError("shutting_down", `the control plane is shutting down (pool ${this.name})`),
    );
  }

  /** No new leases; agents are drained and stopped. Resolves when the pool is closed. */
  /** `correlationId`: the request's (src/api/service.ts), on PoolCloseRequested. */
  async close(opts: { reason?: string; revokeLeases?: boolean; correlationId?: string } = {}): Promise<void> {
    if (this.state === "closed") return;
    const closed = new Promise<void>((r) => this.closedWaiters.push(r));
    let cause: CorralEvent | undefined;
    if (this.state === "open") {
      // Offered, not sent: a close that crossed another one is refused (already closing) and waits too.
      const offered = await this.deps.host.offer(
        { kind: "pool", id: this.name },
        {
          type: "PoolCloseRequested",
          data: { reason: opts.reason ?? "requested" },
          correlationId: opts.correlationId,
        },
      );
      if (offered.accepted) cause = offered.event;
    }
    if (opts.revokeLeases) await this.broker.revokeAll("pool closed", cause);
    this.maintainer.kick();
    if (this.agents.size === 0) this.finishClose(cause);
    await closed;
  }

  status() {
    const paused = this.pool?.context.spawnPausedUntil ?? 0;
    return {
      pool: this.name,
      state: this.state,
      waiters: this.broker.waiting,
      agents: this.agents.all().map((a) => ({ ...a })),
      counts: this.agents.counts(),
      spawnPausedUntil: paused > this.deps.scheduler.now() ? paused : null,
    };
  }

  // --- internals ----------------------------------------------------------------------------------

  private onFailed(view: AgentView, prevPhase: string | undefined, event: CorralEvent | undefined): void {
    const error = view.context.error;
    if (!error) return;
    this.deps.log.warn({ pool: this.name, agent: view.ref.id, ...error }, "agent failed");
    if (prevPhase === "starting" || error.phase !== "ready") {
      const at = event?.at ?? this.deps.scheduler.now();
      this.maintainer
        .spawnFailed(view.ref.id, error, at, event)
        .catch((err: unknown) =>
          this.deps.log.error(
            { err, pool: this.name, agent: view.ref.id },
            "could not record a failed spawn",
          ),
        );
    }
  }

  private openConfig(): PoolConfig {
    const config = this.config;
    if (this.state !== "open" || !config) throw new PoolClosedError(this.name);
    return config;
  }

  /** Records the pool closed, caused by the last agent's end (or by the close itself, if it had none). */
  private finishClose(cause?: CorralEvent): void {
    if (this.state !== "closing") return;
    this.deps.host
      .offer({ kind: "pool", id: this.name }, { type: "PoolClosed", data: {}, ...causedBy(cause) })
      .catch((err: unknown) => this.deps.log.error({ err, pool: this.name }, "could not record pool closed"));
  }
}
