import type { DoneMsg, ErrorMsg, ExecMsg, FromAgent } from "../../agentd/protocol.ts";

/**
 * What exec needs of the control plane's sessions to agentd: the part of the AgentSession and
 * Sessions contract (src/cp/session/) it uses, so the dispatcher depends on nothing else of them.
 */

export type OutMsg = Extract<FromAgent, { t: "out" }>;

export interface ExecSession {
  readonly agentId: string;
  /** Sends the exec frame; resolves with its done or error frame, rejects when the session ends first. */
  run(msg: ExecMsg, on?: { ack?(): void; output?(o: OutMsg): void }): Promise<DoneMsg | ErrorMsg>;
  cancel(id: string): void;
}

export interface ExecSessions {
  /** The agent's live, registered session, if it has one. */
  get(agentId: string): ExecSession | undefined;
  /** Called once per established, registered session: queued commands go out then. */
  onReady(listener: (s: ExecSession) => void): void;
}
