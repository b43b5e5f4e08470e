import type { InitStep } from "../agentd/protocol.ts";
import { type EventOfKind, typesOfKind } from "../events/catalogue.ts";
import { namesAgent } from "../events/lease-id.ts";
import type { Reads, ReadView } from "../events/reads.ts";
import { type AgentSessionView, foldSession, SESSION_READS, type SessionEvent } from "./agent-session.ts";
import type { RegistrationState } from "./registry.ts";
import { defineSlice, type RecordMeta } from "./slice.ts";

/**
 * The agent slice: each live agent individually (its state named as the agent machine names it,
 * `ready.idle`, `ready.leased` and `ready.expired` flattened to idle, leased and expired), counts only for agents that
 * stopped or failed, and the last few failures for diagnosis, so the state stays bounded.
 *
 * Like the command slice it checks every event against the agent's state itself, following
 * machines/agent.ts transition by transition (guards included: the generation of a step's fact,
 * the lease being released, the deadline a timeout is for). The stream only holds events the
 * machine accepted, so `ignored` stays 0 on a real stream; an event that does not fit is
 * counted there and changes nothing.
 *
 * It folds each agent's registration and init plan's progress as the machine keeps them, and its
 * session's events too (kind `session`, agent-session.ts). Pool metrics (pools.ts) and host ports
 * (ports.ts) are derived from this slice's state.
 */

export const AGENT_LIVE_STATES = [
  "requested",
  "creating",
  "starting",
  "connecting",
  "initializing",
  "idle",
  "leased",
  "expired",
  "draining",
  "recycling",
  "stopping",
] as const;
export const AGENT_END_STATES = ["stopped", "failed"] as const;
export type AgentLiveState = (typeof AGENT_LIVE_STATES)[number];
export type AgentEndState = (typeof AGENT_END_STATES)[number];
export type AgentState = AgentLiveState | AgentEndState;

/** Failures kept for diagnosis (the most recent ones). */
export const MAX_FAILURES = 20;

export const INIT_STATES = ["pending", "running", "completed"] as const;

/**
 * The init plan of the current generation (src/cp/init/): pending until InitStarted, running with
 * the step under way or last done (index from 0, of the plan's step count), completed. A failed
 * plan fails the agent. After a reconnect the plan starts again from InitStarted.
 */
export interface InitProgress {
  state: (typeof INIT_STATES)[number];
  step?: InitStep;
  index?: number;
  of?: number;
}

/** The verdict on the current generation's certificate (the machine's `identity` / `untrusted`). */
export interface AgentRegistration {
  state: RegistrationState;
  reason?: string;
}

export interface LiveAgent {
  id: string;
  poolId: string;
  runtime: "docker" | "process";
  state: AgentLiveState;
  /** Instance generation: 1 when requested, +1 per recycle. */
  generation: number;
  /** The current generation's instance (container or process record); null until created. */
  instanceId: string | null;
  /** Host ports of the current generation (empty until allocated, cleared by a recycle). */
  ports: number[];
  leaseId: string | null;
  /** When its lease runs out unless renewed (only an expiry for that time counts). */
  leaseExpiresAt: number | null;
  /** Leases over the agent's whole life. */
  leasesServed: number;
  recycles: number;
  /** Envelope time of its AgentRequested. */
  createdAt: number;
  /** When the current generation became ready; null before. */
  readyAt: number | null;
  /** The armed deadline of the current step: only an AgentTimedOut for it counts. */
  deadline: number | null;
  /** Envelope time of the last event that changed it. */
  updatedAt: number;
  createdSeq: number;
  lastSeq: number;
  /** Its session to agentd; null before the first dial. */
  session: AgentSessionView | null;
  registration: AgentRegistration;
  init: InitProgress;
}

export interface AgentFailure {
  agentId: string;
  poolId: string;
  /** The step it failed in (as reported, or the state whose deadline passed). */
  phase: string;
  code: string;
  message: string;
  at: number;
}

/** Per pool, over all time (the pool's live counts are derived from `live`). */
export interface AgentPoolTotals {
  poolId: string;
  /** AgentRecycled: generations ended by a recycle. */
  recycles: number;
  /** AgentRegistered / AgentUntrusted: verdicts over all time (a re-register after a reconnect counts again). */
  registered: number;
  untrusted: number;
  stopped: number;
  failed: number;
}

