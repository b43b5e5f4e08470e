import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { type AnyMachineSnapshot, type AnyStateMachine, initialTransition, transition } from "xstate";
import { agentMachine } from "../machines/agent.ts";
import { poolMachine } from "../machines/pool.ts";
import { sessionMachine } from "../machines/session.ts";
import { step } from "../machines/step.ts";
import { decode, encode } from "../src/codec/msgpack.ts";
import type { CorralEvent, DataInputOf, EventType } from "../src/events/catalogue.ts";
import { createEvent, typesOfKind } from "../src/events/catalogue.ts";
import type { AggregateKind, AggregateRef, Envelope } from "../src/events/envelope.ts";
import { agentOfLease, LEASE_ID } from "../src/events/lease-id.ts";
import { AGENT_LIVE_STATES, MAX_FAILURES } from "../src/projections/agents.ts";
import { formatWorldview } from "../src/projections/format.ts";
import { type LeaseEndState, leaseOutcome } from "../src/projections/leases.ts";
import {
  foldWorldview,
  poolMetrics,
  WORLDVIEW_VERSION,
  type Worldview,
  worldviewProjection,
} from "../src/projections/worldview.ts";
import type { StoredRecord } from "../src/store/records.ts";
import { poolConfig } from "./helpers/events.ts";

const T0 = Date.UTC(2025, 0, 1);

/** Records as a reader would hand them over, numbered from 1. */
function records(events: readonly Envelope[]): StoredRecord[] {
  return events.map((event, i) => record(event, i + 1));
}

function record(event: Envelope, seq: number): StoredRecord {
  return { seq, subject: `corral.evt.${event.aggregate.kind}.x`, time: T0 + seq - 1, event } as StoredRecord;
}

/** Folds in pieces cut at `cuts`; between pieces, a msgpack checkpoint round trip, as the runner does. */
function foldInChunks(recs: readonly StoredRecord[], cuts: readonly number[]): Worldview {
  const bounds = [...new Set(cuts.map((c) => c % (recs.length + 1)))].sort((x, y) => x - y);
  let state = worldviewProjection.init();
  let from = 0;
  for (const end of [...bounds, recs.length]) {
    for (const r of recs.slice(from, end)) worldviewProjection.apply(state, r);
    from = Math.max(from, end);
    state = worldviewProjection.load(decode(encode(worldviewProjection.save(state))) as Worldview);
  }
  return worldviewProjection.save(state);
}

const MACHINES: Partial<Record<AggregateKind, AnyStateMachine>> = {
  pool: poolMachine,
  agent: agentMachine,
  session: sessionMachine,
};

const THUMB = "ab".repeat(32);
/** Identity and init facts of generation `g` (src/events/agent.ts), as the session layer records them. */
const identityAndInit = (g: number, extra: number): [EventType, unknown][] => [
  ["AgentRegistered", { generation: g, thumbprint: THUMB, peerCN: "cn" }],
  ["AgentUntrusted", { generation: g, reason: "cn_mismatch", detail: "d" }],
  ["InitStarted", { generation: g, stepCount: 2, deadline: T0 + 5_000 + (extra % 3) * 100 }],
  ["InitStepStarted", { generation: g, name: "git", index: 0, of: 2 }],
  ["InitStepCompleted", { generation: g, name: "git", index: 0, exitCode: 0, durationMs: extra % 9 }],
  [
    "InitStepFailed",
    {
      generation: g,
      name: "git",
      index: 0,
      reason: extra % 2 ? "session_lost" : "exit_code",
      detail: "x",
      exitCode: extra % 2 ? null : 1,
      durationMs: 1,
    },
  ],
  ["InitCompleted", { generation: g, durationMs: extra % 50 }],
  ["InitFailed", { generation: g, step: "git", reason: "exit_code", detail: "exit code 1" }],
];

/** A session's facts for generation `g` (src/events/session.ts). */
const sessionFacts = (g: number, extra: number): [EventType, unknown][] => [
  ["SessionConnecting", { generation: g, address: "127.0.0.1:7070", seed: extra }],
  [
    "SessionConnected",
    { generation: g, attempts: 1 + (extra % 3), peerCN: "cn", thumbprint: THUMB, chain: "ok" },
  ],
  ["SessionBroken", { generation: g, reason: "peer_closed" }],
  ["SessionFailed", { generation: g, reason: "gave_up", attempts: extra % 5 }],
];

/** The agent machine's state value in the worldview's words: `{ready: "idle"}` → "idle". */
function agentStateName(value: unknown): string {
  return typeof value === "string" ? value : (value as { ready: string }).ready;
}

const ENDED = new Set(["stopped", "failed"]);

/** A lease id as the broker makes them (`<agent id>.<uuid>`, events/lease-id.ts), deterministic. */
function lid(agentId: string, n: number): string {
  const id = `${agentId}.01943b1e-7a00-7000-8000-${n.toString(16).padStart(12, "0")}`;
  assert.match(id, LEASE_ID);
  return id;
}

/** The lease event types: each one names the lease it is for. */
const LEASE_TYPES = new Set<EventType>([
  "AgentLeased",
  "AgentLeaseRenewed",
  "AgentReleased",
  "AgentLeaseExpired",
  "AgentLeaseRevoked",
]);

/**
 * How a held lease ended, by the agent event that took it away from the agent machine: a failed
 * agent, and a drain deadline that passed first, end it as revoked (corral ended it).
 */
const LEASE_END: Partial<Record<EventType, LeaseEndState>> = {
  AgentReleased: "released",
  AgentLeaseExpired: "expired",
  AgentLeaseRevoked: "revoked",
  AgentFailed: "revoked",
  AgentUntrusted: "revoked",
  AgentTimedOut: "revoked",
};

/**
 * The real machines, driven by inputs the way the control plane drives them: each input goes
 * through xstate's pure `transition`, and only accepted ones (the state or context changed, or
 * effects were asked for) are stored — in the order they were accepted, so the aggregates'
 * events interleave. The pool's effects become their agent's next input, as the host does it.
 *
 * A lease is a phase of its agent: what the leases are, were and how they ended is read off the
 * agent machine's own `lease` before and after each accepted event, never off the lease slice.
 */
class World {
  clock = T0;
  readonly snaps = new Map<string, AnyMachineSnapshot>();
  readonly history: Envelope[] = [];
  /** Failures in the order the agent machines entered `failed`. */
  readonly failures: {
    agentId: string;
    poolId: string;
    phase: string;
    code: string;
    message: string;
    at: number;
  }[] = [];
  /** Every state an agent machine entered. */
  readonly agentStates = new Set<string>();
  /** Leases the agent machines took on, per pool, ever (a lease id granted again counts again). */
  readonly granted = new Map<string, number>();
  /** Leases the agent machines let go of, by how. */
  readonly ended: Record<LeaseEndState, number> = { released: 0, expired: 0, revoked: 0 };
  /** The agent event types that ended a lease. */
  readonly leaseEndings = new Set<EventType>();
  /** Each lease id's last standing: held ("granted") or how it ended; with its agent. */
  readonly leases = new Map<string, { agentId: string; outcome: "granted" | LeaseEndState }>();
  private seq = 0;

  snap(kind: AggregateKind, id: string): AnyMachineSnapshot | undefined {
    return this.snaps.get(`${kind}/${id}`);
  }

  ids(kind: AggregateKind): string[] {
    const out: string[] = [];
    for (const k of this.snaps.keys()) if (k.startsWith(`${kind}/`)) out.push(k.slice(kind.length + 1));
    return out;
  }

  private step(ref: AggregateRef, type: string, data: unknown) {
    const machine = MACHINES[ref.kind] as AnyStateMachine;
    const prev = this.snaps.get(`${ref.kind}/${ref.id}`) ?? initialTransition(machine)[0];
    const e = { id: "probe", type, v: 1, aggregate: ref, at: this.clock, data };
    const [next, actions] = transition(machine, prev, e);
    // The host's step (one reused inert scope) must agree with xstate's own, on every input.
    const [ours, ourActions] = step(machine, prev, e);
    assert.equal(ours === prev, next === prev, `${type}: step and transition disagree on accepting`);
    const named = (a: readonly { type: string; params?: unknown }[]) =>
      a.map(({ type, params }) => ({ type, params }));
    assert.deepEqual(
      [ours.value, ours.context, named(ourActions)],
      [next.value, next.context, named(actions)],
    );
    return { prev, next, actions, accepted: next !== prev || actions.length > 0 };
  }

  accepts(ref: AggregateRef, type: string, data: unknown): boolean {
    return this.step(ref, type, data).accepted;
  }

  /** Sends an input; when the machine accepts it, stores the (validated) event. */
  send<T extends EventType>(ref: AggregateRef, type: T, data: DataInputOf<T>) {
    const e = createEvent(ref, type, data, { id: `e${++this.seq}`, at: this.clock });
    const { prev, next, actions, accepted } = this.step(ref, type, e.data);
    if (!accepted) return null;
    this.snaps.set(`${ref.kind}/${ref.id}`, next);
    this.history.push(e);
    if (ref.kind === "agent") {
      this.agentStates.add(agentStateName(next.value));
      this.leaseChange(ref.id, type, prev, next);
    }
    if (ref.kind === "agent" && next.value === "failed" && prev.value !== "failed") {
      const c = next.context;
      this.failures.push({ agentId: ref.id, poolId: c.poolId, ...c.error, at: e.at });
    }
    return actions;
  }

