import type { LeaseEndState } from "../../projections/leases.ts";
import type { HeldPort } from "../../projections/ports.ts";
import type { Worldview } from "../../projections/worldview.ts";
import { type Change, changes } from "./changes.ts";

/** What changed in the worldview between two moments. */
export interface WorldDiff {
  from: number;
  to: number;
  /** Events between the two (after `from`, up to `to`), by type. */
  events: number;
  byType: Record<string, number>;
  agents: {
    added: { id: string; poolId: string; state: string }[];
    /** Ended between the two: how (the agent's last event), or still live but no longer (none). */
    removed: { id: string; poolId: string; state: string; endedBy: string | null }[];
    changed: { id: string; poolId: string; from: string; to: string }[];
  };
  leases: {
    granted: number;
    ended: Record<LeaseEndState, number>;
    /** Held at `to`, not at `from`. */
    started: { id: string; agentId: string; poolId: string; holder: string }[];
    /** Held at `from`, not at `to`. */
    finished: { id: string; agentId: string; poolId: string }[];
  };
  ports: { taken: HeldPort[]; freed: HeldPort[] };
  /** Each live agent whose registry verdict changed (its generation's: a new one starts unregistered). */
  registrations: { agentId: string; generation: number; from: string; to: string; reason?: string }[];
  pools: {
    added: string[];
    removed: string[];
    /** State, instance, runtime, config or close reason changed. */
    changed: { name: string; changes: Change[] }[];
  };
}

const portKey = (p: HeldPort) => `${p.port}/${p.agentId}`;

/** Compares two worldviews; `endedBy` names each agent's last event folded between them. */
export function diffWorldviews(a: Worldview, b: Worldview, endedBy: ReadonlyMap<string, string>): WorldDiff {
  const agentsA = new Map(a.agents.live.map((x) => [x.id, x]));
  const agentsB = new Map(b.agents.live.map((x) => [x.id, x]));
  const leasesA = new Map(a.leases.live.map((x) => [x.id, x]));
  const leasesB = new Map(b.leases.live.map((x) => [x.id, x]));
  const portsA = new Set(a.ports.held.map(portKey));
  const portsB = new Set(b.ports.held.map(portKey));
  const byType: Record<string, number> = {};
  for (const [t, n] of Object.entries(b.totals.byType)) {
    const d = n - (a.totals.byType[t] ?? 0);
    if (d > 0) byType[t] = d;
  }
  const ended = {} as Record<LeaseEndState, number>;
  for (const how of Object.keys(b.leases.ended) as LeaseEndState[]) {
    ended[how] = b.leases.ended[how] - a.leases.ended[how];
  }
  return {
    from: a.lastSeq,
    to: b.lastSeq,
    events: b.totals.events - a.totals.events,
    byType,
    agents: {
      added: b.agents.live
        .filter((x) => !agentsA.has(x.id))
        .map(({ id, poolId, state }) => ({ id, poolId, state })),
      removed: a.agents.live
        .filter((x) => !agentsB.has(x.id))
        .map(({ id, poolId, state }) => ({ id, poolId, state, endedBy: endedBy.get(id) ?? null })),
      changed: b.agents.live.flatMap((x) => {
        const before = agentsA.get(x.id);
        return before && before.state !== x.state
          ? [{ id: x.id, poolId: x.poolId, from: before.state, to: x.state }]
          : [];
      }),
    },
    leases: {
      granted: b.leases.granted - a.leases.granted,
      ended,
      started: b.leases.live
        .filter((l) => !leasesA.has(l.id))
        .map(({ id, agentId, poolId, holder }) => ({ id, agentId, poolId, holder })),
      finished: a.leases.live
        .filter((l) => !leasesB.has(l.id))
        .map(({ id, agentId, poolId }) => ({ id, agentId, poolId })),
    },
    ports: {
      taken: b.ports.held.filter((p) => !portsA.has(portKey(p))),
      freed: a.ports.held.filter((p) => !portsB.has(portKey(p))),
    },
    registrations: diffRegistrations(a, b),
    pools: diffPools(a, b),
  };
}

function diffRegistrations(a: Worldview, b: Worldview): WorldDiff["registrations"] {
  const before = new Map(a.registry.agents.map((r) => [r.agentId, r]));
  const out: WorldDiff["registrations"] = [];
  // An agent that ended loses its row (agents.removed says so); a new one starts unregistered.
  for (const y of b.registry.agents) {
    const x = before.get(y.agentId);
    const from = x?.generation === y.generation ? x.state : "unregistered";
    if (from === y.state) continue;
    const reason = y.reason === undefined ? {} : { reason: y.reason };
    out.push({ agentId: y.agentId, generation: y.generation, from, to: y.state, ...reason });
  }
  return out;
}

function diffPools(a: Worldview, b: Worldview): WorldDiff["pools"] {
  const own = (p: Worldview["pools"][string]) => ({
    state: p.state,
    instance: p.instance,
    runtime: p.runtime,
    config: p.config,
    closeReason: p.closeReason,
  });
  const changed: WorldDiff["pools"]["changed"] = [];
  for (const [name, p] of Object.entries(b.pools)) {
    const before = Object.hasOwn(a.pools, name) ? a.pools[name] : undefined;
    if (!before) continue;
    const cs = changes(own(before), own(p));
    if (cs.length > 0) changed.push({ name, changes: cs });
  }
  return {
    added: Object.keys(b.pools).filter((n) => !Object.hasOwn(a.pools, n)),
    removed: Object.keys(a.pools).filter((n) => !Object.hasOwn(b.pools, n)),
    changed,
  };
}
