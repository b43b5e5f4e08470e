import type { PoolConfig } from "../src/events/pool.ts";
import type { AgentPhase } from "./agent.ts";

/**
 * What the pool supervisor should do now: a pure function of the pool's configuration, its
 * agents and its waiting acquirers (warm target, min/max, idle timeout, recycle
 * limits). The supervisor records each decision as a pool event before acting on it.
 */

export interface AgentSummary {
  id: string;
  phase: AgentPhase;
  /** Leases of the current generation (maxLeases counts these). */
  generationLeases: number;
  recycles: number;
  /** When the current generation became ready; null before. */
  readyAt: number | null;
  /** When it last became idle; null unless idle. */
  idleSince: number | null;
}

export interface PlanInput {
  config: PoolConfig;
  state: "open" | "closing" | "closed";
  agents: readonly AgentSummary[];
  /** Acquirers waiting for an agent. */
  waiters: number;
  now: number;
  /** Spawning is paused until then (backoff after failed spawns). */
  spawnPausedUntil?: number;
}

export type SpawnReason = "min" | "warm" | "demand" | "replace";
export type Decision =
  | { type: "spawn"; reason: SpawnReason }
  | { type: "retire"; agentId: string; reason: "idle-timeout" | "scale-down" | "max-recycles" | "closing" }
  | { type: "recycle"; agentId: string; reason: RecycleReason };

export type RecycleReason = "max-age" | "max-leases" | "lease-expired";

const ENDING: ReadonlySet<AgentPhase> = new Set(["draining", "stopping", "stopped", "failed"]);

/** After a lease ends (or on maintenance): has this agent reached a recycle limit? */
export function limitReached(
  config: PoolConfig,
  a: AgentSummary,
  now: number,
): "max-age" | "max-leases" | null {
  const { maxAgeMs, maxLeases } = config.recycle;
  if (maxLeases !== undefined && a.generationLeases >= maxLeases) return "max-leases";
  if (maxAgeMs !== undefined && a.readyAt !== null && now - a.readyAt >= maxAgeMs) return "max-age";
  return null;
}

/** Recycle, or retire for good when the agent has been recycled as often as allowed. */
export function renewal(config: PoolConfig, a: AgentSummary, reason: RecycleReason): Decision {
  const max = config.recycle.maxRecycles;
  if (max !== undefined && a.recycles >= max)
    return { type: "retire", agentId: a.id, reason: "max-recycles" };
  return { type: "recycle", agentId: a.id, reason };
}

const SPAWN_BACKOFF_START_MS = 500;
const SPAWN_BACKOFF_MAX_MS = 30_000;

/** How long to wait before the next spawn after `streak` failed spawns in a row. */
export function spawnBackoffMs(streak: number): number {
  return Math.min(SPAWN_BACKOFF_START_MS * 2 ** Math.max(0, streak - 1), SPAWN_BACKOFF_MAX_MS);
}

/**
 * The failure streak a new spawn failure makes: one more than the last, unless an agent became
 * ready after the last failure (then the streak starts again at 1).
 */
export function nextFailureStreak(
  last: { streak: number; at: number | null },
  agents: readonly Pick<AgentSummary, "readyAt">[],
): number {
  if (last.at === null) return 1;
  const at = last.at;
  return agents.some((a) => a.readyAt !== null && a.readyAt > at) ? 1 : last.streak + 1;
}

export function planPool(input: PlanInput): Decision[] {
  const { config, agents, now } = input;
  if (input.state === "closed") return [];
  const live = agents.filter((a) => !ENDING.has(a.phase));
  if (input.state === "closing") {
    return live.map((a) => ({ type: "retire", agentId: a.id, reason: "closing" }) as const);
  }

  const decisions: Decision[] = [];
  const leaving = new Set<string>();
  // Idle agents past a limit and agents whose lease expired are renewed (a recycled agent comes
  // back, a retired one is replaced).
  for (const a of live) {
    const limit =
      a.phase === "expired" ? "lease-expired" : a.phase === "idle" ? limitReached(config, a, now) : null;
    if (!limit) continue;
    const d = renewal(config, a, limit);
    decisions.push(d);
    if (d.type === "retire") leaving.add(a.id);
  }
  const recycling = new Set(
    decisions.filter((d) => d.type === "recycle").map((d) => (d as { agentId: string }).agentId),
  );

  let count = live.length - leaving.size;
  const idle = live.filter((a) => a.phase === "idle" && !leaving.has(a.id) && !recycling.has(a.id));
  const coming = live.filter(
    (a) => a.phase === "starting" || a.phase === "recycling" || recycling.has(a.id),
  ).length;
  let available = idle.length + coming;

  // Over the hard cap (the config shrank): retire idle agents first.
  const over = idle.slice(0, Math.max(0, count - config.max));
  for (const a of over) {
    decisions.push({ type: "retire", agentId: a.id, reason: "scale-down" });
    leaving.add(a.id);
    count--;
    available--;
  }

  const forMin = config.min - count;
  const forDemand = input.waiters - available;
  const forWarm = config.warm - available;
  const want = Math.min(Math.max(forMin, forDemand, forWarm, 0), config.max - count);
  const paused = input.spawnPausedUntil !== undefined && input.spawnPausedUntil > now;
  if (want > 0 && !paused) {
    const reason: SpawnReason =
      forMin > 0 ? "min" : forDemand > 0 ? "demand" : leaving.size > 0 ? "replace" : "warm";
    for (let i = 0; i < want; i++) decisions.push({ type: "spawn", reason });
    return decisions;
  }

  // Scale down: idle longer than idleTimeout, beyond the warm target, never below min.
  if (config.idleTimeoutMs > 0 && input.waiters === 0) {
    const oldestIdleFirst = idle
      .filter((a) => !leaving.has(a.id) && a.idleSince !== null && now - a.idleSince >= config.idleTimeoutMs)
      .sort((x, y) => (x.idleSince as number) - (y.idleSince as number));
    for (const a of oldestIdleFirst) {
      if (count <= config.min || available <= config.warm) break;
      decisions.push({ type: "retire", agentId: a.id, reason: "idle-timeout" });
      count--;
      available--;
    }
  }
  return decisions;
}
