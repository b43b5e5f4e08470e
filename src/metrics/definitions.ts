import { Counter, Gauge, Histogram, Registry } from "prom-client";

/**
 * Every metric corral exports, in one registry. Labels are bounded: pool names come from the
 * daemon's config, phases, steps and reasons from the event catalogue, failure codes through
 * `BoundedLabel`; never an agent, lease or command id.
 */
export class CorralMetrics {
  readonly registry = new Registry();

  // Per pool, set at each scrape from the supervisors (scrape.ts).
  readonly agents = this.gauge("corral_pool_agents", "Agents of the pool by phase.", ["pool", "phase"]);
  readonly leases = this.gauge("corral_pool_leases", "Leases held now.", ["pool"]);
  readonly waiters = this.gauge("corral_pool_waiters", "Acquires waiting for an agent now.", ["pool"]);
  readonly poolOpen = this.gauge("corral_pool_open", "1 while the pool is open (takes acquires).", ["pool"]);

  // The worldview's projection against the stream, at each scrape.
  readonly streamSeq = this.gauge("corral_stream_last_seq", "Sequence of the stream's last message.", []);
  readonly lagEvents = this.gauge(
    "corral_projection_lag_events",
    "Messages stored that the daemon's worldview has not folded yet.",
    [],
  );
  readonly lagSeconds = this.gauge(
    "corral_projection_lag_seconds",
    "Age of the oldest message the worldview has not folded yet (0 when caught up).",
    [],
  );

  readonly acquire = new Histogram({
    name: "corral_acquire_seconds",
    help: "Acquire latency in the daemon, from the request to the grant (or the error: outcome).",
    labelNames: ["pool", "outcome"],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  readonly spawnReady = new Histogram({
    name: "corral_agent_spawn_ready_seconds",
    help: "From AgentRequested (or AgentRecycled) to the agent's first idle phase, by event time.",
    labelNames: ["pool"],
    buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300],
    registers: [this.registry],
  });
  readonly initStep = new Histogram({
    name: "corral_init_step_seconds",
    help: "Init plan steps (InitStepCompleted / InitStepFailed durationMs).",
    labelNames: ["pool", "step", "outcome"],
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
    registers: [this.registry],
  });
  readonly append = new Histogram({
    name: "corral_append_seconds",
    help: "Event appends to JetStream by the actor host, until acknowledged (outcome: ok, conflict, error).",
    labelNames: ["kind", "outcome"],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });

  readonly events = this.counter(
    "corral_events_total",
    "Events this daemon stored, by aggregate kind and type.",
    ["kind", "type"],
  );
  readonly leaseEvents = this.counter(
    "corral_lease_events_total",
    "Lease events by pool: granted, renewed, released, expired, revoked.",
    ["pool", "event"],
  );
  readonly recycles = this.counter(
    "corral_recycles_total",
    "Recycles the pool decided (PoolAgentRecycled), by reason.",
    ["pool", "reason"],
  );
  readonly failures = this.counter("corral_agent_failures_total", "Agents failed (AgentFailed), by code.", [
    "pool",
    "code",
  ]);
  readonly spawnFailures = this.counter(
    "corral_spawn_failures_total",
    "Spawns that failed (PoolSpawnFailed), by code.",
    ["pool", "code"],
  );

  private gauge<L extends string>(name: string, help: string, labelNames: L[]): Gauge<L> {
    return new Gauge({ name, help, labelNames, registers: [this.registry] });
  }

  private counter<L extends string>(name: string, help: string, labelNames: L[]): Counter<L> {
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }
}

/**
 * A label whose values come from outside the catalogue (a failure code is a free string): the
 * first `max` distinct values keep their name, later ones are counted as "other".
 */
export class BoundedLabel {
  private readonly seen = new Set<string>();

  constructor(private readonly max = 32) {}

  of(value: string): string {
    const v = value.slice(0, 64);
    if (this.seen.has(v)) return v;
    if (this.seen.size >= this.max) return "other";
    this.seen.add(v);
    return v;
  }
}
