import { isDeepStrictEqual } from "node:util";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { agentAggregate } from "../../machines/agent.ts";
import { poolAggregate } from "../../machines/pool.ts";
import { sessionAggregate } from "../../machines/session.ts";
import type { CorralEvent } from "../events/catalogue.ts";
import type { PoolConfig } from "../events/pool.ts";
import { silentLogger } from "../log.ts";
import { PortAllocator } from "../ports/allocator.ts";
import type { Runtime, RuntimeKind } from "../runtime/types.ts";
import { EventStore } from "../store/event-store.ts";
import { SNAPSHOT_BUCKET, SnapshotStore } from "../store/snapshots.ts";
import { ActorHost, type ActorView } from "./actor-host.ts";
import { agentEffects } from "./agent-effects.ts";
import type { AgentIdentities } from "./agent-identities.ts";
import { type AgentSessions, agentSessions } from "./agent-sessions.ts";
import { PoolError, UnknownPoolError } from "./errors.ts";
import type { InitKeys } from "./init/template.ts";
import { PoolSupervisor } from "./pool/supervisor.ts";
import { poolEffects } from "./pool-effects.ts";
import { type RuntimeDeps, reconcileRuntime, recordReapDegraded, watchRuntime } from "./reconciler.ts";
import { type Scheduler, TimerScheduler } from "./scheduler.ts";
import type { SessionOptions } from "./session/dialer.ts";
import type { Dialer } from "./simulated-dialer.ts";
import { asAgentView, asPoolView } from "./views.ts";

export interface ControlPlaneOptions {
  nc: NatsConnection;
  /** Names this daemon's runtime resources (label corral.instance); one writer per instance. */
  instance: string;
  pools: Record<string, PoolConfig>;
  runtimes: Partial<Record<RuntimeKind, Runtime>>;
  ports?: PortAllocator;
  log?: Logger;
  /** Time and deadlines (default: the wall clock and Node timers; tests pass a ManualScheduler). */
  scheduler?: Scheduler;
  snapshotEvery?: number;
  /** Optimistic-concurrency conflicts retried per input (default 3). */
  maxConflictRetries?: number;
  /** Called before the stream is rebuilt, so an observer (metrics) sees every event from the first. */
  beforeBoot?: (cp: ControlPlane) => void;
  /**
   * How running agents are reached. With `identities`: sessions to each agent's agentd over mTLS,
   * which register it and run its init plan (`src/cp/agent-sessions.ts`). With the simulated
   * runtime only: a `dialer` made once the host exists (`simulatedDialer`).
   */
  identities?: AgentIdentities;
  /** SSH keys of the config's init plans, by digest (`src/cp/init/template.ts`). */
  initKeys?: InitKeys;
  /** Session timings (tests shorten them). */
  sessionOptions?: Partial<SessionOptions>;
  dialer?: (host: ActorHost) => Dialer;
  /** How often a recovery point is written while running (default 60 s; 0: only at stop). */
  recoveryPointEveryMs?: number;
  /**
   * …and after this many pool and agent events stored since the last one (default 50,000; 0:
   * never by count): under load, 60 s is hundreds of thousands of events for a crash to fold.
   */
  recoveryPointEveryEvents?: number;
}

export interface StartReport {
  pools: string[];
  recovered: { pools: number; agents: number; leases: number };
  adopted: number;
  removed: number;
  gone: number;
  resumed: number;
}

/**
 * corral's live side for one instance: the actor host with the pool and agent machines,
 * a supervisor per pool, the runtimes and the host port allocator. `start` rebuilds everything
 * from the stream and reconciles it with what the runtimes really have before serving.
 */
export class ControlPlane {
  readonly host: ActorHost;
  readonly store: EventStore;
  readonly ports: PortAllocator;
  private readonly supervisors = new Map<string, PoolSupervisor>();
  private readonly watchers: { close(): void }[] = [];
  private pointTimer: NodeJS.Timeout | undefined;
  private pointWriting: Promise<void> | undefined;
  /** Pool and agent events stored since the last recovery point was asked for. */
  private sincePoint = 0;
  private readonly log: Logger;
  private readonly scheduler: Scheduler;
  private readonly newSupervisor: (name: string) => PoolSupervisor;
  readonly dialer: Dialer;
  /** The sessions to agents' agentds (absent with a simulated dialer): what exec runs commands over. */
  readonly sessions: AgentSessions | undefined;

