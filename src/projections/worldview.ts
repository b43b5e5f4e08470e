import { decodeEventView } from "../codec/msgpack.ts";
import { type AnyEventView, ReadPlan } from "../events/reads.ts";
import type { StoredRecord } from "../store/records.ts";
import { agentSlice } from "./agents.ts";
import { commandSlice } from "./commands.ts";
import { leaseSlice } from "./leases.ts";
import type { PoolMetrics } from "./pools.ts";
import { poolSlice } from "./pools.ts";
import { portSlice } from "./ports.ts";
import type { OnSkip, Projection } from "./projection.ts";
import { registrySlice } from "./registry.ts";
import type { ProjectionRunner } from "./runner.ts";
import { type AnySlice, dispatchTable, type PeersOf, type StateOf, type ViewOf } from "./slice.ts";

/**
 * The worldview: every slice's view plus stream bookkeeping. New aggregate kinds add a slice
 * here; nothing else changes. A slice may derive its view from other slices' states (pools'
 * metrics and ports come from the agents), never change them.
 */
const slices = {
  commands: commandSlice,
  pools: poolSlice,
  agents: agentSlice,
  leases: leaseSlice,
  ports: portSlice,
  registry: registrySlice,
} satisfies Record<string, AnySlice>;

type Slices = typeof slices;
type States = { [K in keyof Slices]: StateOf<Slices[K]> };

/** Compile-time check: the composition holds every peer state each slice's `save` reads. */
const peersProvided: { [K in keyof Slices]: States extends PeersOf<Slices[K]> ? true : never } = {
  commands: true,
  pools: true,
  agents: true,
  leases: true,
  ports: true,
  registry: true,
};
void peersProvided;

/** Bump whenever a reducer or the saved shape changes: older checkpoints are then ignored. */
export const WORLDVIEW_VERSION = 7;

export interface WorldviewBase {
  /** Sequence of the last record folded in (events and skipped records alike); 0 when none. */
  lastSeq: number;
  /** Envelope time (ms) of the last event applied; null when none. */
  lastEventAt: number | null;
  totals: {
    /** Events applied (decoded), of any type, whether or not a slice handles it. */
    events: number;
    byType: Record<string, number>;
  };
  /** Records skipped, by reason (the DecodeError reason, or "reducer-error"). */
  skipped: Record<string, number>;
}

/** Plain, MessagePack-safe and bounded: what checkpoints hold and what `loadWorldview` returns. */
export type Worldview = WorldviewBase & { [K in keyof Slices]: ViewOf<Slices[K]> };

/** A runner of the worldview (it reads events as the slices' views of them). */
export type WorldviewRunner = ProjectionRunner<WorldviewState, Worldview, AnyEventView>;

/** The working form the reducers update in place. */
export interface WorldviewState {
  lastSeq: number;
  lastEventAt: number | null;
  events: number;
  byType: Map<string, number>;
  skipped: Map<string, number>;
  slices: States;
}

const table = dispatchTable(slices);
/** Every slice's reads: what a worldview read decodes and checks of each event. */
const plan = new ReadPlan(...Object.values(slices).map((slice: AnySlice) => slice.reads));
const sliceKeys = Object.keys(slices) as (keyof Slices)[];

function bump(m: Map<string, number>, key: string): void {
  m.set(key, (m.get(key) ?? 0) + 1);
}

const sorted = (m: Map<string, number>): Record<string, number> =>
  Object.fromEntries([...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

export const worldviewProjection: Projection<WorldviewState, Worldview, AnyEventView> = {
  name: "worldview",
  version: WORLDVIEW_VERSION,
  decode: (bytes, at) => decodeEventView(bytes, plan, at),

  init(): WorldviewState {
    const states = {} as Record<string, unknown>;
    for (const k of sliceKeys) states[k] = slices[k].init();
    return {
      lastSeq: 0,
      lastEventAt: null,
      events: 0,
      byType: new Map(),
      skipped: new Map(),
      slices: states as WorldviewState["slices"],
    };
  },

  apply(w: WorldviewState, r: StoredRecord<AnyEventView>, onSkip?: OnSkip): void {
    w.lastSeq = r.seq;
    if (r.error) {
      bump(w.skipped, r.error.reason);
      onSkip?.(r, r.error.reason, r.error);
      return;
    }
    const e = r.event;
    const routes = table.get(e.type);
    if (routes) {
      for (const [key, slice] of routes) {
        try {
          slice.reduce(w.slices[key], e, r); // the record is its own RecordMeta: no copy per event
        } catch (err) {
          // A reducer bug must not stop the projection; it is counted and logged like poison.
          bump(w.skipped, "reducer-error");
          onSkip?.(r, "reducer-error", err);
          return;
        }
      }
    }
    w.events++;
    w.lastEventAt = e.at;
    bump(w.byType, e.type);
  },

  save(w: WorldviewState): Worldview {
    const views = {} as Record<string, unknown>;
    for (const k of sliceKeys) views[k] = slices[k].save(w.slices[k] as never, w.slices as never);
    return {
      lastSeq: w.lastSeq,
      lastEventAt: w.lastEventAt,
      totals: { events: w.events, byType: sorted(w.byType) },
      skipped: sorted(w.skipped),
      ...(views as { [K in keyof Slices]: ViewOf<Slices[K]> }),
    };
  },

  load(v: Worldview): WorldviewState {
    if (
      typeof v?.lastSeq !== "number" ||
      typeof v.totals?.events !== "number" ||
      typeof v.totals.byType !== "object" ||
      typeof v.skipped !== "object"
    ) {
      throw new TypeError("not a worldview");
    }
    const states = {} as Record<string, unknown>;
    for (const k of sliceKeys) states[k] = slices[k].load(v[k] as never);
    return {
      lastSeq: v.lastSeq,
      lastEventAt: typeof v.lastEventAt === "number" ? v.lastEventAt : null,
      events: v.totals.events,
      byType: new Map(Object.entries(v.totals.byType)),
      skipped: new Map(Object.entries(v.skipped)),
      slices: states as WorldviewState["slices"],
    };
  },
};

/** Folds records into a fresh worldview: the reference the runner's results are checked against. */
export function foldWorldview(records: Iterable<StoredRecord>): Worldview {
  const w = worldviewProjection.init();
  for (const r of records) worldviewProjection.apply(w, r);
  return worldviewProjection.save(w);
}

/** A pool's metrics as the worldview has them; null for a pool it does not know. */
export function poolMetrics(w: Worldview, pool: string): PoolMetrics | null {
  return Object.hasOwn(w.pools, pool) ? (w.pools[pool]?.metrics ?? null) : null;
}