/** The plain form: what checkpoints hold and what the CLI prints. */
export interface AgentsView {
  /** Live states: agents in them now. stopped / failed: agents that ended there, ever. */
  byState: Record<AgentState, number>;
  /** Live agents, oldest first (by the sequence of their AgentRequested). */
  live: LiveAgent[];
  /** Live agents by the verdict on their current generation. */
  byRegistration: Record<RegistrationState, number>;
  /** Lifetime counts per pool, by pool id. */
  pools: AgentPoolTotals[];
  /** The last MAX_FAILURES failures, oldest first. */
  failures: AgentFailure[];
  /** Events that did not fit the agent's state (not applied). */
  ignored: number;
  /** Events for an agent that is not live: already ended, or requested before the stream's start. */
  untracked: number;
}

export interface AgentsState {
  // Maps, not objects: ids may be "__proto__" or "constructor" (both valid ids).
  live: Map<string, LiveAgent>;
  pools: Map<string, AgentPoolTotals>;
  count: Record<AgentState, number>;
  failures: AgentFailure[];
  ignored: number;
  untracked: number;
}

type AgentType = EventOfKind<"agent">["type"];
/** What the reducer reads of each agent event (src/events/reads.ts). */
const AGENT_READS = {
  AgentRequested: ["poolId", "runtime", "deadline"],
  AgentPortsAllocated: ["generation", "ports"],
  AgentCreated: ["generation", "instanceId"],
  AgentStarted: ["generation"],
  AgentLeased: ["poolId", "leaseId", "expiresAt"],
  AgentLeaseRenewed: ["leaseId", "expiresAt"],
  AgentReleased: ["leaseId"],
  AgentLeaseRevoked: ["leaseId"],
  AgentLeaseExpired: ["leaseId", "deadline"],
  AgentRecycleRequested: ["deadline"],
  AgentRecycled: ["generation", "deadline"],
  AgentDrainRequested: ["deadline"],
  AgentFailed: ["phase", "code", "message"],
  AgentTimedOut: ["deadline"],
  AgentRegistered: ["generation"],
  AgentUntrusted: ["generation", "reason"],
  InitStarted: ["generation", "stepCount", "deadline"],
  InitStepStarted: ["generation", "index", "name"],
  InitStepCompleted: ["generation", "index", "name"],
  InitStepFailed: ["generation", "index", "name"],
  InitCompleted: ["generation"],
  InitFailed: ["generation", "step", "detail", "reason"],
} as const satisfies Reads<AgentType>;
type AgentEvent = ReadView<AgentType, typeof AGENT_READS>;
type SliceEvent = AgentEvent | SessionEvent;

const zeroCounts = (): Record<AgentState, number> => ({
  requested: 0,
  creating: 0,
  starting: 0,
  connecting: 0,
  initializing: 0,
  idle: 0,
  leased: 0,
  expired: 0,
  draining: 0,
  recycling: 0,
  stopping: 0,
  stopped: 0,
  failed: 0,
});

/** Where the machine's `AgentDrainRequested` goes from each state (absent: not handled). */
const DRAIN: Partial<Record<AgentLiveState, AgentLiveState>> = {
  requested: "stopping",
  creating: "stopping",
  starting: "stopping",
  connecting: "stopping",
  initializing: "stopping",
  idle: "stopping",
  expired: "stopping",
  recycling: "stopping",
  leased: "draining",
};

/** States whose deadline passing fails the agent (draining stops instead; ready has none). */
const TIMEOUT_FAILS: ReadonlySet<AgentLiveState> = new Set([
  "requested",
  "creating",
  "starting",
  "connecting",
  "initializing",
  "recycling",
  "stopping",
]);

/** Where an AgentUntrusted of the current generation takes the agent (absent: not handled); a lease ends. */
const UNTRUSTED: Partial<Record<AgentLiveState, AgentLiveState>> = {
  connecting: "recycling",
  initializing: "recycling",
  idle: "recycling",
  leased: "recycling",
  expired: "recycling",
  draining: "stopping",
};

