import type { EventOfKind } from "../events/catalogue.ts";
import type { Reads, ReadView } from "../events/reads.ts";

/**
 * An agent's session to its agentd as the worldview shows it: the session machine's state
 * (machines/session.ts), folded by the agents slice from the `session` aggregate (id = the agent's
 * id). It follows that machine's rules, not the agent's generation: a session may still report on
 * an older instance after the agent was recycled, until the next dial names the new generation.
 */

export const SESSION_STATES = ["connecting", "connected", "broken", "failed"] as const;
export type SessionStateName = (typeof SESSION_STATES)[number];

export interface AgentSessionView {
  state: SessionStateName;
  /** The agent generation the session is for. */
  generation: number;
  /** Why it broke or failed. */
  reason?: string;
}

type SessionType = EventOfKind<"session">["type"];
/** What foldSession reads of each session event (src/events/reads.ts). */
export const SESSION_READS = {
  SessionConnecting: ["generation"],
  SessionConnected: ["generation"],
  SessionBroken: ["generation", "reason"],
  SessionFailed: ["generation", "reason"],
} as const satisfies Reads<SessionType>;
export type SessionEvent = ReadView<SessionType, typeof SESSION_READS>;

/** The session after `e`, or null when the session machine refuses `e` (nothing changes). */
export function foldSession(s: AgentSessionView | null, e: SessionEvent): AgentSessionView | null {
  const g = e.data.generation;
  switch (e.type) {
    case "SessionConnecting":
      // From any state, for the current generation or a newer one.
      return g >= (s?.generation ?? 0) ? { state: "connecting", generation: g } : null;
    case "SessionConnected":
      return s?.state === "connecting" && s.generation === g ? { state: "connected", generation: g } : null;
    case "SessionBroken":
      return s?.state === "connected" && s.generation === g
        ? { state: "broken", generation: g, reason: e.data.reason }
        : null;
    case "SessionFailed":
      return s && s.state !== "failed" && s.generation === g
        ? { state: "failed", generation: g, reason: e.data.reason }
        : null;
  }
}
