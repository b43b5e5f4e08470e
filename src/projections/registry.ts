import type { Reads, ReadView } from "../events/reads.ts";
import { compare, num } from "./agents.ts";
import { defineSlice } from "./slice.ts";

/**
 * The identity registry: which certificate (thumbprint) each live agent registered, and the
 * verdict of its current generation. Thumbprint ⇄ agent is one-to-one: a thumbprint bound to one
 * agent is never bound to another (src/cp/session/register.ts refuses it; a stream that says
 * otherwise has the event counted as ignored). A new generation (AgentRecycled), AgentStopped and
 * AgentFailed evict the agent's row and free its thumbprint; an untrusted verdict drops the
 * binding (a successful re-register clears it again). The dialer reads a live copy of this state
 * (src/cp/session/live-registry.ts), so what it decides is what a replay rebuilds.
 */

export const REGISTRATION_STATES = ["registered", "untrusted", "unregistered"] as const;
export type RegistrationState = (typeof REGISTRATION_STATES)[number];

export interface Registration {
  agentId: string;
  /** The generation the verdict is for. */
  generation: number;
  state: RegistrationState;
  /** Why it is untrusted (an UNTRUSTED_REASONS value). */
  reason?: string;
  /** The registered certificate's SHA-256 (only while registered). */
  thumbprint?: string;
  peerCN?: string;
}

export interface RegistryView {
  /** Live agents by id (sorted), each with its registration. */
  agents: Registration[];
  registered: number;
  untrusted: number;
  /** Events that contradicted the registry (a stale generation, a thumbprint bound elsewhere). */
  ignored: number;
}

export interface RegistryState {
  agents: Map<string, Registration>;
  /** thumbprint → agent id, for every registered agent. */
  byThumbprint: Map<string, string>;
  ignored: number;
}

const REGISTRY_EVENTS = [
  "AgentRequested",
  "AgentRegistered",
  "AgentUntrusted",
  "AgentRecycled",
  "AgentStopped",
  "AgentFailed",
] as const;
/** What the reducer reads of each (src/events/reads.ts). */
const READS = {
  AgentRecycled: ["generation"],
  AgentRegistered: ["thumbprint", "peerCN", "generation"],
  AgentUntrusted: ["generation", "reason"],
} as const satisfies Reads<(typeof REGISTRY_EVENTS)[number]>;
type RegistryEvent = ReadView<(typeof REGISTRY_EVENTS)[number], typeof READS>;

function unbind(s: RegistryState, r: Registration): void {
  if (r.thumbprint !== undefined && s.byThumbprint.get(r.thumbprint) === r.agentId)
    s.byThumbprint.delete(r.thumbprint);
}

function evict(s: RegistryState, agentId: string): void {
  const r = s.agents.get(agentId);
  if (!r) return;
  unbind(s, r);
  s.agents.delete(agentId);
}

/** The row an event of `generation` may change; null (and counted) for an older generation. */
function rowFor(s: RegistryState, agentId: string, generation: number): Registration | null {
  const r = s.agents.get(agentId);
  if (r && r.generation > generation) {
    s.ignored++;
    return null;
  }
  if (r && r.generation === generation) return r;
  if (r) evict(s, agentId);
  const fresh: Registration = { agentId, generation, state: "unregistered" };
  s.agents.set(agentId, fresh);
  return fresh;
}

export const registrySlice = defineSlice({
  handles: REGISTRY_EVENTS,
  reads: READS,

  init: (): RegistryState => ({ agents: new Map(), byThumbprint: new Map(), ignored: 0 }),

  reduce(s: RegistryState, e: RegistryEvent): void {
    const agentId = e.aggregate.id;
    switch (e.type) {
      case "AgentRequested":
        evict(s, agentId);
        s.agents.set(agentId, { agentId, generation: 1, state: "unregistered" });
        return;
      case "AgentRecycled":
        evict(s, agentId);
        s.agents.set(agentId, { agentId, generation: e.data.generation, state: "unregistered" });
        return;
      case "AgentStopped":
      case "AgentFailed":
        evict(s, agentId);
        return;
      case "AgentRegistered": {
        const owner = s.byThumbprint.get(e.data.thumbprint);
        if (owner !== undefined && owner !== agentId) {
          s.ignored++;
          return;
        }
        const r = rowFor(s, agentId, e.data.generation);
        if (!r) return;
        unbind(s, r);
        const { thumbprint, peerCN, generation } = e.data;
        s.agents.set(agentId, { agentId, generation, state: "registered", thumbprint, peerCN });
        s.byThumbprint.set(thumbprint, agentId);
        return;
      }
      case "AgentUntrusted": {
        const r = rowFor(s, agentId, e.data.generation);
        if (!r) return;
        unbind(s, r);
        s.agents.set(agentId, {
          agentId,
          generation: r.generation,
          state: "untrusted",
          reason: e.data.reason,
        });
        return;
      }
    }
  },

  save(s: RegistryState): RegistryView {
    const agents = [...s.agents.values()]
      .sort((a, b) => compare(a.agentId, b.agentId))
      .map((r) => ({ ...r }));
    return {
      agents,
      registered: agents.filter((r) => r.state === "registered").length,
      untrusted: agents.filter((r) => r.state === "untrusted").length,
      ignored: s.ignored,
    };
  },

  load(v: RegistryView): RegistryState {
    if (!Array.isArray(v?.agents)) throw new TypeError("not a registry view");
    const s: RegistryState = { agents: new Map(), byThumbprint: new Map(), ignored: num(v.ignored) };
    for (const r of v.agents) {
      if (typeof r.agentId !== "string" || !REGISTRATION_STATES.includes(r.state)) {
        throw new TypeError("not a registration");
      }
      s.agents.set(r.agentId, { ...r, generation: num(r.generation) });
      if (r.state === "registered" && typeof r.thumbprint === "string")
        s.byThumbprint.set(r.thumbprint, r.agentId);
    }
    return s;
  },
});

/** The agent's registration; undefined when the registry has no row for it (not live, or before any event). */
export function registrationOf(s: RegistryState, agentId: string): Registration | undefined {
  return s.agents.get(agentId);
}

/** The agent a thumbprint is registered to, if any. */
export function agentOfThumbprint(s: RegistryState, thumbprint: string): string | undefined {
  return s.byThumbprint.get(thumbprint);
}