  /** The agent machine's lease before and after an accepted event: a grant, an end, or neither. */
  private leaseChange(agentId: string, type: EventType, prev: AnyMachineSnapshot, next: AnyMachineSnapshot) {
    const was = prev.context.lease?.id as string | undefined;
    const now = next.context.lease?.id as string | undefined;
    if (was !== undefined && was !== now) {
      const how = LEASE_END[type];
      assert.ok(how, `${type} ended lease ${was}: an end the lease slice does not know`);
      this.ended[how]++;
      this.leaseEndings.add(type);
      this.leases.set(was, { agentId, outcome: how });
    }
    if (now !== undefined && now !== was) {
      const pool = next.context.poolId as string;
      this.granted.set(pool, (this.granted.get(pool) ?? 0) + 1);
      this.leases.set(now, { agentId, outcome: "granted" });
    }
  }

  /** Like `send`, for the hand-written scenario: the machine must accept it. */
  must<T extends EventType>(ref: AggregateRef, type: T, data: DataInputOf<T>) {
    const actions = this.send(ref, type, data);
    assert.ok(actions, `${type} on ${ref.kind}/${ref.id} was rejected`);
    return actions;
  }

  /** Runs a pool's decision effects the way the host does: each becomes its agent's input. */
  effects(actions: readonly { type: string; params: unknown }[], deliver = true): void {
    if (!deliver) return; // the host died between storing the decision and acting on it
    for (const a of actions) {
      const p = a.params as {
        agentId: string;
        poolId: string;
        runtime: "docker" | "process";
        deadline: number;
        reason: string;
      };
      const agent = (id: string): AggregateRef => ({ kind: "agent", id });
      if (a.type === "spawnAgent") {
        this.send(agent(p.agentId), "AgentRequested", {
          poolId: p.poolId,
          runtime: p.runtime,
          deadline: p.deadline,
        });
      } else if (a.type === "retireAgent") {
        this.send(agent(p.agentId), "AgentDrainRequested", { reason: p.reason, deadline: p.deadline });
      } else if (a.type === "recycleAgent") {
        this.send(agent(p.agentId), "AgentRecycleRequested", { reason: p.reason, deadline: p.deadline });
      }
    }
  }

  /** The agent's instance runs, registers and completes its init plan: ready for leases. */
  ready(id: string, generation: number): void {
    const ref: AggregateRef = { kind: "agent", id };
    this.must(ref, "AgentStarted", { generation });
    this.must(ref, "AgentRegistered", { generation, thumbprint: THUMB, peerCN: id });
    this.must(ref, "InitStarted", { generation, stepCount: 1, deadline: this.clock + 60_000 });
    this.must(ref, "InitCompleted", { generation, durationMs: 1 });
  }

  /** A lease on an agent, as the broker stores it: the acquire's one event, on the agent. */
  lease(agentId: string, leaseId: string, holder = "me", ttlMs = 1_000): boolean {
    const poolId = this.snap("agent", agentId)?.context.poolId ?? "web";
    const data = { leaseId, poolId, holder, ttlMs, expiresAt: this.clock + ttlMs };
    return this.send({ kind: "agent", id: agentId }, "AgentLeased", data) !== null;
  }

  /** The lease an agent machine holds now (leased, or draining until it ends). */
  leaseOf(agentId: string): { id: string; expiresAt: number } | null {
    return this.snap("agent", agentId)?.context.lease ?? null;
  }
}

const POOLS = ["web", "constructor", "hasOwnProperty"];
const AGENT_IDS = ["__proto__", "constructor", "toString"];
const agentRef = (id: string): AggregateRef => ({ kind: "agent", id });
const poolRef = (id: string): AggregateRef => ({ kind: "pool", id });

/** Inputs that move an aggregate along its happy path: preferred two times in three, so histories get far. */
const POOL_PROGRESS = new Set<EventType>(["PoolCreated", "PoolAgentSpawned", "PoolClosed", "PoolReopened"]);
const AGENT_PROGRESS = new Set<EventType>([
  "AgentPortsAllocated",
  "AgentCreated",
  "AgentStarted",
  "AgentRegistered",
  "InitStarted",
  "InitStepStarted",
  "InitStepCompleted",
  "InitCompleted",
  "AgentLeased",
  "AgentRecycled",
  "AgentStopped",
]);

/** One of the inputs the machine accepts (none: []), chosen by `choice`. */
function pickAccepted(
  inputs: [EventType, unknown][],
  accepts: (type: EventType, data: unknown) => boolean,
  choice: number,
  progress: ReadonlySet<EventType>,
  /** One in `sideways` picks may be any accepted input; the others move forward when they can. */
  sideways = 3,
): [EventType, unknown] | [] {
  const ok = inputs.filter(([t, d]) => accepts(t, d));
  const forward = ok.filter(([t]) => progress.has(t));
  const from = forward.length > 0 && choice % sideways !== 0 ? forward : ok;
  return from[Math.floor(choice / sideways) % Math.max(1, from.length)] ?? [];
}

/** One step of a random history: which kind of aggregate, which one, which accepted input. */
type Op = [kind: number, pick: number, choice: number, extra: number];

function runOps(ops: readonly Op[]): World {
  const w = new World();
  let agents = 0;
  let leases = 0;
  let port = 20_000;
  for (const [kind, pick, choice, extra] of ops) {
    w.clock += extra % 4;
    if (kind === 0) {
      const name = POOLS[pick % POOLS.length] as string;
      const ref = poolRef(name);
      const c = w.snap("pool", name)?.context;
      const config = poolConfig({ min: extra % 3, max: 3 + (extra % 3), warm: extra % 2 });
      const ownAgents = w.ids("agent").filter((id) => w.snap("agent", id)?.context.poolId === name);
      const target = ownAgents[extra % Math.max(1, ownAgents.length)] ?? "nobody";
      const expired = ownAgents.find((id) => agentStateName(w.snap("agent", id)?.value) === "expired");
      const inputs: [EventType, unknown][] = [
        ["PoolCreated", { config, instance: "i1" }],
        ["PoolReconfigured", { config, instance: "i2" }],
        ["PoolAgentSpawned", { agentId: AGENT_IDS[agents] ?? `a${agents}`, reason: "warm" }],
        ["PoolAgentRetired", { agentId: target, reason: extra % 2 ? "idle-timeout" : "scale-down" }],
        ["PoolAgentRecycled", { agentId: target, reason: "max-age" }],
        // The pool renews an agent whose lease expired (pool-plan.ts).
        ["PoolAgentRecycled", { agentId: expired ?? target, reason: "lease-expired" }],
        [
          "PoolSpawnFailed",
          {
            agentId: target,
            code: `E${extra % 5}`,
            message: "no ports",
            streak: 1 + (extra % 4),
            retryAt: w.clock + 500 * 2 ** (extra % 4),
          },
        ],
        [
          "PoolOrphanRemoved",
          { instanceId: `orphan-${extra}`, agentId: target, generation: extra % 3, runtime: "process" },
        ],
        ["PoolCloseRequested", { reason: "down" }],
        ["PoolClosed", {}],
        ["PoolReopened", { config, instance: "i3" }],
      ];
      const [type, data] = pickAccepted(inputs, (t, d) => w.accepts(ref, t, d), choice, POOL_PROGRESS);
      if (!type || (type === "PoolCreated" && c)) continue;
      const actions = w.send(ref, type, data as never);
      if (type === "PoolAgentSpawned") agents++;
      if (actions) w.effects(actions, extra % 10 !== 0);
    } else if (kind === 1) {
      const ids = w.ids("agent");
      const id = ids[pick % Math.max(1, ids.length)];
      if (id === undefined) continue;
      const c = w.snap("agent", id)?.context;
      const g = c.generation;
      const inputs: [EventType, unknown][] = [
        ["AgentPortsAllocated", { generation: g, ports: [port, port + 1] }],
        ["AgentCreated", { generation: g, instanceId: `${id}-${g}` }],
        ["AgentStarted", { generation: g }],
        ["AgentLeased", {}], // w.lease below
        ["AgentRecycleRequested", { reason: "unhealthy", deadline: w.clock + 50 + (extra % 7) }],
        ["AgentRecycled", { generation: g + 1, deadline: w.clock + 40 + (extra % 5) }],
        ["AgentDrainRequested", { reason: "closing", deadline: w.clock + 60 + (extra % 3) }],
        ["AgentStopped", {}],
        ["AgentFailed", { phase: "ready", code: "exited", message: `code ${extra % 256}` }],
        ["AgentTimedOut", { deadline: c.deadline ?? 0 }],
        ...identityAndInit(g, extra),
      ];
      const accepts = (t: EventType, d: unknown) =>
        t === "AgentLeased"
          ? w.accepts(agentRef(id), t, {
              leaseId: lid(id, leases),
              poolId: c.poolId,
              ttlMs: 1_000,
              expiresAt: 0,
            })
          : w.accepts(agentRef(id), t, d);
      // A draining agent goes on to its drain deadline (which takes its lease away, if it holds one).
      const draining = agentStateName(w.snap("agent", id)?.value) === "draining";
      const progress = draining ? new Set<EventType>([...AGENT_PROGRESS, "AgentTimedOut"]) : AGENT_PROGRESS;
      // Register and init are several steps before any lease: mostly forward there, or leases
      // (and every way one ends) would be rare.
      const phase = agentStateName(w.snap("agent", id)?.value);
      const early = phase === "connecting" || phase === "initializing";
      const [type, data] = pickAccepted(inputs, accepts, choice, progress, early ? 8 : 3);
      if (!type) continue;
      if (type === "AgentLeased") {
        assert.ok(w.lease(id, lid(id, leases++), extra % 2 ? "me" : "ci", 500 + (extra % 3) * 500));
        continue;
      }
      w.send(agentRef(id), type, data as never);
      if (type === "AgentPortsAllocated") port += 2;
    } else if (kind === 3) {
      // The dialer's facts about an agent's session, for its current generation or the one before.
      const ids = w.ids("agent").filter((id) => isLiveAgent(w, id));
      const id = ids[pick % Math.max(1, ids.length)];
      if (id === undefined) continue;
      const g = (w.snap("agent", id)?.context.generation ?? 1) - (extra % 4 === 0 ? 1 : 0);
      const inputs = sessionFacts(Math.max(1, g), extra);
      const ref: AggregateRef = { kind: "session", id };
      const [type, data] = pickAccepted(inputs, (t, d) => w.accepts(ref, t, d), choice, new Set());
      if (!type) continue;
      w.send(ref, type, data as never);
    } else {
      // The holder's side, the broker's and the scheduler's: renew, release, expiry and revoke of
      // a held lease; its agent retired under it (the pool closing), and that drain's deadline.
      const held = w.ids("agent").filter((id) => w.leaseOf(id) !== null);
      const id = held[pick % Math.max(1, held.length)];
      if (id === undefined) continue;
      const l = w.leaseOf(id) as { id: string; expiresAt: number };
      const inputs: [EventType, unknown][] = [
        ["AgentLeaseRenewed", { leaseId: l.id, expiresAt: l.expiresAt + (extra % 3) * 500 }],
        ["AgentReleased", { leaseId: l.id }],
        ["AgentLeaseExpired", { leaseId: l.id, deadline: l.expiresAt }],
        ["AgentLeaseRevoked", { leaseId: l.id, reason: "pool closed" }],
        ["AgentDrainRequested", { reason: "closing", deadline: w.clock + 100 + (extra % 5) }],
        ["AgentTimedOut", { deadline: w.snap("agent", id)?.context.deadline ?? 0 }],
      ];
      const [type, data] = pickAccepted(inputs, (t, d) => w.accepts(agentRef(id), t, d), choice, new Set());
      if (!type) continue;
      w.send(agentRef(id), type, data as never);
    }
  }
  return w;
}

