import type { CorralEvent } from "../events/catalogue.ts";
import { namesAgent } from "../events/lease-id.ts";
import type { Reads, ReadView } from "../events/reads.ts";
import { compare, num } from "./agents.ts";
import { defineSlice, type RecordMeta } from "./slice.ts";

/**
 * The lease slice: granted leases individually, counts for ended ones (by how they ended) and
 * grants per pool over all time (a pool's `totalLeases`). A lease is a phase of its agent
 * (machines/agent.ts), so this folds the agent events that grant, renew and end one; a lease id
 * names its agent (events/lease-id.ts). Events are checked against the lease's state as the
 * agent machine does (a renewal must extend, an expiry must be for the current expiresAt); one
 * that does not fit is counted as ignored and changes nothing. An agent that fails ends its
 * lease with it, and so does a drain deadline that passes before the lease ends (both counted
 * as revoked).
 */

export const LEASE_END_STATES = ["released", "expired", "revoked"] as const;
export type LeaseEndState = (typeof LEASE_END_STATES)[number];

export interface LiveLease {
  id: string;
  poolId: string;
  agentId: string;
  holder: string;
  /** Envelope time of its AgentLeased. */
  grantedAt: number;
  /** When it runs out unless renewed (the latest renewal's). */
  expiresAt: number;
  renewals: number;
  grantedSeq: number;
  /** Its agent is draining: the drain deadline, when the lease ends unless it ended before. */
  drainDeadline: number | null;
}

export interface LeasesView {
  /** Granted leases now, oldest first (by the sequence of their AgentLeased). */
  live: LiveLease[];
  /** Leases granted, ever. */
  granted: number;
  /** Leases that ended, ever, by how. */
  ended: Record<LeaseEndState, number>;
  /** Per pool, by pool id: leases granted ever, and granted now. */
  pools: { poolId: string; granted: number; live: number }[];
  /** Events that did not fit the lease's state (not applied). */
  ignored: number;
  /** Events for a lease that is not live: already ended, or granted before the stream's start. */
  untracked: number;
}

export interface LeasesState {
  live: Map<string, LiveLease>;
  /** The live lease of each agent that holds one (derived from `live`). */
  byAgent: Map<string, string>;
  /** Grants per pool, ever. */
  granted: Map<string, number>;
  ended: Record<LeaseEndState, number>;
  ignored: number;
  untracked: number;
}

const LEASE_EVENTS = [
  "AgentLeased",
  "AgentLeaseRenewed",
  "AgentReleased",
  "AgentLeaseExpired",
  "AgentLeaseRevoked",
  "AgentFailed",
  "AgentDrainRequested",
  "AgentTimedOut",
  "AgentUntrusted",
] as const;
/** What the reducer reads of each (src/events/reads.ts). */
const READS = {
  AgentLeased: ["leaseId", "poolId", "holder", "expiresAt"],
  AgentLeaseRenewed: ["leaseId", "expiresAt"],
  AgentReleased: ["leaseId"],
  AgentLeaseExpired: ["leaseId", "deadline"],
  AgentLeaseRevoked: ["leaseId"],
  AgentDrainRequested: ["deadline"],
  AgentTimedOut: ["deadline"],
} as const satisfies Reads<(typeof LEASE_EVENTS)[number]>;
type LeaseEvent = ReadView<(typeof LEASE_EVENTS)[number], typeof READS>;

function liveLeaseOf(s: LeasesState, agentId: string): LiveLease | undefined {
  const id = s.byAgent.get(agentId);
  return id === undefined ? undefined : s.live.get(id);
}

function end(s: LeasesState, l: LiveLease, how: LeaseEndState): void {
  s.live.delete(l.id);
  s.byAgent.delete(l.agentId);
  s.ended[how]++;
}

const zeroEnded = (): Record<LeaseEndState, number> => ({ released: 0, expired: 0, revoked: 0 });

