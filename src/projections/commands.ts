import { type EventOfKind, typesOfKind } from "../events/catalogue.ts";
import type { Reads, ReadView } from "../events/reads.ts";
import { defineSlice, type RecordMeta } from "./slice.ts";

/**
 * The command slice: each live command individually, counts only for finished ones, so the
 * state stays bounded however long the stream grows.
 *
 * It is a read model of what was stored, not a second copy of the command machine: it checks
 * every transition against the command's state itself instead of trusting the machine's guards,
 * so an event that makes no sense where it lands (a second CommandCreated, an ack while pending,
 * anything for a command it never saw created) is counted and otherwise changes nothing.
 */

export const LIVE_STATES = ["pending", "sent", "acked"] as const;
export const FINAL_STATES = ["completed", "failed", "cancelled"] as const;
export type LiveState = (typeof LIVE_STATES)[number];
export type FinalState = (typeof FINAL_STATES)[number];
export type CommandState = LiveState | FinalState;

export interface LiveCommand {
  id: string;
  agentId: string;
  action: string;
  state: LiveState;
  /** Dispatch attempt in progress (1 for the first). */
  attempt: number;
  retries: number;
  maxRetries: number;
  /** Envelope times (ms) of the CommandCreated and of the last event that changed it. */
  createdAt: number;
  updatedAt: number;
  createdSeq: number;
  lastSeq: number;
}

/** The plain form: what checkpoints hold and what the CLI prints. */
export interface CommandsView {
  /** Live states: commands in them now. Final states: commands that ended there, ever. */
  byState: Record<CommandState, number>;
  /** Live commands, oldest first (by the sequence of their CommandCreated). */
  live: LiveCommand[];
  /** Live commands per agent, by agent id. */
  agents: { agentId: string; live: number }[];
  /** Events that did not fit the command's state (not applied). */
  ignored: number;
  /** Events for a command that is not live: already finished, or created before the stream's start. */
  untracked: number;
}

export interface CommandsState {
  // Maps, not objects: ids may be "__proto__" or "constructor" (both valid ids).
  live: Map<string, LiveCommand>;
  agents: Map<string, number>;
  count: Record<CommandState, number>;
  ignored: number;
  untracked: number;
}

type CommandType = EventOfKind<"command">["type"];
const READS = {
  CommandCreated: ["agentId", "action", "maxRetries"],
  CommandSent: ["attempt"],
  CommandAcked: ["attempt"],
} as const satisfies Reads<CommandType>;
type CommandEvent = ReadView<CommandType, typeof READS>;

const zeroCounts = (): Record<CommandState, number> => ({
  pending: 0,
  sent: 0,
  acked: 0,
  completed: 0,
  failed: 0,
  cancelled: 0,
});

function addAgent(s: CommandsState, agentId: string, delta: number): void {
  const n = (s.agents.get(agentId) ?? 0) + delta;
  if (n > 0) s.agents.set(agentId, n);
  else s.agents.delete(agentId); // only agents with live commands: keeps the state bounded
}

function move(s: CommandsState, c: LiveCommand, to: LiveState, e: CommandEvent, meta: RecordMeta): void {
  s.count[c.state]--;
  s.count[to]++;
  c.state = to;
  c.updatedAt = e.at;
  c.lastSeq = meta.seq;
}

function finish(s: CommandsState, c: LiveCommand, to: FinalState): void {
  s.count[c.state]--;
  s.count[to]++;
  s.live.delete(c.id);
  addAgent(s, c.agentId, -1);
}

export const commandSlice = defineSlice({
  handles: typesOfKind("command"),
  reads: READS,

  init: (): CommandsState => ({
    live: new Map(),
    agents: new Map(),
    count: zeroCounts(),
    ignored: 0,
    untracked: 0,
  }),

  reduce(s: CommandsState, e: CommandEvent, meta: RecordMeta): void {
    const id = e.aggregate.id;
    const c = s.live.get(id);
    if (e.type === "CommandCreated") {
      if (c) {
        s.ignored++;
        return;
      }
      s.live.set(id, {
        id,
        agentId: e.data.agentId,
        action: e.data.action,
        state: "pending",
        attempt: 1,
        retries: 0,
        maxRetries: e.data.maxRetries,
        createdAt: e.at,
        updatedAt: e.at,
        createdSeq: meta.seq,
        lastSeq: meta.seq,
      });
      s.count.pending++;
      addAgent(s, e.data.agentId, 1);
      return;
    }
    if (!c) {
      s.untracked++;
      return;
    }
    switch (e.type) {
      case "CommandSent":
        if (c.state !== "pending") break;
        move(s, c, "sent", e, meta);
        c.attempt = e.data.attempt;
        return;
      case "CommandAcked":
        if (c.state !== "sent") break;
        move(s, c, "acked", e, meta);
        c.attempt = e.data.attempt;
        return;
      case "CommandCompleted":
        if (c.state === "pending") break; // never handed to the agent: nothing could complete
        finish(s, c, "completed");
        return;
      case "CommandFailed":
        if (c.state === "pending") break;
        finish(s, c, "failed");
        return;
      case "CommandTimedOut":
        // Before the ack a timeout retries while retries remain; after it, it fails (no double run).
        if (c.state !== "acked" && c.retries < c.maxRetries) {
          move(s, c, "pending", e, meta);
          c.retries++;
          c.attempt++;
        } else {
          finish(s, c, "failed");
        }
        return;
      case "CommandCancelled":
        finish(s, c, "cancelled");
        return;
    }
    s.ignored++;
  },

  save: (s: CommandsState): CommandsView => ({
    byState: { ...s.count },
    live: [...s.live.values()].sort((a, b) => a.createdSeq - b.createdSeq).map((c) => ({ ...c })),
    agents: [...s.agents]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([agentId, live]) => ({ agentId, live })),
    ignored: s.ignored,
    untracked: s.untracked,
  }),

  load(v: CommandsView): CommandsState {
    if (!Array.isArray(v?.live) || typeof v.byState !== "object") throw new TypeError("not a commands view");
    const s: CommandsState = {
      live: new Map(),
      agents: new Map(),
      count: zeroCounts(),
      ignored: num(v.ignored),
      untracked: num(v.untracked),
    };
    for (const f of FINAL_STATES) s.count[f] = num(v.byState[f]);
    // Live counts and per-agent counts are derived from the live list, so they cannot disagree.
    for (const c of v.live) {
      if (typeof c?.id !== "string" || !(LIVE_STATES as readonly string[]).includes(c.state)) {
        throw new TypeError("not a live command");
      }
      s.live.set(c.id, { ...c });
      s.count[c.state]++;
      addAgent(s, c.agentId, 1);
    }
    return s;
  },
});

function num(n: unknown): number {
  if (typeof n !== "number" || !Number.isFinite(n)) throw new TypeError("not a count");
  return n;
}