function isLiveAgent(w: World, id: string): boolean {
  const a = w.snap("agent", id);
  return a !== undefined && a.status !== "done";
}

/** The session as the agents slice shows it, from the session machine's snapshot. */
function sessionShown(s: AnyMachineSnapshot | undefined) {
  if (!s || s.value === "idle") return null;
  const { generation, reason } = s.context;
  const ended = s.value === "broken" || s.value === "failed";
  return { state: s.value, generation, ...(ended && reason !== null ? { reason } : {}) };
}

/** What the worldview should have counted as not fitting: nothing, on a stream the machines wrote. */
interface Unfit {
  agents: number;
  /** Lease events (LEASE_TYPES) the agent machines rejected. */
  leases: number;
  pools: Map<string, number>;
}
const NONE: Unfit = { agents: 0, leases: 0, pools: new Map() };

/**
 * Asserts that the worldview says what the machines' own snapshots say. `leases: false` leaves
 * out what comes from the lease slice (leases, and the pools' totalLeases), for input holding
 * grants it cannot judge (see `differential`).
 */
function assertMatchesMachines(v: Worldview, w: World, unfit: Unfit = NONE, leases = true): void {
  // Agents: every live one as its machine has it; ended ones counted.
  const agentIds = w.ids("agent");
  const live = agentIds.filter((id) => !ENDED.has(agentStateName(w.snap("agent", id)?.value)));
  assert.deepEqual(v.agents.live.map((a) => a.id).sort(), [...live].sort(), "live agents");
  for (const a of v.agents.live) {
    const s = w.snap("agent", a.id) as AnyMachineSnapshot;
    const c = s.context;
    assert.equal(a.state, agentStateName(s.value), `state of ${a.id}`);
    assert.deepEqual(a.session, sessionShown(w.snap("session", a.id)), `session of ${a.id}`);
    assert.deepEqual(
      {
        poolId: a.poolId,
        runtime: a.runtime,
        generation: a.generation,
        instanceId: a.instanceId,
        ports: a.ports,
        leaseId: a.leaseId,
        leaseExpiresAt: a.leaseExpiresAt,
        leasesServed: a.leasesServed,
        recycles: a.recycles,
        createdAt: a.createdAt,
        readyAt: a.readyAt,
        deadline: a.deadline,
      },
      {
        poolId: c.poolId,
        runtime: c.runtime,
        generation: c.generation,
        instanceId: c.instanceId,
        ports: c.ports,
        leaseId: c.lease?.id ?? null,
        leaseExpiresAt: c.lease?.expiresAt ?? null,
        leasesServed: c.leasesServed,
        recycles: c.recycles,
        createdAt: c.createdAt,
        readyAt: c.readyAt,
        deadline: c.deadline,
      },
      `context of ${a.id}`,
    );
  }
  const states = agentIds.map((id) => agentStateName(w.snap("agent", id)?.value));
  for (const s of [...AGENT_LIVE_STATES, "stopped", "failed"] as const) {
    assert.equal(v.agents.byState[s], states.filter((x) => x === s).length, `agents.byState.${s}`);
  }
  assert.deepEqual(v.agents.failures, w.failures.slice(-MAX_FAILURES));
  assert.equal(v.agents.ignored + v.agents.untracked, unfit.agents, "agents ignored + untracked");

  // Pools and their metrics, counted directly from the machines' snapshots and the stored decisions.
  const pools = w.ids("pool").filter((p) => w.snap("pool", p)?.value !== "new");
  assert.deepEqual(Object.keys(v.pools).sort(), [...pools].sort());
  for (const name of pools) {
    const s = w.snap("pool", name) as AnyMachineSnapshot;
    const c = s.context;
    const p = v.pools[name];
    assert.ok(p && Object.hasOwn(v.pools, name));
    assert.equal(p.name, name);
    assert.equal(p.state, s.value);
    assert.equal(p.instance, c.instance);
    assert.equal(p.runtime, c.config.runtime);
    assert.deepEqual(p.config, { min: c.config.min, max: c.config.max, warm: c.config.warm });
    assert.equal(p.createdAt, c.createdAt);
    assert.equal(p.closeReason, c.closeReason);
    assert.equal(p.spawnFailures, c.spawnFailures);
    assert.equal(
      p.lastSpawnFailure && `${p.lastSpawnFailure.code}: ${p.lastSpawnFailure.message}`,
      c.lastSpawnFailure,
    );
    assert.equal(p.ignored, unfit.pools.get(name) ?? 0, `ignored by pool ${name}`);

    const mine = agentIds
      .map((id) => w.snap("agent", id) as AnyMachineSnapshot)
      .filter((a) => a.context.poolId === name);
    const inState = (...names: string[]) =>
      mine.filter((a) => names.includes(agentStateName(a.value))).length;
    const decisions = w.history.filter(
      (e) =>
        e.aggregate.kind === "pool" && e.aggregate.id === name && /^PoolAgent(Spawned|Retired)$/.test(e.type),
    );
    const last = decisions.at(-1) as Envelope<string, { reason: string }> | undefined;
    const expected = {
      active: inState("leased", "draining"),
      idle: inState("idle"),
      total: mine.length - inState("stopped", "failed"),
      // An agent whose lease expired is renewed next (recycled or replaced): on its way to ready.
      starting: inState(
        "requested",
        "creating",
        "starting",
        "connecting",
        "initializing",
        "expired",
        "recycling",
      ),
      totalLeases: w.granted.get(name) ?? 0,
      totalRecycles: mine.reduce((sum, a) => sum + a.context.recycles, 0),
      spawned: decisions.filter((e) => e.type === "PoolAgentSpawned").length,
      terminated: inState("stopped", "failed"),
      failed: inState("failed"),
      lastScaleEvent: last
        ? {
            at: last.at,
            direction: last.type === "PoolAgentSpawned" ? "up" : "down",
            reason: last.data.reason,
          }
        : null,
    };
    if (!leases) expected.totalLeases = p.metrics.totalLeases;
    assert.deepEqual(p.metrics, expected, `metrics of ${name}`);
    assert.deepEqual(poolMetrics(v, name), expected);
    assert.equal(
      p.metrics.total,
      p.metrics.active + p.metrics.idle + p.metrics.starting + inState("stopping"),
    );
  }

  // Leases: the ones the agent machines hold now, and what the machines took on and let go of.
  if (leases) {
    const held = live
      .map((id) => ({ id, s: w.snap("agent", id) as AnyMachineSnapshot }))
      .filter(({ s }) => s.context.lease !== null)
      .map(({ id, s }) => {
        const { lease, poolId } = s.context;
        return {
          id: lease.id,
          poolId,
          agentId: id,
          holder: lease.holder,
          grantedAt: lease.grantedAt,
          expiresAt: lease.expiresAt,
          renewals: undefined,
          grantedSeq: undefined,
          // Draining: the lease ends at the drain deadline unless it ends before.
          drainDeadline: agentStateName(s.value) === "draining" ? s.context.deadline : null,
        };
      });
    const byId = (a: { id: string }, b: { id: string }) => (a.id < b.id ? -1 : 1);
    assert.deepEqual(
      v.leases.live.map((l) => ({ ...l, renewals: undefined, grantedSeq: undefined })).sort(byId),
      held.sort(byId),
      "live leases",
    );
    for (const l of v.leases.live) assert.equal(agentOfLease(l.id), l.agentId, "a lease id names its agent");
    let granted = 0;
    for (const n of w.granted.values()) granted += n;
    assert.equal(v.leases.granted, granted);
    assert.deepEqual(
      v.leases.pools,
      [...w.granted]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([poolId, n]) => ({ poolId, granted: n, live: held.filter((l) => l.poolId === poolId).length })),
    );
    assert.deepEqual(v.leases.ended, w.ended);
    assert.equal(v.leases.ignored + v.leases.untracked, unfit.leases, "leases ignored + untracked");
  }

  // leaseOutcome over each agent's stored history says what its machine did with each lease.
  const histories = new Map<string, CorralEvent[]>();
  for (const e of w.history) {
    if (e.aggregate.kind !== "agent") continue;
    const h = histories.get(e.aggregate.id) ?? [];
    h.push(e as CorralEvent);
    histories.set(e.aggregate.id, h);
  }
  for (const [leaseId, { agentId, outcome }] of w.leases) {
    assert.equal(leaseOutcome(histories.get(agentId) ?? [], leaseId), outcome, `leaseOutcome of ${leaseId}`);
  }

  // Ports: the union of the ports of agents whose machine still holds them (not stopped or failed).
  const held = live.flatMap((id) => {
    const c = (w.snap("agent", id) as AnyMachineSnapshot).context;
    return (c.ports as number[]).map((port) => ({ port, agentId: id, poolId: c.poolId as string }));
  });
  held.sort((a, b) => a.port - b.port || (a.agentId < b.agentId ? -1 : 1));
  assert.deepEqual(v.ports.held, held);
  const holders = new Map<number, number>();
  for (const h of held) holders.set(h.port, (holders.get(h.port) ?? 0) + 1);
  assert.deepEqual(
    v.ports.conflicts,
    [...holders].filter(([, k]) => k > 1).map(([port]) => port),
  );
  const byPool = new Map<string, number>(); // not an object: pool names may be "hasOwnProperty"
  for (const h of held) byPool.set(h.poolId, (byPool.get(h.poolId) ?? 0) + 1);
  assert.deepEqual(new Map(Object.entries(v.ports.byPool)), byPool);
}