  private constructor(
    private readonly opts: ControlPlaneOptions,
    store: EventStore,
    snapshots: SnapshotStore,
  ) {
    this.store = store;
    this.log = opts.log ?? silentLogger;
    this.scheduler = opts.scheduler ?? new TimerScheduler();
    this.ports = opts.ports ?? new PortAllocator();
    const runtimeFor = (kind: RuntimeKind): Runtime => {
      const r = opts.runtimes[kind];
      if (!r)
        throw Object.assign(new Error(`the ${kind} runtime is not available`), {
          code: "runtime_unavailable",
        });
      return r;
    };
    this.host = new ActorHost({
      store,
      snapshots,
      aggregates: [poolAggregate, agentAggregate, sessionAggregate],
      log: this.log,
      scheduler: this.scheduler,
      snapshotEvery: opts.snapshotEvery,
      maxConflictRetries: opts.maxConflictRetries,
      effects: {
        pool: poolEffects(),
        agent: agentEffects({
          instance: opts.instance,
          runtimeFor,
          // Never the stream's copy: what an agent runs (image, command, mounts) comes only from
          // this daemon's own configuration (a pool no longer configured spawns nothing).
          configOf: (pool) => opts.pools[pool] ?? null,
          ports: this.ports,
          clock: this.scheduler.now,
          issueIdentity: async (p) => opts.identities?.issue(p),
          dropIdentity: (agentId) => opts.identities?.drop(agentId),
          dial: (agentId, generation, cause) => this.dialer.dial(agentId, generation, cause),
          hangUp: async (agentId) => this.dialer.drop?.(agentId),
        }),
      },
    });
    const history = async (agentId: string): Promise<CorralEvent[]> =>
      (await store.readAggregate({ kind: "agent", id: agentId }, 0)).flatMap((r) =>
        r.error ? [] : [r.event],
      );
    this.newSupervisor = (name) =>
      new PoolSupervisor({
        name,
        host: this.host,
        runtimeFor,
        history,
        scheduler: this.scheduler,
        log: this.log,
      });
    if (opts.dialer) {
      this.sessions = undefined;
      this.dialer = opts.dialer(this.host);
    } else {
      if (!opts.identities)
        throw new TypeError("a control plane needs identities, or a dialer with the simulated runtime");
      this.sessions = agentSessions({
        host: this.host,
        store,
        identities: opts.identities,
        runtimeFor: (kind) => opts.runtimes[kind],
        configOf: (pool) => opts.pools[pool] ?? null,
        initKeys: opts.initKeys ?? new Map(),
        scheduler: this.scheduler,
        log: this.log,
        options: opts.sessionOptions,
      });
      this.dialer = this.sessions;
    }
    for (const name of Object.keys(opts.pools)) this.supervisors.set(name, this.newSupervisor(name));
    this.host.onChange((view, event) => this.route(view, event));
  }

  static async start(opts: ControlPlaneOptions): Promise<{ cp: ControlPlane; report: StartReport }> {
    const store = await EventStore.open(opts.nc);
    // Bound to this stream: one deleted and made again is rebuilt from, not from the old one's snapshots.
    const snapshots = await SnapshotStore.open(opts.nc, SNAPSHOT_BUCKET, 1, undefined, store.identity);
    const cp = new ControlPlane(opts, store, snapshots);
    opts.beforeBoot?.(cp);
    const report = await cp.boot();
    return { cp, report };
  }

