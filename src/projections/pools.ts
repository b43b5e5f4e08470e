import { type DataOf, type EventOfKind, typesOfKind } from "../events/catalogue.ts";
import type { Reads, ReadView } from "../events/reads.ts";
import { type AgentsState, compare, num } from "./agents.ts";
import type { LeasesState } from "./leases.ts";
import { defineSlice, type RecordMeta } from "./slice.ts";

/**
 * The pool slice: each pool's configuration summary, open/closing/closed, its supervisor's
 * decisions, and the pool metrics (PoolMetrics).
 *
 * The pool's own facts are reduced here, checked against its state as machines/pool.ts does
 * (spawns and recycles only while open, retirements and failed spawns while open or closing).
 * The metrics about agents are not counted here: they are derived on save from the agent slice's
 * per-agent states (what is true now) and its per-pool totals, and from the lease slice's grants,
 * so they cannot drift from the agents they count, however the pools' and agents' events
 * interleave.
 */

export const POOL_STATES = ["open", "closing", "closed"] as const;
export type PoolState = (typeof POOL_STATES)[number];

/** Seed 002's PoolMetrics, from the stream. */
export interface PoolMetrics {
  /** Agents holding a lease now (leased, or draining until their lease ends). */
  active: number;
  /** Agents ready and idle now. */
  idle: number;
  /** Agents alive now: requested and not yet stopped or failed (active + idle + starting + stopping). */
  total: number;
  /** Agents on their way to ready now: requested, creating, starting or recycling. */
  starting: number;
  /** Leases granted, ever (AgentLeased). */
  totalLeases: number;
  /** Generations ended by a recycle, ever (AgentRecycled). */
  totalRecycles: number;
  /** Spawn decisions, ever (PoolAgentSpawned). */
  spawned: number;
  /** Agents that ended, ever: stopped or failed. */
  terminated: number;
  /** Of those, the ones that failed. */
  failed: number;
  /** The last spawn ("up") or retirement ("down") decision, with its reason. */
  lastScaleEvent: ScaleEvent | null;
}

export interface ScaleEvent {
  /** Envelope time of the decision. */
  at: number;
  direction: "up" | "down";
  reason: string;
}

export interface SpawnFailure {
  agentId: string;
  code: string;
  message: string;
  at: number;
}

export interface PoolView {
  name: string;
  state: PoolState;
  /** The daemon instance that runs the pool. */
  instance: string;
  runtime: "docker" | "process";
  config: { min: number; max: number; warm: number };
  /** Envelope time of its PoolCreated. */
  createdAt: number;
  /** Why it is closing or closed; null while open. */
  closeReason: string | null;
  spawnFailures: number;
  lastSpawnFailure: SpawnFailure | null;
  metrics: PoolMetrics;
  /** Events for this pool that did not fit its state (not applied). */
  ignored: number;
}

/** A pool's own part: everything but the metrics derived from agents and leases. */
export interface PoolRecord extends Omit<PoolView, "metrics"> {
  spawned: number;
  lastScaleEvent: ScaleEvent | null;
}

/** By pool name. Events for a pool whose PoolCreated is not in the stream are not applied. */
export interface PoolsState {
  pools: Map<string, PoolRecord>;
}

/** Plain: pool name → pool. Built with `Object.fromEntries`, so any name is an own key. */
export type PoolsView = Record<string, PoolView>;

export interface PoolPeers {
  agents: AgentsState;
  leases: LeasesState;
}

type PoolType = EventOfKind<"pool">["type"];
/** What the reducer reads of each pool event (src/events/reads.ts). */
const READS = {
  PoolCreated: ["instance", "config"],
  PoolReconfigured: ["instance", "config"],
  PoolReopened: ["instance", "config"],
  PoolAgentSpawned: ["reason"],
  PoolAgentRetired: ["reason"],
  PoolSpawnFailed: ["agentId", "code", "message"],
  PoolCloseRequested: ["reason"],
} as const satisfies Reads<PoolType>;
type PoolEvent = ReadView<PoolType, typeof READS>;

function configure(p: PoolRecord, data: Pick<DataOf<"PoolCreated">, "instance" | "config">): void {
  p.instance = data.instance;
  p.runtime = data.config.runtime;
  p.config = { min: data.config.min, max: data.config.max, warm: data.config.warm };
  p.closeReason = null;
}