function poolTotals(s: AgentsState, poolId: string): AgentPoolTotals {
  let t = s.pools.get(poolId);
  if (!t) {
    t = { poolId, recycles: 0, registered: 0, untrusted: 0, stopped: 0, failed: 0 };
    s.pools.set(poolId, t);
  }
  return t;
}

function move(s: AgentsState, a: LiveAgent, to: AgentLiveState, e: AgentEvent, meta: RecordMeta): void {
  s.count[a.state]--;
  s.count[to]++;
  a.state = to;
  touch(a, e, meta);
}

function touch(a: LiveAgent, e: SliceEvent, meta: RecordMeta): void {
  a.updatedAt = e.at;
  a.lastSeq = meta.seq;
}

/** Leased, or draining until its lease ends, with this lease. */
function holds(a: LiveAgent, leaseId: string): boolean {
  return (a.state === "leased" || a.state === "draining") && a.leaseId === leaseId;
}

function unlease(a: LiveAgent): void {
  a.leaseId = null;
  a.leaseExpiresAt = null;
}

function end(s: AgentsState, a: LiveAgent, to: AgentEndState): void {
  s.count[a.state]--;
  s.count[to]++;
  s.live.delete(a.id);
  poolTotals(s, a.poolId)[to]++;
}

function fail(s: AgentsState, a: LiveAgent, f: { phase: string; code: string; message: string }, at: number) {
  s.failures.push({ agentId: a.id, poolId: a.poolId, phase: f.phase, code: f.code, message: f.message, at });
  if (s.failures.length > MAX_FAILURES) s.failures.splice(0, s.failures.length - MAX_FAILURES);
  end(s, a, "failed");
}

/** Applies `e` to a live agent as the agent machine would; false when the machine rejects it. */
function step(s: AgentsState, a: LiveAgent, e: AgentEvent, meta: RecordMeta): boolean {
  switch (e.type) {
    case "AgentRequested":
      return false; // only from `new`: a live agent was requested already
    case "AgentPortsAllocated":
      if (a.state !== "requested" || e.data.generation !== a.generation) return false;
      a.ports = [...e.data.ports];
      move(s, a, "creating", e, meta);
      return true;
    case "AgentCreated":
      if (a.state !== "creating" || e.data.generation !== a.generation) return false;
      a.instanceId = e.data.instanceId;
      move(s, a, "starting", e, meta);
      return true;
    case "AgentStarted":
      // The instance runs; it is ready only once registered and initialised.
      if (a.state !== "starting" || e.data.generation !== a.generation) return false;
      move(s, a, "connecting", e, meta);
      return true;
    case "AgentLeased":
      if (a.state !== "idle" || e.data.poolId !== a.poolId || !namesAgent(e.data.leaseId, a.id)) return false;
      a.leaseId = e.data.leaseId;
      a.leaseExpiresAt = e.data.expiresAt;
      a.leasesServed++;
      move(s, a, "leased", e, meta);
      return true;
    case "AgentLeaseRenewed":
      if (!holds(a, e.data.leaseId) || e.data.expiresAt <= (a.leaseExpiresAt ?? 0)) return false;
      a.leaseExpiresAt = e.data.expiresAt;
      touch(a, e, meta);
      return true;
    case "AgentReleased":
    case "AgentLeaseRevoked":
      if (!holds(a, e.data.leaseId)) return false;
      unlease(a);
      move(s, a, a.state === "leased" ? "idle" : "stopping", e, meta);
      return true;
    case "AgentLeaseExpired":
      if (!holds(a, e.data.leaseId) || e.data.deadline !== a.leaseExpiresAt) return false;
      unlease(a);
      move(s, a, a.state === "leased" ? "expired" : "stopping", e, meta);
      return true;
    case "AgentRecycleRequested":
      // Never under a holder: only an idle agent, or one whose lease expired.
      if (a.state !== "idle" && a.state !== "expired") return false;
      a.deadline = e.data.deadline;
      move(s, a, "recycling", e, meta);
      return true;
    case "AgentRecycled":
      if (a.state !== "recycling" || e.data.generation !== a.generation + 1) return false;
      a.generation = e.data.generation;
      a.recycles++;
      a.ports = [];
      a.instanceId = null;
      unlease(a);
      a.readyAt = null;
      a.init = { state: "pending" };
      a.registration = { state: "unregistered" };
      a.deadline = e.data.deadline;
      poolTotals(s, a.poolId).recycles++;
      move(s, a, "requested", e, meta);
      return true;
    case "AgentDrainRequested": {
      const to = DRAIN[a.state];
      if (!to) return false;
      a.deadline = e.data.deadline;
      move(s, a, to, e, meta);
      return true;
    }
    case "AgentStopped":
      if (a.state !== "stopping") return false;
      end(s, a, "stopped");
      return true;
    case "AgentFailed":
      fail(s, a, e.data, e.at); // from any live state
      return true;
    case "AgentTimedOut":
      if (a.deadline === null || e.data.deadline !== a.deadline) return false; // a stale timer
      if (a.state === "draining") {
        unlease(a);
        move(s, a, "stopping", e, meta);
        return true;
      }
      if (!TIMEOUT_FAILS.has(a.state)) return false;
      fail(
        s,
        a,
        { phase: a.state, code: "timeout", message: `${a.state} did not finish before its deadline` },
        e.at,
      );
      return true;
    case "AgentRegistered":
    case "AgentUntrusted":
    case "InitStarted":
    case "InitStepStarted":
    case "InitStepCompleted":
    case "InitStepFailed":
    case "InitCompleted":
    case "InitFailed":
      return e.data.generation === a.generation && stepIdentityOrInit(s, a, e, meta);
  }
}