  private async boot(): Promise<StartReport> {
    const { host, log } = this;
    // 1. Rebuild the pools: ours (as the recovery point lists them) and the configured ones, each
    //    from its own subject; without a point, from the whole stream.
    const instance = this.opts.instance;
    const listed = await host.recoveryPointIds("pool", instance);
    const pools = listed
      ? await host.recoverEach("pool", [...Object.keys(this.opts.pools), ...listed])
      : await host.recover("pool");
    // 2. Configure our pools (create, reopen or reconfigure). A pool is run by one instance.
    for (const [name, config] of Object.entries(this.opts.pools)) {
      const view = pools.find((p) => p.ref.id === name);
      const ref = { kind: "pool" as const, id: name };
      const ctx = view && asPoolView(view).context;
      if (view && view.value !== "closed" && ctx?.instance !== instance) {
        throw new PoolError(
          "pool_owned",
          `pool ${name} is run by instance ${ctx?.instance}; close it there first or pick another pool name`,
        );
      }
      if (!view) await host.send(ref, { type: "PoolCreated", data: { config, instance } });
      else if (view.value === "closed")
        await host.send(ref, { type: "PoolReopened", data: { config, instance } });
      else if (!isDeepStrictEqual(ctx?.config, config))
        await host.send(ref, { type: "PoolReconfigured", data: { config, instance } });
    }
    // Pools of ours that are no longer configured are closed: a supervisor drains them.
    const retiring = pools.filter(
      (p) =>
        !this.supervisors.has(p.ref.id) &&
        p.value !== "closed" &&
        asPoolView(p).context.instance === instance,
    );
    for (const p of retiring) this.supervisors.set(p.ref.id, this.newSupervisor(p.ref.id));
    const ours = (poolId: string) => this.supervisors.has(poolId);
    // Then the agents of our pools (another instance's are not ours to drive); a lease is a
    // phase of its agent, so there is nothing else to rebuild and nothing to repair.
    const poolOf = (v: ActorView) => ours(asAgentView(v).context.poolId);
    // From the recovery point the last stop wrote (ARCHITECTURE.md, "Start-up"), else the whole history.
    const agents = (await host.recover("agent", poolOf, { point: instance })).map(asAgentView);
    for (const p of host.liveActors("pool")) this.route(p);
    for (const a of host.liveActors("agent")) this.route(a);
    // 3. Ports held by live agents, as the stream says, before anything allocates.
    for (const a of agents) {
      const { ports, poolId } = a.context;
      if (ports.length > 0 && ours(poolId)) this.ports.restore(a.ref.id, ports);
    }
    // 4. What dials check against (the registry), before anything is dialled.
    await this.dialer.start?.();
    // 5. Runtimes: adopt what belongs to a live agent, remove the rest, fail agents whose
    //    instance is gone; from then on, a (re)started instance is dialled and a removed one forgotten.
    const deps: RuntimeDeps = {
      onDial: (agentId, generation) => this.dialer.dial(agentId, generation),
      onDestroyed: (agentId) => {
        void this.dialer.drop?.(agentId);
      },
      ports: this.ports,
      degraded: (kind, reason) =>
        recordReapDegraded(this.store, instance, kind, reason, this.scheduler.now()),
    };
    const totals = { adopted: 0, removed: 0, gone: 0 };
    for (const runtime of Object.values(this.opts.runtimes)) {
      if (!runtime) continue;
      const r = await reconcileRuntime(runtime, host, log, ours, deps);
      totals.adopted += r.adopted;
      totals.removed += r.removed;
      totals.gone += r.gone;
      this.watchers.push(watchRuntime(runtime, host, log, deps));
    }
    // 6. Finish the steps that were under way, then supervise (restores the warm target).
    const resumed = host.resume("agent", poolOf);
    for (const s of this.supervisors.values()) s.start();
    const every = this.opts.recoveryPointEveryMs ?? 60_000;
    if (every > 0) {
      // A crash restarts from the last point: this bounds the tail it folds.
      this.pointTimer = setInterval(() => void this.writeRecoveryPoint(), every);
      this.pointTimer.unref();
      // And now, so that the pools this start created or reopened are listed before a crash.
      void this.writeRecoveryPoint();
    }
    for (const p of retiring) {
      void this.pool(p.ref.id)
        .close({ reason: "no longer configured", revokeLeases: true })
        .catch((err: unknown) => log.error({ err, pool: p.ref.id }, "closing an unconfigured pool failed"));
    }
    return {
      pools: [...this.supervisors.keys()],
      recovered: {
        pools: pools.length,
        agents: agents.length,
        leases: agents.filter((a) => a.context.lease !== null).length,
      },
      ...totals,
      resumed,
    };
  }