export const leaseSlice = defineSlice({
  handles: LEASE_EVENTS,
  reads: READS,

  init: (): LeasesState => ({
    live: new Map(),
    byAgent: new Map(),
    granted: new Map(),
    ended: zeroEnded(),
    ignored: 0,
    untracked: 0,
  }),

  reduce(s: LeasesState, e: LeaseEvent, meta: RecordMeta): void {
    const agentId = e.aggregate.id;
    // Not lease events, but they end a lease as the agent machine does: never counted as ignored.
    if (
      e.type === "AgentFailed" ||
      e.type === "AgentUntrusted" ||
      e.type === "AgentDrainRequested" ||
      e.type === "AgentTimedOut"
    ) {
      const held = liveLeaseOf(s, agentId);
      if (!held) return;
      // An untrusted agent is recycled at once (machines/agent.ts): corral took it from the holder.
      if (e.type === "AgentFailed" || e.type === "AgentUntrusted") end(s, held, "revoked");
      // leased → draining: the drain deadline is armed once (a second drain request is rejected).
      else if (e.type === "AgentDrainRequested") held.drainDeadline ??= e.data.deadline;
      // draining → stopping when the drain deadline passes first: the holder loses the agent.
      else if (held.drainDeadline === e.data.deadline) end(s, held, "revoked");
      return;
    }
    const id = e.data.leaseId;
    const l = s.live.get(id);
    if (e.type === "AgentLeased") {
      if (l || !namesAgent(id, agentId) || liveLeaseOf(s, agentId)) {
        s.ignored++;
        return;
      }
      const { poolId, holder, expiresAt } = e.data;
      s.live.set(id, {
        id,
        poolId,
        agentId,
        holder,
        grantedAt: e.at,
        expiresAt,
        renewals: 0,
        grantedSeq: meta.seq,
        drainDeadline: null,
      });
      s.byAgent.set(agentId, id);
      s.granted.set(poolId, (s.granted.get(poolId) ?? 0) + 1);
      return;
    }
    if (!l || l.agentId !== agentId) {
      s.untracked++;
      return;
    }
    switch (e.type) {
      case "AgentLeaseRenewed":
        if (e.data.expiresAt <= l.expiresAt) break; // only an extension is a renewal
        l.expiresAt = e.data.expiresAt;
        l.renewals++;
        return;
      case "AgentLeaseExpired":
        if (e.data.deadline !== l.expiresAt) break; // a stale timer: it was renewed since
        end(s, l, "expired");
        return;
      case "AgentReleased":
        end(s, l, "released");
        return;
      case "AgentLeaseRevoked":
        end(s, l, "revoked");
        return;
    }
    s.ignored++;
  },

  save(s: LeasesState): LeasesView {
    const live = [...s.live.values()].sort((a, b) => a.grantedSeq - b.grantedSeq).map((l) => ({ ...l }));
    const liveBy = new Map<string, number>();
    for (const l of live) liveBy.set(l.poolId, (liveBy.get(l.poolId) ?? 0) + 1);
    let granted = 0;
    for (const n of s.granted.values()) granted += n;
    return {
      live,
      granted,
      ended: { ...s.ended },
      pools: [...s.granted]
        .sort(([a], [b]) => compare(a, b))
        .map(([poolId, n]) => ({ poolId, granted: n, live: liveBy.get(poolId) ?? 0 })),
      ignored: s.ignored,
      untracked: s.untracked,
    };
  },

  load(v: LeasesView): LeasesState {
    if (!Array.isArray(v?.live) || !Array.isArray(v.pools) || typeof v.ended !== "object") {
      throw new TypeError("not a leases view");
    }
    const s: LeasesState = {
      live: new Map(),
      byAgent: new Map(),
      granted: new Map(),
      ended: zeroEnded(),
      ignored: num(v.ignored),
      untracked: num(v.untracked),
    };
    for (const k of LEASE_END_STATES) s.ended[k] = num(v.ended[k]);
    // The total and the live counts per pool are derived again on save.
    for (const p of v.pools) {
      if (typeof p?.poolId !== "string") throw new TypeError("not a lease pool count");
      s.granted.set(p.poolId, num(p.granted));
    }
    for (const l of v.live) {
      if (typeof l?.id !== "string" || typeof l.poolId !== "string" || !s.granted.has(l.poolId)) {
        throw new TypeError("not a live lease");
      }
      s.live.set(l.id, { ...l, drainDeadline: typeof l.drainDeadline === "number" ? l.drainDeadline : null });
      s.byAgent.set(l.agentId, l.id);
    }
    return s;
  },
});

/**
 * How lease `leaseId` stands in its agent's history: "granted" while held, else how it ended;
 * undefined when the agent never held it. For the error a client gets on a lease it no longer holds.
 */
export function leaseOutcome(
  agentEvents: readonly CorralEvent[],
  leaseId: string,
): "granted" | LeaseEndState | undefined {
  let state: "granted" | LeaseEndState | undefined;
  for (const e of agentEvents) {
    // The agent failed, was found untrusted, or its drain deadline passed while the lease was
    // held: the lease ended (corral took the agent back).
    const takenBack = e.type === "AgentFailed" || e.type === "AgentUntrusted" || e.type === "AgentTimedOut";
    if (takenBack && state === "granted") state = "revoked";
    if (!("leaseId" in e.data) || e.data.leaseId !== leaseId) continue;
    if (e.type === "AgentLeased") state = "granted";
    else if (e.type === "AgentReleased") state = "released";
    else if (e.type === "AgentLeaseExpired") state = "expired";
    else if (e.type === "AgentLeaseRevoked") state = "revoked";
  }
  return state;
}