type IdentityOrInitEvent = AgentEvent & { data: { generation: number } };

/** Registration and the init plan, for an event of the current generation. */
function stepIdentityOrInit(s: AgentsState, a: LiveAgent, e: IdentityOrInitEvent, meta: RecordMeta): boolean {
  switch (e.type) {
    case "AgentRegistered":
      if (a.state !== "connecting") return false;
      poolTotals(s, a.poolId).registered++;
      a.registration = { state: "registered" };
      move(s, a, "initializing", e, meta);
      return true;
    case "AgentUntrusted": {
      const to = UNTRUSTED[a.state];
      if (!to) return false;
      poolTotals(s, a.poolId).untrusted++;
      a.registration = { state: "untrusted", reason: e.data.reason };
      unlease(a);
      move(s, a, to, e, meta);
      return true;
    }
    case "InitStarted":
      if (a.state !== "initializing") return false;
      a.init = { state: "running", index: 0, of: e.data.stepCount };
      a.deadline = e.data.deadline;
      touch(a, e, meta);
      return true;
    case "InitStepStarted":
    case "InitStepCompleted":
    case "InitStepFailed":
      // Within the plan InitStarted announced (machines/agent.ts, `inPlan`); a failed step is
      // followed by InitFailed, or (session lost) by the next session's InitStarted.
      if (a.state !== "initializing" || a.init.of === undefined || e.data.index >= a.init.of) return false;
      a.init = { state: "running", step: e.data.name, index: e.data.index, of: a.init.of };
      touch(a, e, meta);
      return true;
    case "InitCompleted":
      if (a.state !== "initializing") return false;
      a.init = { state: "completed" };
      a.readyAt = e.at;
      a.deadline = null;
      move(s, a, "idle", e, meta);
      return true;
    case "InitFailed": {
      if (a.state !== "initializing") return false;
      const message = `init step ${e.data.step} failed: ${e.data.detail}`;
      fail(s, a, { phase: "initializing", code: `init_${e.data.reason}`, message }, e.at);
      return true;
    }
    default:
      return false;
  }
}

/** A session event, for the live agent the session belongs to. */
function stepSession(a: LiveAgent, e: SessionEvent, meta: RecordMeta): boolean {
  const next = foldSession(a.session, e);
  if (!next) return false;
  a.session = next;
  touch(a, e, meta);
  return true;
}

// A value import from registry.ts would be a cycle (it imports compare and num from here).
const zeroRegistrations = (): Record<RegistrationState, number> => ({
  registered: 0,
  untrusted: 0,
  unregistered: 0,
});

const HANDLES = [...typesOfKind("agent"), ...typesOfKind("session")];

