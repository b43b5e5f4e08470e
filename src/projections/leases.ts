import { type EventOfKind, typesOfKind } from "../events/catalogue.ts";
import { compare, num } from "./agents.ts";
import { defineSlice, type RecordMeta } from "./slice.ts";

/**
 * The lease slice: granted leases individually, counts for ended ones (by how they ended) and
 * grants per pool over all time (a pool's `totalLeases`). Events are checked against the lease's
 * state as machines/lease.ts does (a renewal must extend, an expiry must be for the current
 * expiresAt); one that does not fit is counted as ignored and changes nothing.
 */

export const LEASE_END_STATES = ["released", "expired", "revoked"] as const;
export type LeaseEndState = (typeof LEASE_END_STATES)[number];

export interface LiveLease {
  id: string;
  poolId: string;
  agentId: string;
  holder: string;
  /** Envelope time of its LeaseGranted. */
  grantedAt: number;
  /** When it runs out unless renewed (the latest renewal's). */
  expiresAt: number;
  renewals: number;
  grantedSeq: number;
}

export interface LeasesView {
  /** Granted leases now, oldest first (by the sequence of their LeaseGranted). */
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
  /** Grants per pool, ever. */
  granted: Map<string, number>;
  ended: Record<LeaseEndState, number>;
  ignored: number;
  untracked: number;
}

type LeaseEvent = EventOfKind<"lease">;

const zeroEnded = (): Record<LeaseEndState, number> => ({ released: 0, expired: 0, revoked: 0 });

export const leaseSlice = defineSlice({
  handles: typesOfKind("lease"),

  init: (): LeasesState => ({
    live: new Map(),
    granted: new Map(),
    ended: zeroEnded(),
    ignored: 0,
    untracked: 0,
  }),

  reduce(s: LeasesState, e: LeaseEvent, meta: RecordMeta): void {
    const id = e.aggregate.id;
    const l = s.live.get(id);
    if (e.type === "LeaseGranted") {
      if (l) {
        s.ignored++;
        return;
      }
      const { poolId, agentId, holder, expiresAt } = e.data;
      s.live.set(id, {
        id,
        poolId,
        agentId,
        holder,
        grantedAt: e.at,
        expiresAt,
        renewals: 0,
        grantedSeq: meta.seq,
      });
      s.granted.set(poolId, (s.granted.get(poolId) ?? 0) + 1);
      return;
    }
    if (!l) {
      s.untracked++;
      return;
    }
    switch (e.type) {
      case "LeaseRenewed":
        if (e.data.expiresAt <= l.expiresAt) break; // only an extension is a renewal
        l.expiresAt = e.data.expiresAt;
        l.renewals++;
        return;
      case "LeaseExpired":
        if (e.data.deadline !== l.expiresAt) break; // a stale timer: it was renewed since
        s.live.delete(id);
        s.ended.expired++;
        return;
      case "LeaseReleased":
        s.live.delete(id);
        s.ended.released++;
        return;
      case "LeaseRevoked":
        s.live.delete(id);
        s.ended.revoked++;
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
      s.live.set(l.id, { ...l });
    }
    return s;
  },
});