const arbOps = fc.array(fc.tuple(fc.nat(3), fc.nat(50), fc.nat(300), fc.nat(1_000)), {
  minLength: 1,
  maxLength: 400,
  size: "large",
});

describe("worldview: pools, agents, leases, ports", () => {
  it("has a new version, so checkpoints of the old shape are ignored", () => {
    assert.equal(worldviewProjection.version, WORLDVIEW_VERSION);
    // 4: leases are folded from agent events (drainDeadline), agents have `expired` and leaseExpiresAt.
    assert.ok(WORLDVIEW_VERSION >= 4);
  });

  it("property: on machine-valid interleaved histories it says what the machines say, whatever the chunking", () => {
    const reached = new Set<string>();
    const endings = new Set<string>();
    fc.assert(
      fc.property(arbOps, fc.array(fc.nat(), { maxLength: 12 }), (ops, cuts) => {
        const w = runOps(ops);
        const recs = records(w.history);
        const whole = foldWorldview(recs);
        assert.deepEqual(whole.skipped, {});
        assert.equal(whole.totals.events, w.history.length);
        assertMatchesMachines(whole, w);
        assert.deepEqual(foldInChunks(recs, cuts), whole);
        // And at points along the way: a replay through fresh machines, checked at each cut.
        const replay = differential(inputsOf(w.history), cuts);
        assert.equal(replay.history.length, w.history.length, "a replay of a stored history is all accepted");
        for (const state of w.agentStates) reached.add(state);
        for (const type of w.leaseEndings) endings.add(type);
      }),
      // A fixed seed: these 150 histories reach every agent state and every way a lease ends (the
      // checks below), which random ones, with register and init before each lease, do not always.
      { numRuns: 150, seed: 1 },
    );
    // The generator gets everywhere: every state of the agent machine was seen, and a lease
    // ended in every way one can.
    for (const s of [...AGENT_LIVE_STATES, "stopped", "failed"])
      assert.ok(reached.has(s), `never reached ${s}`);
    for (const type of Object.keys(LEASE_END)) assert.ok(endings.has(type), `no lease ended by ${type}`);
  });

  it("spawn 3, lease 2, release 1, recycle 1, fail 1, retire 1: every metric by name", () => {
    const w = new World();
    const web = poolRef("web");
    const t = (dt: number) => {
      w.clock = T0 + dt;
    };
    w.must(web, "PoolCreated", { config: poolConfig({ min: 3, max: 4, warm: 1 }), instance: "host-a" });
    for (const [i, id] of ["a1", "a2", "a3"].entries()) {
      t(10 + i);
      w.effects(w.must(web, "PoolAgentSpawned", { agentId: id, reason: "min" }));
    }
    for (const [i, id] of ["a1", "a2", "a3"].entries()) {
      t(20 + i);
      w.must(agentRef(id), "AgentPortsAllocated", { generation: 1, ports: [8000 + 2 * i, 8001 + 2 * i] });
      w.must(agentRef(id), "AgentCreated", { generation: 1, instanceId: `${id}-1` });
      w.ready(id, 1);
    }
    const at = (dt: number) => T0 + dt;
    const L1 = lid("a1", 1);
    const L2 = lid("a2", 2);
    t(30);
    assert.ok(w.lease("a1", L1, "alice"));
    assert.ok(w.lease("a2", L2, "bob"));
    t(40);
    w.must(agentRef("a1"), "AgentReleased", { leaseId: L1 });
    t(50);
    w.effects(w.must(web, "PoolAgentRecycled", { agentId: "a1", reason: "max-leases" }));
    w.must(agentRef("a1"), "AgentRecycled", { generation: 2, deadline: at(10_060) });

    let v = foldWorldview(records(w.history));
    assertMatchesMachines(v, w);
    assert.deepEqual(v.pools.web?.metrics, {
      active: 1, // a2
      idle: 1, // a3
      total: 3,
      starting: 1, // a1, requested again for its second generation
      totalLeases: 2,
      totalRecycles: 1,
      spawned: 3,
      terminated: 0,
      failed: 0,
      lastScaleEvent: { at: at(12), direction: "up", reason: "min" },
    });
    assert.deepEqual(
      v.ports.held.map((h) => [h.port, h.agentId]),
      [
        [8002, "a2"],
        [8003, "a2"],
        [8004, "a3"],
        [8005, "a3"],
      ],
    );

    t(60);
    w.must(agentRef("a3"), "AgentFailed", { phase: "ready", code: "exited", message: "code 137" });
    t(61);
    w.must(agentRef("a1"), "AgentPortsAllocated", { generation: 2, ports: [8000, 8001] });
    w.must(agentRef("a1"), "AgentCreated", { generation: 2, instanceId: "a1-2" });
    w.ready("a1", 2);
    t(70);
    w.effects(w.must(web, "PoolAgentRetired", { agentId: "a1", reason: "idle-timeout" }));

    v = foldWorldview(records(w.history));
    assertMatchesMachines(v, w);
    assert.equal(v.agents.live.find((a) => a.id === "a1")?.state, "stopping");
    assert.deepEqual(v.pools.web?.metrics, {
      active: 1,
      idle: 0,
      total: 2, // a1 is stopping: alive, and still holding its ports
      starting: 0,
      totalLeases: 2,
      totalRecycles: 1,
      spawned: 3,
      terminated: 1,
      failed: 1,
      lastScaleEvent: { at: at(70), direction: "down", reason: "idle-timeout" },
    });
    assert.deepEqual(v.ports.byPool, { web: 4 });

    t(80);
    w.must(agentRef("a1"), "AgentStopped", {});
    v = foldWorldview(records(w.history));
    assertMatchesMachines(v, w);
    const m = poolMetrics(v, "web");
    assert.ok(m);
    assert.equal(m.active, 1);
    assert.equal(m.idle, 0);
    assert.equal(m.total, 1);
    assert.equal(m.starting, 0);
    assert.equal(m.totalLeases, 2);
    assert.equal(m.totalRecycles, 1);
    assert.equal(m.spawned, 3);
    assert.equal(m.terminated, 2);
    assert.equal(m.failed, 1);
    assert.deepEqual(m.lastScaleEvent, { at: at(70), direction: "down", reason: "idle-timeout" });
    assert.equal(poolMetrics(v, "toString"), null);
    assert.equal(poolMetrics(v, "nope"), null);

    const web2 = v.pools.web;
    assert.deepEqual(
      { ...web2, metrics: undefined },
      {
        name: "web",
        state: "open",
        instance: "host-a",
        runtime: "process",
        config: { min: 3, max: 4, warm: 1 },
        createdAt: T0,
        closeReason: null,
        spawnFailures: 0,
        lastSpawnFailure: null,
        ignored: 0,
        metrics: undefined,
      },
    );
    assert.deepEqual(v.agents.failures, [
      { agentId: "a3", poolId: "web", phase: "ready", code: "exited", message: "code 137", at: at(60) },
    ]);
    assert.deepEqual(v.agents.pools, [
      { poolId: "web", recycles: 1, registered: 4, untrusted: 0, stopped: 1, failed: 1 },
    ]);
    assert.deepEqual(v.leases.live, [
      {
        id: L2,
        poolId: "web",
        agentId: "a2",
        holder: "bob",
        grantedAt: at(30),
        expiresAt: at(1_030),
        renewals: 0,
        grantedSeq: v.leases.live[0]?.grantedSeq,
        drainDeadline: null,
      },
    ]);
    assert.deepEqual(v.leases.ended, { released: 1, expired: 0, revoked: 0 });
    assert.deepEqual(v.ports.held, [
      { port: 8002, agentId: "a2", poolId: "web" },
      { port: 8003, agentId: "a2", poolId: "web" },
    ]);

    const text = formatWorldview(v);
    assert.match(text, /^pools \(1\)$/m);
    assert.match(
      text,
      /^\s+web\s+open\s+process\s+3\/4\/1\s+1\s+0\s+0\s+1\s+2\s+1\s+3\s+2 \(1 failed\)\s+0\s+down idle-timeout 2025-01-01T00:00:00.070Z$/m,
    );
    assert.match(
      text,
      /^live agents 1: requested 0, creating 0, starting 0, connecting 0, initializing 0, idle 0, leased 1,.* \| ended: stopped 1, failed 1$/m,
    );
    const l2 = L2.replaceAll(".", "\\.");
    assert.match(text, new RegExp(`^\\s+a2\\s+web\\s+leased\\s+1\\s+8002,8003\\s+${l2}\\s+1\\s+0\\s+`, "m"));
    assert.match(text, /^\s+2025-01-01T00:00:00.060Z {2}a3 \(web\) in ready: exited: code 137$/m);
    assert.match(text, /^leases {4}live 1 \| granted 2 \| ended: released 1, expired 0, revoked 0$/m);
    assert.match(text, new RegExp(`^\\s+${l2}\\s+web\\s+a2\\s+bob\\s+2025-01-01T00:00:01.030Z$`, "m"));
    assert.match(text, /^ports {5}held 2: web 2 \| 8002 a2, 8003 a2$/m);
  });

  it("follows the machine's deadlines: a stale timeout changes nothing, the armed one fails the step", () => {
    const p = poolRef("p");
    const a = agentRef("x");
    const evs = [
      createEvent(p, "PoolCreated", { config: poolConfig(), instance: "i" }, { id: "1", at: T0 }),
      createEvent(
        a,
        "AgentRequested",
        { poolId: "p", runtime: "docker", deadline: T0 + 100 },
        { id: "2", at: T0 },
      ),
      createEvent(a, "AgentTimedOut", { deadline: T0 + 99 }, { id: "3", at: T0 + 99 }), // stale
      createEvent(a, "AgentTimedOut", { deadline: T0 + 100 }, { id: "4", at: T0 + 100 }),
    ];
    const v = foldWorldview(records(evs));
    assert.equal(v.agents.ignored, 1);
    assert.deepEqual(v.agents.failures, [
      {
        agentId: "x",
        poolId: "p",
        phase: "requested",
        code: "timeout",
        message: "requested did not finish before its deadline",
        at: T0 + 100,
      },
    ]);
    assert.equal(v.pools.p?.metrics.failed, 1);
  });

  it("ignores, as the machines reject, every event that does not fit where it lands", () => {
    const ag = agentRef("a");
    const web = poolRef("web");
    const d = T0 + 500;
    const L1 = lid("a", 1);
    const L2 = lid("a", 2);
    const leased = (leaseId: string, expiresAt = d) => ({
      leaseId,
      poolId: "web",
      holder: "h",
      ttlMs: 10,
      expiresAt,
    });
    const orphan = (instanceId: string) => ({ instanceId, agentId: "a", generation: 1, runtime: "process" });
    // [event, fits?]: the machines must agree with each verdict (checked by `differential`).
    const script: [AggregateRef, EventType, unknown, boolean][] = [
      [web, "PoolAgentSpawned", { agentId: "a", reason: "min" }, false], // pool not created: not shown
      [web, "PoolOrphanRemoved", orphan("o-0"), false], // pool not created: not shown
      [web, "PoolCreated", { config: poolConfig(), instance: "i" }, true],
      [web, "PoolCreated", { config: poolConfig(), instance: "i" }, false],
      [web, "PoolClosed", {}, false], // not closing
      [web, "PoolReopened", { config: poolConfig(), instance: "i" }, false], // not closed
      [ag, "AgentStarted", { generation: 1 }, false], // not requested yet: untracked
      [ag, "AgentReleased", { leaseId: L1 }, false], // not requested yet: untracked, by leases too
      [ag, "AgentRequested", { poolId: "web", runtime: "process", deadline: d }, true],
      [ag, "AgentRequested", { poolId: "web", runtime: "process", deadline: d }, false],
      [ag, "AgentPortsAllocated", { generation: 2, ports: [1] }, false], // another generation
      [ag, "AgentCreated", { generation: 1, instanceId: "x" }, false], // no ports yet
      [ag, "AgentTimedOut", { deadline: d - 1 }, false], // a stale timer
      [ag, "AgentPortsAllocated", { generation: 1, ports: [1, 2] }, true],
      [ag, "AgentCreated", { generation: 1, instanceId: "x" }, true],
      [ag, "AgentStarted", { generation: 1 }, true],
      [ag, "InitStarted", { generation: 1, stepCount: 1, deadline: d + 50 }, false], // not registered yet
      [ag, "AgentRegistered", { generation: 2, thumbprint: "ab".repeat(32), peerCN: "a" }, false], // another generation
      [ag, "AgentRegistered", { generation: 1, thumbprint: "ab".repeat(32), peerCN: "a" }, true],
      [ag, "InitCompleted", { generation: 2, durationMs: 1 }, false], // another generation
      [ag, "InitStarted", { generation: 1, stepCount: 1, deadline: d + 50 }, true],
      [ag, "InitCompleted", { generation: 1, durationMs: 1 }, true], // → ready
      [ag, "AgentTimedOut", { deadline: d }, false], // ready: no deadline armed
      [ag, "AgentStopped", {}, false], // not stopping
      [ag, "AgentRecycled", { generation: 2, deadline: d }, false], // not recycling
      [ag, "AgentLeased", leased(lid("b", 1)), false], // idle, but its lease id names another agent
      [ag, "AgentLeased", leased(L1), true],
      [ag, "AgentLeased", leased(L2), false], // leased already
      [ag, "AgentLeased", leased(L1), false], // granted already
      [ag, "AgentRecycleRequested", { reason: "unhealthy", deadline: d }, false], // never under a holder
      [ag, "AgentReleased", { leaseId: L2 }, false], // names another lease
      [ag, "AgentLeaseRenewed", { leaseId: L1, expiresAt: d }, false], // does not extend
      [ag, "AgentLeaseRenewed", { leaseId: L1, expiresAt: d + 100 }, true],
      [ag, "AgentLeaseExpired", { leaseId: L1, deadline: d }, false], // a stale deadline: renewed since
      [ag, "AgentLeaseExpired", { leaseId: L2, deadline: d + 100 }, false], // names another lease
      [ag, "AgentLeaseExpired", { leaseId: L1, deadline: d + 100 }, true], // → expired
      [ag, "AgentReleased", { leaseId: L1 }, false], // expired: the holder lost it
      [ag, "AgentLeaseRenewed", { leaseId: L1, expiresAt: d + 200 }, false], // too late
      [ag, "AgentTimedOut", { deadline: d + 100 }, false], // expired: no deadline armed
      [ag, "AgentRecycleRequested", { reason: "lease-expired", deadline: d + 150 }, true], // → recycling
      [ag, "AgentRecycled", { generation: 2, deadline: d + 160 }, true], // → requested, generation 2
      [ag, "AgentPortsAllocated", { generation: 2, ports: [3, 4] }, true],
      [ag, "AgentCreated", { generation: 2, instanceId: "y" }, true],
      [ag, "AgentStarted", { generation: 2 }, true],
      [ag, "AgentRegistered", { generation: 2, thumbprint: "cd".repeat(32), peerCN: "a" }, true],
      [ag, "InitCompleted", { generation: 2, durationMs: 1 }, true],
      [ag, "AgentLeased", leased(L2, d + 300), true],
      [ag, "AgentDrainRequested", { reason: "scale-down", deadline: d + 250 }, true], // → draining
      [ag, "AgentDrainRequested", { reason: "again", deadline: d + 260 }, false],
      [ag, "AgentReleased", { leaseId: L1 }, false], // an old lease of this agent
      [ag, "AgentLeaseExpired", { leaseId: L2, deadline: d + 250 }, false], // not when it runs out
      [ag, "AgentTimedOut", { deadline: d + 260 }, false], // not the drain deadline
      [ag, "AgentReleased", { leaseId: L2 }, true], // → stopping, ports still held
      [ag, "AgentLeaseRevoked", { leaseId: L2, reason: "late" }, false], // ended: untracked by leases
      [ag, "AgentRecycleRequested", { reason: "r", deadline: d }, false], // stopping
      [ag, "AgentStopped", {}, true],
      [ag, "AgentFailed", { phase: "x", code: "y", message: "z" }, false], // ended: untracked
      [ag, "AgentLeaseRevoked", { leaseId: L2, reason: "later" }, false], // ended: untracked by both
      [
        web,
        "PoolSpawnFailed",
        { agentId: "b", code: "ports", message: "exhausted", streak: 1, retryAt: d },
        true,
      ],
      [web, "PoolOrphanRemoved", orphan("o-1"), true],
      [web, "PoolCloseRequested", { reason: "down" }, true],
      [web, "PoolAgentSpawned", { agentId: "c", reason: "min" }, false], // closing
      [web, "PoolAgentRecycled", { agentId: "a", reason: "max-age" }, false],
      [web, "PoolAgentRetired", { agentId: "a", reason: "closing" }, true], // still recorded while closing
      [web, "PoolOrphanRemoved", orphan("o-2"), true], // closing
      [web, "PoolClosed", {}, true],
      [web, "PoolAgentRetired", { agentId: "a", reason: "scale-down" }, false], // closed
      [web, "PoolSpawnFailed", { agentId: "b", code: "late", message: "x", streak: 2, retryAt: d }, false],
      [web, "PoolOrphanRemoved", orphan("o-3"), true], // closed: recorded in any state once the pool exists
      [web, "PoolReconfigured", { config: poolConfig(), instance: "j" }, false],
      [web, "PoolReopened", { config: poolConfig({ min: 2, runtime: "docker" }), instance: "j" }, true],
    ];
    const inputs = script.map(([ref, type, data], i) => ({ ref, type, data, at: T0 + i }));
    differential(
      inputs,
      inputs.map((_, i) => i),
    ); // checked after every event
    const w = new World();
    for (const [ref, type, data, fits] of script) {
      assert.equal(!!w.send(ref, type, data as never), fits, `${type} ${JSON.stringify(data)}`);
    }
    const v = foldWorldview(
      records(inputs.map((x, i) => createEvent(x.ref, x.type, x.data, { id: `${i}`, at: x.at }))),
    );
    assert.deepEqual([v.agents.ignored, v.agents.untracked], [27, 4]);
    assert.deepEqual([v.leases.ignored, v.leases.untracked], [6, 8]);
    assert.deepEqual([v.leases.granted, v.leases.ended], [2, { released: 1, expired: 1, revoked: 0 }]);
    assert.deepEqual(v.leases.live, []);
    const at = (type: EventType, reason?: string) =>
      T0 +
      script.findIndex(
        ([, t, data]) => t === type && (!reason || (data as { reason: string }).reason === reason),
      );
    assert.deepEqual(v.pools.web, {
      name: "web",
      state: "open",
      instance: "j",
      runtime: "docker",
      config: { min: 2, max: 5, warm: 2 },
      createdAt: at("PoolCreated"),
      closeReason: null,
      spawnFailures: 1,
      lastSpawnFailure: { agentId: "b", code: "ports", message: "exhausted", at: at("PoolSpawnFailed") },
      ignored: 8,
      metrics: {
        active: 0,
        idle: 0,
        total: 0,
        starting: 0,
        totalLeases: 2,
        totalRecycles: 1,
        spawned: 0,
        terminated: 1,
        failed: 0,
        lastScaleEvent: { at: at("PoolAgentRetired", "closing"), direction: "down", reason: "closing" },
      },
    });
    assert.deepEqual(v.agents.byState.stopped, 1);
    assert.deepEqual(v.ports.held, []);
  });

  it("keeps pools with hostile names as own keys, and the prototype unpolluted", () => {
    const evs = ["__proto__", "constructor", "toString"].map((name, i) =>
      createEvent(
        poolRef(name),
        "PoolCreated",
        { config: poolConfig(), instance: "i" },
        { id: `${i}`, at: T0 },
      ),
    );
    const v = foldWorldview(records(evs));
    assert.deepEqual(Object.keys(v.pools), ["__proto__", "constructor", "toString"]);
    assert.equal(Object.getPrototypeOf(v.pools), Object.prototype);
    assert.equal(poolMetrics(v, "__proto__")?.spawned, 0);
    assert.equal(poolMetrics(v, "hasOwnProperty"), null);
    // A plain-data round trip (structured clone keeps the own "__proto__" key) gives the same view.
    const again = worldviewProjection.save(worldviewProjection.load(structuredClone(v)));
    assert.deepEqual(again, v);
  });
});