/** Applies `e` to a pool as the pool machine would; false when the machine rejects it. */
function step(p: PoolRecord, e: PoolEvent): boolean {
  switch (e.type) {
    case "PoolCreated":
      return false; // only from `new`
    case "PoolReconfigured":
      if (p.state !== "open") return false;
      configure(p, e.data);
      return true;
    case "PoolAgentSpawned":
      if (p.state !== "open") return false;
      p.spawned++;
      p.lastScaleEvent = { at: e.at, direction: "up", reason: e.data.reason };
      return true;
    case "PoolAgentRecycled":
      // Counted by the agents it concerns (AgentRecycled); here only whether it fits.
      return p.state === "open";
    case "PoolAgentRetired":
      if (p.state === "closed") return false;
      p.lastScaleEvent = { at: e.at, direction: "down", reason: e.data.reason };
      return true;
    case "PoolSpawnFailed":
      if (p.state === "closed") return false;
      p.spawnFailures++;
      p.lastSpawnFailure = { agentId: e.data.agentId, code: e.data.code, message: e.data.message, at: e.at };
      return true;
    case "PoolCloseRequested":
      if (p.state !== "open") return false;
      p.state = "closing";
      p.closeReason = e.data.reason;
      return true;
    case "PoolClosed":
      if (p.state !== "closing") return false;
      p.state = "closed";
      return true;
    case "PoolReopened":
      if (p.state !== "closed") return false;
      p.state = "open";
      configure(p, e.data);
      return true;
    case "PoolOrphanRemoved":
      return true; // any state once the pool exists (recorded at a daemon's start)
  }
}

type AgentCounts = { active: number; idle: number; starting: number; total: number };

/** Live agents per pool, by what the metrics count: one pass over the live agents. */
function countAgents(agents: AgentsState): Map<string, AgentCounts> {
  const by = new Map<string, AgentCounts>();
  for (const a of agents.live.values()) {
    let c = by.get(a.poolId);
    if (!c) {
      c = { active: 0, idle: 0, starting: 0, total: 0 };
      by.set(a.poolId, c);
    }
    c.total++;
    switch (a.state) {
      case "leased":
      case "draining":
        c.active++;
        break;
      case "idle":
        c.idle++;
        break;
      case "requested":
      case "creating":
      case "starting":
      case "connecting":
      case "initializing":
      case "expired": // its lease ran out: it is renewed next (recycled or replaced)
      case "recycling":
        c.starting++;
        break;
      default:
        break; // stopping: alive (its instance and ports still exist), but neither
    }
  }
  return by;
}

export const poolSlice = defineSlice({
  handles: typesOfKind("pool"),
  reads: READS,

  init: (): PoolsState => ({ pools: new Map() }),

  reduce(s: PoolsState, e: PoolEvent, _meta: RecordMeta): void {
    const name = e.aggregate.id;
    const p = s.pools.get(name);
    if (p) {
      if (!step(p, e)) p.ignored++;
      return;
    }
    if (e.type !== "PoolCreated") return; // created before the stream's start: nothing to show
    const created: PoolRecord = {
      name,
      state: "open",
      instance: "",
      runtime: e.data.config.runtime,
      config: { min: 0, max: 0, warm: 0 },
      createdAt: e.at,
      closeReason: null,
      spawnFailures: 0,
      lastSpawnFailure: null,
      ignored: 0,
      spawned: 0,
      lastScaleEvent: null,
    };
    configure(created, e.data);
    s.pools.set(name, created);
  },

  save(s: PoolsState, peers: PoolPeers): PoolsView {
    const agents = countAgents(peers.agents);
    const out: [string, PoolView][] = [];
    for (const p of [...s.pools.values()].sort((a, b) => compare(a.name, b.name))) {
      const { spawned, lastScaleEvent, ...own } = p;
      const live = agents.get(p.name);
      const totals = peers.agents.pools.get(p.name);
      const stopped = totals?.stopped ?? 0;
      const failed = totals?.failed ?? 0;
      out.push([
        p.name,
        {
          ...own,
          config: { ...p.config },
          lastSpawnFailure: p.lastSpawnFailure && { ...p.lastSpawnFailure },
          metrics: {
            active: live?.active ?? 0,
            idle: live?.idle ?? 0,
            total: live?.total ?? 0,
            starting: live?.starting ?? 0,
            totalLeases: peers.leases.granted.get(p.name) ?? 0,
            totalRecycles: totals?.recycles ?? 0,
            spawned,
            terminated: stopped + failed,
            failed,
            lastScaleEvent: lastScaleEvent && { ...lastScaleEvent },
          },
        },
      ]);
    }
    return Object.fromEntries(out);
  },

  load(v: PoolsView): PoolsState {
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new TypeError("not a pools view");
    const s: PoolsState = { pools: new Map() };
    for (const [name, p] of Object.entries(v)) {
      if (p?.name !== name || !(POOL_STATES as readonly string[]).includes(p.state) || !p.metrics) {
        throw new TypeError("not a pool");
      }
      // The metrics about agents and leases are derived again on save; the pool's own are kept.
      const { metrics, ...own } = p;
      s.pools.set(name, {
        ...own,
        config: { min: num(p.config?.min), max: num(p.config?.max), warm: num(p.config?.warm) },
        spawnFailures: num(p.spawnFailures),
        ignored: num(p.ignored),
        lastSpawnFailure: p.lastSpawnFailure ? { ...p.lastSpawnFailure } : null,
        spawned: num(metrics.spawned),
        lastScaleEvent: metrics.lastScaleEvent ? { ...metrics.lastScaleEvent } : null,
      });
    }
    return s;
  },
});