  /** Keeps each supervisor's view current with the events the host stores. */
  private route(view: ActorView, event?: CorralEvent): void {
    if (event && (view.ref.kind === "pool" || view.ref.kind === "agent")) this.countTowardsPoint();
    switch (view.ref.kind) {
      case "pool":
        this.supervisors.get(view.ref.id)?.observePool(asPoolView(view), event);
        return;
      case "agent": {
        const agent = asAgentView(view);
        this.supervisors.get(agent.context.poolId)?.observeAgent(agent, event);
        return;
      }
    }
  }

  /** One more event a crash would fold: past `recoveryPointEveryEvents` of them, a new point. */
  private countTowardsPoint(): void {
    const every = this.opts.recoveryPointEveryEvents ?? 50_000;
    if (every <= 0 || !this.pointTimer || ++this.sincePoint < every) return;
    this.sincePoint = 0;
    void this.writeRecoveryPoint();
  }

  /** Writes this instance's recovery points, for its pools and agents (ARCHITECTURE.md, "Start-up"), one at a time. */
  private writeRecoveryPoint(): Promise<void> {
    const write = async () => {
      await this.host.writeRecoveryPoint("pool", this.opts.instance);
      await this.host.writeRecoveryPoint("agent", this.opts.instance);
    };
    this.pointWriting ??= write()
      .catch((err: unknown) =>
        this.log.warn({ err }, "could not write the recovery point; a restart folds more"),
      )
      .finally(() => {
        this.pointWriting = undefined;
      });
    return this.pointWriting;
  }

  pool(name: string): PoolSupervisor {
    const s = this.supervisors.get(name);
    if (!s) throw new UnknownPoolError(name, [...this.supervisors.keys()]);
    return s;
  }

  /** Whether the agent is a live agent of one of this instance's pools (its commands are ours). */
  ownsAgent(agentId: string): boolean {
    return this.host.cached({ kind: "agent", id: agentId }) !== undefined;
  }

  poolNames(): string[] {
    return [...this.supervisors.keys()];
  }

  /**
   * Closes every pool: leases revoked, agents drained, stopped and removed. A pool that cannot
   * close through its events (its history unreadable) has its agents removed all the same, and
   * its error is thrown once every pool is done.
   */
  async closeAll(reason = "shutdown"): Promise<void> {
    const closing = [...this.supervisors].map(async ([pool, s]) => {
      try {
        await s.close({ reason, revokeLeases: true });
      } catch (err) {
        this.log.error(
          { pool, err: (err as Error).message },
          "cannot close the pool through its events: removing its agents from the runtime directly",
        );
        await this.removeAgentsOf(pool).catch((e: Error) =>
          this.log.error({ pool, err: e.message }, "could not remove the pool's agents"),
        );
        throw err;
      }
    });
    const failed = (await Promise.allSettled(closing)).find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
  }

  /** Removes a pool's instances straight from the runtimes (by their labels), recording nothing. */
  private async removeAgentsOf(pool: string): Promise<void> {
    for (const runtime of Object.values(this.opts.runtimes)) {
      if (!runtime) continue;
      for (const i of await runtime.list()) if (i.poolId === pool) await runtime.remove(i.id);
    }
  }

  /**
   * Stops this control plane. Agents keep running (the next start adopts them) unless
   * `stopAgents`: then every pool is closed, leases revoked, and agents stopped and removed.
   */
  async stop(opts: { stopAgents?: boolean } = {}): Promise<void> {
    // A pool that failed to close still had its agents removed: stop the rest, then say so.
    let failure: unknown;
    if (opts.stopAgents) await this.closeAll().catch((err) => (failure = err));
    for (const s of this.supervisors.values()) s.stop();
    for (const w of this.watchers) w.close();
    await this.dialer.close();
    clearInterval(this.pointTimer);
    this.pointTimer = undefined; // and none by count either: stop writes the last one below
    await this.host.close();
    // The next start folds only what is stored after this point, not every agent's history.
    await this.pointWriting;
    await this.writeRecoveryPoint();
    this.store.close();
    if (failure) throw failure;
  }
}