/**
 * A lease is a phase of its agent: the lease slice folds agent events, agents have an `expired`
 * state, pools record orphan removals. Each scenario is driven through the real machines and
 * checked against them after every step.
 */
describe("worldview: leases as a phase of the agent", () => {
  /** Pool web (nothing spawned by itself) with these agents ready, each on two ports. */
  function poolWithReadyAgents(ids: readonly string[]): World {
    const w = new World();
    const web = poolRef("web");
    w.must(web, "PoolCreated", { config: poolConfig({ min: 0, warm: 0 }), instance: "i" });
    for (const [i, id] of ids.entries()) {
      w.effects(w.must(web, "PoolAgentSpawned", { agentId: id, reason: "demand" }));
      w.must(agentRef(id), "AgentPortsAllocated", { generation: 1, ports: [7000 + 2 * i, 7001 + 2 * i] });
      w.must(agentRef(id), "AgentCreated", { generation: 1, instanceId: `${id}-1` });
      w.ready(id, 1);
    }
    return w;
  }

  /** The worldview of everything stored so far, checked against the machines (and its replay). */
  function view(w: World, unfit: Unfit = NONE): Worldview {
    const v = foldWorldview(records(w.history));
    assertMatchesMachines(v, w, unfit);
    differential(inputsOf(w.history), [w.history.length >> 1]);
    return v;
  }

  const agentHistory = (w: World, id: string) =>
    w.history.filter((e) => e.aggregate.kind === "agent" && e.aggregate.id === id) as CorralEvent[];

  it("an agent that fails under its lease, leased or draining, ends it as revoked; so does a drain deadline that passes first", () => {
    const w = poolWithReadyAgents(["x", "y", "z", "r"]);
    const [Lx, Ly, Lz, Lr] = [lid("x", 1), lid("y", 1), lid("z", 1), lid("r", 1)];
    w.clock = T0 + 10;
    for (const [id, l] of [
      ["x", Lx],
      ["y", Ly],
      ["z", Lz],
      ["r", Lr],
    ] as const)
      assert.ok(w.lease(id, l, "h", 5_000));
    let v = view(w);
    assert.deepEqual(
      v.leases.live.map((l) => l.id),
      [Lx, Ly, Lz, Lr],
    );
    assert.equal(v.pools.web?.metrics.active, 4);

    // Released first: a later failure of its agent does not make it revoked.
    w.clock = T0 + 20;
    w.must(agentRef("r"), "AgentReleased", { leaseId: Lr });
    w.must(agentRef("r"), "AgentFailed", { phase: "ready", code: "exited", message: "code 1" });
    // Leased: the failure ends the lease.
    w.must(agentRef("x"), "AgentFailed", { phase: "ready", code: "exited", message: "code 137" });
    v = view(w);
    assert.deepEqual(v.leases.ended, { released: 1, expired: 0, revoked: 1 });
    assert.deepEqual(
      v.leases.live.map((l) => l.id),
      [Ly, Lz],
    );

    // Draining under its lease: the drain deadline is on the lease until the lease ends.
    w.must(agentRef("y"), "AgentDrainRequested", { reason: "closing", deadline: T0 + 100 });
    w.must(agentRef("z"), "AgentDrainRequested", { reason: "closing", deadline: T0 + 200 });
    v = view(w);
    assert.deepEqual(
      v.leases.live.map((l) => [l.id, l.drainDeadline]),
      [
        [Ly, T0 + 100],
        [Lz, T0 + 200],
      ],
    );
    assert.equal(v.pools.web?.metrics.active, 2, "draining under a lease is still active");
    w.must(agentRef("y"), "AgentFailed", { phase: "draining", code: "exited", message: "code 2" });
    // A timer for another deadline is stale: the lease stays.
    w.clock = T0 + 199;
    assert.equal(w.send(agentRef("z"), "AgentTimedOut", { deadline: T0 + 199 }), null);
    const stale = createEvent(
      agentRef("z"),
      "AgentTimedOut",
      { deadline: T0 + 199 },
      { id: "s", at: w.clock },
    );
    v = foldWorldview(records([...w.history, stale]));
    assert.deepEqual(
      v.leases.live.map((l) => l.id),
      [Lz],
    );
    assert.equal(v.agents.ignored, 1);
    // The drain deadline passes before the lease runs out (T0 + 5 010): the holder loses the agent.
    w.clock = T0 + 200;
    w.must(agentRef("z"), "AgentTimedOut", { deadline: T0 + 200 });
    v = view(w);
    assert.equal(v.agents.live.find((a) => a.id === "z")?.state, "stopping");
    assert.deepEqual(v.leases.live, []);
    assert.deepEqual(v.leases.ended, { released: 1, expired: 0, revoked: 3 });
    assert.equal(v.leases.granted, 4);
    assert.deepEqual([v.leases.ignored, v.leases.untracked], [0, 0]);
    assert.deepEqual(v.pools.web?.metrics.totalLeases, 4);
    assert.equal(v.pools.web?.metrics.active, 0);

    // A lease that ended is not ended again: a late revoke of it is untracked, by the agent too.
    const late = createEvent(
      agentRef("z"),
      "AgentLeaseRevoked",
      { leaseId: Lz, reason: "late" },
      { id: "l", at: w.clock },
    );
    v = foldWorldview(records([...w.history, late]));
    assert.deepEqual([v.leases.ended.revoked, v.leases.untracked, v.agents.ignored], [3, 1, 1]);

    for (const [id, l] of [
      ["x", Lx],
      ["y", Ly],
      ["z", Lz],
    ] as const)
      assert.equal(leaseOutcome(agentHistory(w, id), l), "revoked", `${l}`);
    assert.equal(leaseOutcome(agentHistory(w, "r"), Lr), "released");
  });

  it("expired: a lease that ran out leaves its agent expired, counted as starting, until it is recycled or drained", () => {
    const w = poolWithReadyAgents(["a", "b", "c"]);
    const web = poolRef("web");
    const [La, Lb, Lc] = [lid("a", 1), lid("b", 1), lid("c", 1)];
    w.clock = T0 + 10;
    for (const [id, l] of [
      ["a", La],
      ["b", Lb],
      ["c", Lc],
    ] as const)
      assert.ok(w.lease(id, l, "h", 1_000));
    w.clock = T0 + 500;
    w.must(agentRef("a"), "AgentLeaseRenewed", { leaseId: La, expiresAt: T0 + 2_000 });
    let v = view(w);
    assert.equal(v.agents.live.find((x) => x.id === "a")?.leaseExpiresAt, T0 + 2_000);

    // An expiry for the deadline before the renewal is stale; one for the current one counts.
    const unfit: Unfit = { agents: 0, leases: 0, pools: new Map() };
    w.clock = T0 + 1_010;
    assert.equal(w.send(agentRef("a"), "AgentLeaseExpired", { leaseId: La, deadline: T0 + 1_010 }), null);
    w.clock = T0 + 2_000;
    for (const [id, l, deadline] of [
      ["a", La, T0 + 2_000],
      ["b", Lb, T0 + 1_010],
      ["c", Lc, T0 + 1_010],
    ] as const)
      w.must(agentRef(id), "AgentLeaseExpired", { leaseId: l, deadline });
    v = view(w, unfit);
    assert.deepEqual(
      v.agents.live.map((x) => [x.id, x.state, x.leaseId, x.leaseExpiresAt, x.leasesServed]),
      [
        ["a", "expired", null, null, 1],
        ["b", "expired", null, null, 1],
        ["c", "expired", null, null, 1],
      ],
    );
    assert.equal(v.agents.byState.expired, 3);
    assert.deepEqual(v.leases.ended, { released: 0, expired: 3, revoked: 0 });
    assert.deepEqual(v.leases.live, []);
    // Renewed next (recycled or replaced): on its way to ready again, neither active nor idle.
    assert.deepEqual(
      [
        v.pools.web?.metrics.active,
        v.pools.web?.metrics.idle,
        v.pools.web?.metrics.starting,
        v.pools.web?.metrics.total,
      ],
      [0, 0, 3, 3],
    );
    assert.match(formatWorldview(v), /^live agents 3: .*leased 0, expired 3, draining 0,/m);

    // What does not leave `expired`: the lost lease's holder, a timer, a stop or a recycle not asked for.
    const rejected: [EventType, unknown][] = [
      ["AgentReleased", { leaseId: La }],
      ["AgentLeaseRenewed", { leaseId: La, expiresAt: T0 + 9_000 }],
      ["AgentLeaseRevoked", { leaseId: La, reason: "closing" }],
      ["AgentLeaseExpired", { leaseId: La, deadline: T0 + 2_000 }],
      ["AgentTimedOut", { deadline: T0 + 2_000 }],
      ["AgentStopped", {}],
      ["AgentRecycled", { generation: 2, deadline: T0 + 9_000 }],
    ];
    const extra: Envelope[] = [];
    for (const [type, data] of rejected) {
      assert.equal(w.send(agentRef("a"), type, data as never), null, `${type} left expired`);
      extra.push(createEvent(agentRef("a"), type, data as never, { id: `x${extra.length}`, at: w.clock }));
    }
    const withRejected = foldWorldview(records([...w.history, ...extra]));
    assert.equal(withRejected.agents.ignored, rejected.length);
    assert.equal(withRejected.leases.ignored + withRejected.leases.untracked, 4);
    assert.deepEqual(withRejected.agents.live, v.agents.live);
    assert.deepEqual(withRejected.leases.ended, v.leases.ended);

    // The ways out: the pool recycles it (lease-expired), retires it, or it fails.
    w.clock = T0 + 2_100;
    w.effects(w.must(web, "PoolAgentRecycled", { agentId: "a", reason: "lease-expired" }));
    w.effects(w.must(web, "PoolAgentRetired", { agentId: "b", reason: "scale-down" }));
    w.must(agentRef("c"), "AgentFailed", { phase: "ready", code: "unhealthy", message: "gone" });
    v = view(w);
    assert.deepEqual(
      v.agents.live.map((x) => [x.id, x.state]),
      [
        ["a", "recycling"],
        ["b", "stopping"],
      ],
    );
    assert.equal(v.agents.byState.expired, 0);
    assert.deepEqual(
      v.agents.failures.map((f) => [f.agentId, f.phase, f.code]),
      [["c", "ready", "unhealthy"]],
    );
    assert.deepEqual(
      v.leases.ended,
      { released: 0, expired: 3, revoked: 0 },
      "an expired lease stays expired",
    );
    w.must(agentRef("a"), "AgentRecycled", { generation: 2, deadline: T0 + 20_000 });
    w.must(agentRef("a"), "AgentPortsAllocated", { generation: 2, ports: [7100, 7101] });
    w.must(agentRef("a"), "AgentCreated", { generation: 2, instanceId: "a-2" });
    w.ready("a", 2);
    assert.ok(w.lease("a", lid("a", 2)), "a recycled agent is leased again");
    w.must(agentRef("b"), "AgentStopped", {});
    v = view(w);
    assert.deepEqual(
      v.agents.live.map((x) => [x.id, x.state, x.generation, x.leaseId, x.leasesServed]),
      [["a", "leased", 2, lid("a", 2), 2]],
    );
    assert.deepEqual(v.pools.web?.metrics.totalLeases, 4);
    assert.deepEqual(v.pools.web?.metrics.totalRecycles, 1);
    assert.equal(leaseOutcome(agentHistory(w, "a"), La), "expired");
    assert.equal(leaseOutcome(agentHistory(w, "a"), lid("a", 2)), "granted");
  });

  it("leaseOutcome: granted while held, else released, expired or revoked; undefined for a lease its agent never held", () => {
    const w = poolWithReadyAgents(["a"]);
    const a = agentRef("a");
    const L = (n: number) => lid("a", n);
    const outcome = (leaseId: string) => leaseOutcome(agentHistory(w, "a"), leaseId);
    assert.equal(outcome(L(1)), undefined);
    assert.equal(leaseOutcome([], L(1)), undefined);

    assert.ok(w.lease("a", L(1)));
    assert.equal(outcome(L(1)), "granted");
    w.must(a, "AgentLeaseRenewed", { leaseId: L(1), expiresAt: w.clock + 5_000 });
    assert.equal(outcome(L(1)), "granted", "a renewal keeps it granted");
    w.must(a, "AgentReleased", { leaseId: L(1) });
    assert.equal(outcome(L(1)), "released");

    assert.ok(w.lease("a", L(2)));
    w.must(a, "AgentLeaseRevoked", { leaseId: L(2), reason: "pool closing" });
    assert.ok(w.lease("a", L(3)));
    w.must(a, "AgentLeaseExpired", { leaseId: L(3), deadline: w.clock + 1_000 });
    w.must(a, "AgentRecycleRequested", { reason: "lease-expired", deadline: w.clock + 100 });
    w.must(a, "AgentRecycled", { generation: 2, deadline: w.clock + 100 });
    w.must(a, "AgentPortsAllocated", { generation: 2, ports: [7100] });
    w.must(a, "AgentCreated", { generation: 2, instanceId: "a-2" });
    w.ready(a.id, 2);
    assert.ok(w.lease("a", L(4)));
    w.must(a, "AgentFailed", { phase: "ready", code: "exited", message: "code 137" });

    assert.deepEqual(
      [1, 2, 3, 4].map((n) => outcome(L(n))),
      ["released", "revoked", "expired", "revoked"],
      "each lease as it ended, whatever came after it",
    );
    // Never held: another lease id of this agent, another agent's lease, not a lease id at all.
    assert.equal(outcome(L(5)), undefined);
    assert.equal(outcome(lid("b", 1)), undefined);
    assert.equal(outcome("a"), undefined);
    // The worldview agrees, counted.
    const v = view(w);
    assert.deepEqual(v.leases.ended, { released: 1, expired: 1, revoked: 2 });
    assert.equal(v.leases.granted, 4);
  });

  it("PoolOrphanRemoved: recorded in any state once the pool exists, never ignored, changing nothing shown", () => {
    const w = new World();
    const web = poolRef("web");
    const orphan = (n: number) => ({
      instanceId: `corral-web-old-${n}`,
      agentId: `old-${n}`,
      generation: n,
      runtime: "docker" as const,
    });
    // Before the pool exists: rejected by the machine, and the pool is not shown.
    assert.equal(w.send(web, "PoolOrphanRemoved", orphan(0)), null);
    const early = createEvent(web, "PoolOrphanRemoved", orphan(0), { id: "o", at: T0 });
    assert.deepEqual(foldWorldview(records([early])).pools, {});

    w.must(web, "PoolCreated", { config: poolConfig(), instance: "i" });
    let before = view(w).pools.web;
    for (const [n, next] of [
      [1, () => w.must(web, "PoolCloseRequested", { reason: "down" })],
      [2, () => w.must(web, "PoolClosed", {})],
      [3, () => w.must(web, "PoolReopened", { config: poolConfig(), instance: "j" })],
      [4, () => {}],
    ] as const) {
      w.clock++;
      w.must(web, "PoolOrphanRemoved", orphan(n)); // open, closing, closed, open again
      const v = view(w);
      assert.deepEqual(v.pools.web, before, `orphan ${n} in ${before?.state}`);
      assert.equal(v.pools.web?.ignored, 0);
      next();
      before = view(w).pools.web;
    }
    assert.equal(w.snap("pool", "web")?.context.orphansRemoved, 4);
    const v = view(w);
    assert.equal(v.totals.byType.PoolOrphanRemoved, 4);
    assert.deepEqual([v.agents.untracked, v.agents.ignored], [0, 0], "not an agent's event");
  });
});

