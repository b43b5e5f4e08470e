import type { EventType } from "../events/catalogue.ts";
import { type AgentsState, compare } from "./agents.ts";
import { defineSlice } from "./slice.ts";

/**
 * Host ports held right now, derived on save from the agent slice's live agents: a generation's
 * AgentPortsAllocated gives them, and its AgentRecycled, AgentStopped or AgentFailed releases
 * them (an agent that is stopping still holds its ports until it has stopped). Nothing is kept
 * here, so it cannot disagree with the agents.
 */

export interface HeldPort {
  port: number;
  agentId: string;
  poolId: string;
}

export interface PortsView {
  /** Ports held now, by port (then agent id). */
  held: HeldPort[];
  /** Ports held now per pool name. */
  byPool: Record<string, number>;
  /** Ports held by more than one agent at once (the allocator's invariant broken); empty normally. */
  conflicts: number[];
}

/** Nothing of its own: the view is derived from the agents. */
export type PortsState = Record<string, never>;

export const portSlice = defineSlice<PortsState, PortsView, EventType, { agents: AgentsState }>({
  handles: [], // none: derived
  reads: {},

  init: (): PortsState => ({}),

  reduce(): void {},

  save(_s: PortsState, peers: { agents: AgentsState }): PortsView {
    const held: HeldPort[] = [];
    const byPool = new Map<string, number>();
    for (const a of peers.agents.live.values()) {
      for (const port of a.ports) held.push({ port, agentId: a.id, poolId: a.poolId });
      if (a.ports.length > 0) byPool.set(a.poolId, (byPool.get(a.poolId) ?? 0) + a.ports.length);
    }
    held.sort((x, y) => x.port - y.port || compare(x.agentId, y.agentId));
    const conflicts: number[] = [];
    for (let i = 1; i < held.length; i++) {
      const port = held[i]?.port;
      if (port !== undefined && port === held[i - 1]?.port && conflicts.at(-1) !== port) conflicts.push(port);
    }
    return {
      held,
      byPool: Object.fromEntries([...byPool].sort(([a], [b]) => compare(a, b))),
      conflicts,
    };
  },

  load(v: PortsView): PortsState {
    if (!Array.isArray(v?.held) || typeof v.byPool !== "object") throw new TypeError("not a ports view");
    return {};
  },
});