export const agentSlice = defineSlice({
  handles: HANDLES,
  reads: { ...AGENT_READS, ...SESSION_READS },

  init: (): AgentsState => ({
    live: new Map(),
    pools: new Map(),
    count: zeroCounts(),
    failures: [],
    ignored: 0,
    untracked: 0,
  }),

  reduce(s: AgentsState, e: SliceEvent, meta: RecordMeta): void {
    const id = e.aggregate.id;
    const a = s.live.get(id);
    if (a) {
      const fits = isSessionEvent(e) ? stepSession(a, e, meta) : step(s, a, e, meta);
      if (!fits) s.ignored++;
      return;
    }
    if (e.type !== "AgentRequested") {
      s.untracked++;
      return;
    }
    s.live.set(id, requested(e, meta));
    s.count.requested++;
    poolTotals(s, e.data.poolId);
  },

  save: (s: AgentsState): AgentsView => {
    const byRegistration: Record<RegistrationState, number> = {
      registered: 0,
      untrusted: 0,
      unregistered: 0,
    };
    const live = [...s.live.values()].sort((a, b) => a.createdSeq - b.createdSeq).map(copyAgent);
    for (const a of live) byRegistration[a.registration.state]++;
    return {
      byState: { ...s.count },
      live,
      byRegistration,
      pools: [...s.pools.values()].sort((a, b) => compare(a.poolId, b.poolId)).map((t) => ({ ...t })),
      failures: s.failures.map((f) => ({ ...f })),
      ignored: s.ignored,
      untracked: s.untracked,
    };
  },

  load(v: AgentsView): AgentsState {
    if (!Array.isArray(v?.live) || !Array.isArray(v.pools) || !Array.isArray(v.failures)) {
      throw new TypeError("not an agents view");
    }
    const s: AgentsState = {
      live: new Map(),
      pools: new Map(),
      count: zeroCounts(),
      failures: v.failures.map((f) => ({ ...f })),
      ignored: num(v.ignored),
      untracked: num(v.untracked),
    };
    // Ended counts are the sums of the per-pool totals, live counts come from the live list:
    // neither can disagree with what it counts.
    for (const t of v.pools) {
      if (typeof t?.poolId !== "string") throw new TypeError("not an agent pool total");
      const copy = {
        poolId: t.poolId,
        recycles: num(t.recycles),
        registered: num(t.registered),
        untrusted: num(t.untrusted),
        stopped: num(t.stopped),
        failed: num(t.failed),
      };
      s.pools.set(t.poolId, copy);
      s.count.stopped += copy.stopped;
      s.count.failed += copy.failed;
    }
    for (const a of v.live) {
      if (
        typeof a?.id !== "string" ||
        typeof a.poolId !== "string" ||
        !(AGENT_LIVE_STATES as readonly string[]).includes(a.state) ||
        !Array.isArray(a.ports) ||
        !(INIT_STATES as readonly string[]).includes(a.init?.state) ||
        !Object.hasOwn(zeroRegistrations(), a.registration?.state)
      ) {
        throw new TypeError("not a live agent");
      }
      s.live.set(a.id, copyAgent(a));
      s.count[a.state]++;
      poolTotals(s, a.poolId);
    }
    return s;
  },
});

const SESSION_TYPES: ReadonlySet<string> = new Set(typesOfKind("session"));

function isSessionEvent(e: SliceEvent): e is SessionEvent {
  return SESSION_TYPES.has(e.type);
}

function requested(e: Extract<AgentEvent, { type: "AgentRequested" }>, meta: RecordMeta): LiveAgent {
  return {
    id: e.aggregate.id,
    poolId: e.data.poolId,
    runtime: e.data.runtime,
    state: "requested",
    generation: 1,
    instanceId: null,
    ports: [],
    leaseId: null,
    leaseExpiresAt: null,
    leasesServed: 0,
    recycles: 0,
    createdAt: e.at,
    readyAt: null,
    deadline: e.data.deadline,
    updatedAt: e.at,
    createdSeq: meta.seq,
    lastSeq: meta.seq,
    session: null,
    registration: { state: "unregistered" },
    init: { state: "pending" },
  };
}

/** A copy sharing nothing with `a`. */
function copyAgent(a: LiveAgent): LiveAgent {
  return {
    ...a,
    ports: [...a.ports],
    session: a.session && { ...a.session },
    registration: { ...a.registration },
    init: { ...a.init },
  };
}

export function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function num(n: unknown): number {
  if (typeof n !== "number" || !Number.isFinite(n)) throw new TypeError("not a count");
  return n;
}