/**
 * Differential: events the machines would not all accept — any events in any order, and real
 * histories with events replayed or moved — fed to the machines and to the worldview alike.
 */
describe("worldview against the machines on input they partly reject", () => {
  const deadlines = [T0 + 100, T0 + 200, T0 + 300];
  // Lease ids of either agent, so an event on one may name the other's lease.
  const leaseIds = [lid("a", 1), lid("a", 2), lid("__proto__", 1)];
  const arbEvent = fc.oneof(
    fc
      .record({
        id: fc.constantFrom("a", "__proto__"),
        type: fc.constantFrom(...typesOfKind("agent")),
        g: fc.integer({ min: 1, max: 3 }),
        d: fc.constantFrom(...deadlines),
        lease: fc.constantFrom(...leaseIds),
        pool: fc.constantFrom("web", "constructor"),
      })
      .map(({ id, type, g, d, lease, pool }) => {
        const data: Record<string, unknown> = {
          AgentRequested: { poolId: pool, runtime: "process", deadline: d },
          AgentPortsAllocated: { generation: g, ports: [9000 + g] },
          AgentCreated: { generation: g, instanceId: `i${g}` },
          AgentStarted: { generation: g },
          AgentLeased: { leaseId: lease, poolId: pool, holder: "", ttlMs: 100, expiresAt: d },
          AgentLeaseRenewed: { leaseId: lease, expiresAt: d },
          AgentReleased: { leaseId: lease },
          AgentLeaseExpired: { leaseId: lease, deadline: d },
          AgentLeaseRevoked: { leaseId: lease, reason: "x" },
          AgentRecycleRequested: { reason: "r", deadline: d },
          AgentRecycled: { generation: g, deadline: d },
          AgentDrainRequested: { reason: "d", deadline: d },
          AgentStopped: {},
          AgentFailed: { phase: "p", code: "c", message: "m" },
          AgentTimedOut: { deadline: d },
          ...Object.fromEntries(identityAndInit(g, d)),
        };
        assert.ok(type in data, `no data for ${type}`);
        return { ref: agentRef(id), type, data: data[type] };
      }),
    fc
      .record({
        id: fc.constantFrom("a", "__proto__", "nobody"),
        type: fc.constantFrom(...typesOfKind("session")),
        g: fc.integer({ min: 1, max: 3 }),
        n: fc.nat(9),
      })
      .map(({ id, type, g, n }) => {
        const data = Object.fromEntries(sessionFacts(g, n)) as Record<string, unknown>;
        assert.ok(type in data, `no data for ${type}`);
        return { ref: { kind: "session" as const, id }, type, data: data[type] };
      }),
    fc
      .record({
        id: fc.constantFrom("web", "constructor"),
        type: fc.constantFrom(...typesOfKind("pool")),
        n: fc.integer({ min: 0, max: 3 }),
      })
      .map(({ id, type, n }) => {
        const config = poolConfig({ min: n, warm: n });
        const data: Record<string, unknown> = {
          PoolCreated: { config, instance: "i" },
          PoolReconfigured: { config, instance: "j" },
          PoolAgentSpawned: { agentId: "a", reason: "warm" },
          PoolAgentRetired: { agentId: "a", reason: "scale-down" },
          PoolAgentRecycled: { agentId: "a", reason: n % 2 ? "lease-expired" : "max-age" },
          PoolSpawnFailed: {
            agentId: "a",
            code: `E${n}`,
            message: "m",
            streak: n + 1,
            retryAt: T0 + 500 * n,
          },
          PoolOrphanRemoved: { instanceId: `o${n}`, agentId: "a", generation: n, runtime: "process" },
          PoolCloseRequested: { reason: `r${n}` },
          PoolClosed: {},
          PoolReopened: { config, instance: "k" },
        };
        assert.ok(type in data, `no data for ${type}`);
        return { ref: poolRef(id), type, data: data[type] };
      }),
  );

  it("property: on arbitrary events, ignored + untracked is exactly what the machines rejected", () => {
    fc.assert(
      fc.property(
        fc.array(arbEvent, { maxLength: 150 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (inputs, cuts) => {
          const timed = inputs.map((x, i) => ({ ...x, at: T0 + i }));
          differential(timed, cuts);
          differential(timed, cuts, { grantsTheLeaseSliceCannotJudge: "keep" });
        },
      ),
      { numRuns: 300 },
    );
  });

  it("property: real histories with events replayed or moved: ignored exactly where the machines reject", () => {
    fc.assert(
      fc.property(
        arbOps,
        fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 40 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (ops, moves, cuts) => {
          const real = runOps(ops).history;
          const inputs = real.map((e) => ({
            ref: e.aggregate,
            type: e.type as EventType,
            data: e.data,
            at: e.at,
          }));
          for (const [from, to] of moves) {
            const copy = inputs[from % Math.max(1, real.length)];
            if (copy) inputs.splice(to % (inputs.length + 1), 0, copy); // a duplicate, earlier or later
          }
          differential(inputs, cuts);
          differential(inputs, cuts, { grantsTheLeaseSliceCannotJudge: "keep" });
        },
      ),
      { numRuns: 100 },
    );
  });
});

/**
 * Feeds the same inputs to the machines and, all of them, to the worldview: whatever a machine
 * rejects the worldview must count as ignored or untracked and otherwise not apply; whatever it
 * accepts, the worldview must apply — so everything else agrees as on a valid stream.
 */
function inputsOf(history: readonly Envelope[]) {
  return history.map((e) => ({ ref: e.aggregate, type: e.type as EventType, data: e.data, at: e.at }));
}

function differential(
  inputs: readonly { ref: AggregateRef; type: EventType; data: unknown; at: number }[],
  cuts: readonly number[],
  opts: { grantsTheLeaseSliceCannotJudge?: "leave-out" | "keep" } = {},
): World {
  const keep = opts.grantsTheLeaseSliceCannotJudge === "keep";
  const w = new World();
  const stream: Envelope[] = [];
  const unfit: Unfit = { agents: 0, leases: 0, pools: new Map() };
  const bounds = new Set(cuts.map((c) => c % (inputs.length + 1)));
  let state = worldviewProjection.init();
  // At each cut: the worldview so far must say what the machines say so far; then it goes on from
  // a msgpack checkpoint of itself, as the runner does.
  const check = () => {
    const v = worldviewProjection.save(state);
    assertMatchesMachines(v, w, unfit, !keep);
    state = worldviewProjection.load(decode(encode(v)) as Worldview);
  };
  for (const [i, { ref, type, data, at }] of inputs.entries()) {
    if (bounds.has(i)) check();
    w.clock = at;
    const before = w.snap(ref.kind, ref.id);
    // A second creation of an aggregate that already ended is the one thing the worldview
    // cannot tell (ended aggregates are only counted): leave those out.
    if (before?.status === "done" && type === "AgentRequested") continue;
    // So is a session of an agent that is not live: the worldview shows a session only on its agent.
    if (ref.kind === "session" && !isLiveAgent(w, ref.id)) continue;
    // The lease slice follows leases, not the agent's phase or pool: a grant that names this
    // agent, while it holds no lease, is one it takes, whether or not the agent is idle and in
    // that pool (on a stored stream it always is). Left out, so every lease check stays exact;
    // kept, with the checks that come from the lease slice left out (the agents are still exact).
    if (
      !keep &&
      type === "AgentLeased" &&
      agentOfLease((data as { leaseId: string }).leaseId) === ref.id &&
      !before?.context.lease &&
      !w.accepts(ref, type, data)
    )
      continue;
    // Nor does it know an agent's generation: a verdict the machine refuses (another generation)
    // on an agent that holds a lease would end it there. Left out the same way.
    if (!keep && type === "AgentUntrusted" && before?.context.lease && !w.accepts(ref, type, data)) continue;
    const e = createEvent(ref, type, data, { id: `${i}`, at });
    stream.push(e);
    worldviewProjection.apply(state, record(e, stream.length));
    if (w.send(ref, type, data as never)) continue; // accepted: the worldview must apply it
    if (ref.kind === "agent" || ref.kind === "session") {
      unfit.agents++;
      if (LEASE_TYPES.has(type)) unfit.leases++;
    }
    // Events for a pool not created yet are not shown at all; the others count as ignored.
    else if (before && before.value !== "new") unfit.pools.set(ref.id, (unfit.pools.get(ref.id) ?? 0) + 1);
  }
  check();
  const v = foldWorldview(records(stream));
  assert.deepEqual(v.skipped, {});
  assert.deepEqual(worldviewProjection.save(state), v);
  return w;
}
