import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { type AnyMachineSnapshot, type AnyStateMachine, initialTransition, transition } from "xstate";
import { agentMachine } from "../machines/agent.ts";
import { leaseMachine } from "../machines/lease.ts";
import { poolMachine } from "../machines/pool.ts";
import { step } from "../machines/step.ts";
import { decode, encode } from "../src/codec/msgpack.ts";
import type { DataInputOf, EventType } from "../src/events/catalogue.ts";
import { createEvent, typesOfKind } from "../src/events/catalogue.ts";
import type { AggregateKind, AggregateRef, Envelope } from "../src/events/envelope.ts";
import { AGENT_LIVE_STATES, MAX_FAILURES } from "../src/projections/agents.ts";
import { formatWorldview } from "../src/projections/format.ts";
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
  lease: leaseMachine,
};

/** The agent machine's state value in the worldview's words: `{ready: "idle"}` → "idle". */
function agentStateName(value: unknown): string {
  return typeof value === "string" ? value : (value as { ready: string }).ready;
}

const ENDED = new Set(["stopped", "failed"]);

/**
 * The real machines, driven by inputs the way the control plane drives them: each input goes
 * through xstate's pure `transition`, and only accepted ones (the state or context changed, or
 * effects were asked for) are stored — in the order they were accepted, so the aggregates'
 * events interleave. The pool's and lease's effects become their agent's next input, as the
 * host does it.
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
    if (ref.kind === "agent") this.agentStates.add(agentStateName(next.value));
    if (ref.kind === "agent" && next.value === "failed" && prev.value !== "failed") {
      const c = next.context;
      this.failures.push({ agentId: ref.id, poolId: c.poolId, ...c.error, at: e.at });
    }
    return actions;
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
        reason?: string;
      };
      const agent = (id: string): AggregateRef => ({ kind: "agent", id });
      if (a.type === "spawnAgent") {
        this.send(agent(p.agentId), "AgentRequested", {
          poolId: p.poolId,
          runtime: p.runtime,
          deadline: p.deadline,
        });
      } else if (a.type === "retireAgent") {
        this.send(agent(p.agentId), "AgentDrainRequested", { reason: p.reason ?? "", deadline: p.deadline });
      } else if (a.type === "recycleAgent" && p.reason !== undefined) {
        this.send(agent(p.agentId), "AgentRecycleRequested", { reason: p.reason, deadline: p.deadline });
      } else if (a.type === "recycleAgent") {
        // From an expired lease: the agent's state is unknown.
        this.send(agent(p.agentId), "AgentRecycleRequested", {
          reason: "lease-expired",
          deadline: this.clock + 500,
        });
      }
    }
  }

  /** A lease on an agent: the agent's fact and the lease's, as the supervisor stores them. */
  lease(agentId: string, leaseId: string, holder = "me"): boolean {
    const a = this.snap("agent", agentId);
    if (!this.send({ kind: "agent", id: agentId }, "AgentLeased", { leaseId })) return false;
    this.must({ kind: "lease", id: leaseId }, "LeaseGranted", {
      poolId: a?.context.poolId,
      agentId,
      holder,
      ttlMs: 1_000,
      expiresAt: this.clock + 1_000,
    });
    return true;
  }
}

const POOLS = ["web", "constructor", "hasOwnProperty"];
const AGENT_IDS = ["__proto__", "constructor", "toString"];
const agentRef = (id: string): AggregateRef => ({ kind: "agent", id });
const poolRef = (id: string): AggregateRef => ({ kind: "pool", id });
const leaseRef = (id: string): AggregateRef => ({ kind: "lease", id });

/** Inputs that move an aggregate along its happy path: preferred two times in three, so histories get far. */
const POOL_PROGRESS = new Set<EventType>(["PoolCreated", "PoolAgentSpawned", "PoolClosed", "PoolReopened"]);
const AGENT_PROGRESS = new Set<EventType>([
  "AgentPortsAllocated",
  "AgentCreated",
  "AgentStarted",
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
): [EventType, unknown] | [] {
  const ok = inputs.filter(([t, d]) => accepts(t, d));
  const forward = ok.filter(([t]) => progress.has(t));
  const from = forward.length > 0 && choice % 3 !== 0 ? forward : ok;
  return from[Math.floor(choice / 3) % Math.max(1, from.length)] ?? [];
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
      const inputs: [EventType, unknown][] = [
        ["PoolCreated", { config, instance: "i1" }],
        ["PoolReconfigured", { config, instance: "i2" }],
        ["PoolAgentSpawned", { agentId: AGENT_IDS[agents] ?? `a${agents}`, reason: "warm" }],
        ["PoolAgentRetired", { agentId: target, reason: extra % 2 ? "idle-timeout" : "scale-down" }],
        ["PoolAgentRecycled", { agentId: target, reason: "max-age" }],
        ["PoolSpawnFailed", { agentId: target, code: `E${extra % 5}`, message: "no ports" }],
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
        ["AgentLeased", { leaseId: `L${leases}` }],
        ["AgentReleased", { leaseId: c.leaseId ?? "none" }],
        ["AgentRecycleRequested", { reason: "unhealthy", deadline: w.clock + 50 + (extra % 7) }],
        ["AgentRecycled", { generation: g + 1, deadline: w.clock + 40 + (extra % 5) }],
        ["AgentDrainRequested", { reason: "closing", deadline: w.clock + 60 + (extra % 3) }],
        ["AgentStopped", {}],
        ["AgentFailed", { phase: "ready", code: "exited", message: `code ${extra % 256}` }],
        ["AgentTimedOut", { deadline: c.deadline ?? 0 }],
      ];
      const [type, data] = pickAccepted(
        inputs,
        (t, d) => w.accepts(agentRef(id), t, d),
        choice,
        AGENT_PROGRESS,
      );
      if (!type) continue;
      if (type === "AgentLeased") {
        w.lease(id, `L${leases++}`);
        continue;
      }
      const leaseId = c.leaseId as string | null;
      w.send(agentRef(id), type, data as never);
      if (type === "AgentPortsAllocated") port += 2;
      // What the supervisor does around it: the lease ends with the agent's release or failure.
      if (leaseId && type === "AgentReleased" && extra % 3 !== 0)
        w.send(leaseRef(leaseId), "LeaseReleased", {});
      if (leaseId && type === "AgentFailed")
        w.send(leaseRef(leaseId), "LeaseRevoked", { reason: "agent failed" });
    } else {
      const ids = w.ids("lease");
      const id = ids[pick % Math.max(1, ids.length)];
      if (id === undefined) continue;
      const c = w.snap("lease", id)?.context;
      const inputs: [EventType, unknown][] = [
        ["LeaseRenewed", { expiresAt: c.expiresAt + (extra % 3) * 500 }],
        ["LeaseReleased", {}],
        ["LeaseExpired", { deadline: c.expiresAt }],
        ["LeaseRevoked", { reason: "pool closed" }],
      ];
      const [type, data] = pickAccepted(inputs, (t, d) => w.accepts(leaseRef(id), t, d), choice, new Set());
      if (!type) continue;
      const actions = w.send(leaseRef(id), type, data as never);
      if (actions) w.effects(actions);
    }
  }
  return w;
}

/** What the worldview should have counted as not fitting: nothing, on a stream the machines wrote. */
interface Unfit {
  agents: number;
  leases: number;
  pools: Map<string, number>;
}
const NONE: Unfit = { agents: 0, leases: 0, pools: new Map() };

/** Asserts that the worldview says what the machines' own snapshots say. */
function assertMatchesMachines(v: Worldview, w: World, unfit: Unfit = NONE): void {
  // Agents: every live one as its machine has it; ended ones counted.
  const agentIds = w.ids("agent");
  const live = agentIds.filter((id) => !ENDED.has(agentStateName(w.snap("agent", id)?.value)));
  assert.deepEqual(v.agents.live.map((a) => a.id).sort(), [...live].sort(), "live agents");
  for (const a of v.agents.live) {
    const s = w.snap("agent", a.id) as AnyMachineSnapshot;
    const c = s.context;
    assert.equal(a.state, agentStateName(s.value), `state of ${a.id}`);
    assert.deepEqual(
      {
        poolId: a.poolId,
        runtime: a.runtime,
        generation: a.generation,
        instanceId: a.instanceId,
        ports: a.ports,
        leaseId: a.leaseId,
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
        leaseId: c.leaseId,
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
      starting: inState("requested", "creating", "starting", "recycling"),
      totalLeases: w.ids("lease").filter((l) => w.snap("lease", l)?.context.poolId === name).length,
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
    assert.deepEqual(p.metrics, expected, `metrics of ${name}`);
    assert.deepEqual(poolMetrics(v, name), expected);
    assert.equal(
      p.metrics.total,
      p.metrics.active + p.metrics.idle + p.metrics.starting + inState("stopping"),
    );
  }

  // Leases.
  const leaseIds = w.ids("lease");
  const granted = leaseIds.filter((id) => w.snap("lease", id)?.value === "granted");
  assert.deepEqual(
    v.leases.live
      .map((l) => ({ ...l, renewals: undefined, grantedSeq: undefined }))
      .sort((a, b) => (a.id < b.id ? -1 : 1)),
    granted.sort().map((id) => {
      const c = (w.snap("lease", id) as AnyMachineSnapshot).context;
      const { poolId, agentId, holder, grantedAt, expiresAt } = c;
      return {
        id,
        poolId,
        agentId,
        holder,
        grantedAt,
        expiresAt,
        renewals: undefined,
        grantedSeq: undefined,
      };
    }),
  );
  assert.equal(v.leases.granted, leaseIds.length);
  for (const how of ["released", "expired", "revoked"] as const) {
    assert.equal(v.leases.ended[how], leaseIds.filter((id) => w.snap("lease", id)?.value === how).length);
  }
  assert.equal(v.leases.ignored + v.leases.untracked, unfit.leases, "leases ignored + untracked");

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

const arbOps = fc.array(fc.tuple(fc.nat(2), fc.nat(50), fc.nat(300), fc.nat(1_000)), {
  minLength: 1,
  maxLength: 400,
  size: "large",
});

describe("worldview: pools, agents, leases, ports", () => {
  it("has a new version, so checkpoints of the old shape are ignored", () => {
    assert.equal(worldviewProjection.version, WORLDVIEW_VERSION);
    assert.ok(WORLDVIEW_VERSION >= 2);
  });

  it("property: on machine-valid interleaved histories it says what the machines say, whatever the chunking", () => {
    const reached = new Set<string>();
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
      }),
      { numRuns: 150 },
    );
    // The generator gets everywhere: every state of the agent machine was seen.
    for (const s of [...AGENT_LIVE_STATES, "stopped", "failed"])
      assert.ok(reached.has(s), `never reached ${s}`);
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
      w.must(agentRef(id), "AgentStarted", { generation: 1 });
    }
    const at = (dt: number) => T0 + dt;
    t(30);
    assert.ok(w.lease("a1", "L1", "alice"));
    assert.ok(w.lease("a2", "L2", "bob"));
    t(40);
    w.must(leaseRef("L1"), "LeaseReleased", {});
    w.must(agentRef("a1"), "AgentReleased", { leaseId: "L1" });
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
    w.must(agentRef("a1"), "AgentStarted", { generation: 2 });
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
    assert.deepEqual(v.agents.pools, [{ poolId: "web", recycles: 1, stopped: 1, failed: 1 }]);
    assert.deepEqual(v.leases.live, [
      {
        id: "L2",
        poolId: "web",
        agentId: "a2",
        holder: "bob",
        grantedAt: at(30),
        expiresAt: at(1_030),
        renewals: 0,
        grantedSeq: v.leases.live[0]?.grantedSeq,
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
      /^live agents 1: requested 0, creating 0, starting 0, idle 0, leased 1,.* \| ended: stopped 1, failed 1$/m,
    );
    assert.match(text, /^\s+a2\s+web\s+leased\s+1\s+8002,8003\s+L2\s+1\s+0\s+/m);
    assert.match(text, /^\s+2025-01-01T00:00:00.060Z {2}a3 \(web\) in ready: exited: code 137$/m);
    assert.match(text, /^leases {4}live 1 \| granted 2 \| ended: released 1, expired 0, revoked 0$/m);
    assert.match(text, /^\s+L2\s+web\s+a2\s+bob\s+2025-01-01T00:00:01.030Z$/m);
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
    const ls = leaseRef("L1");
    const web = poolRef("web");
    const d = T0 + 500;
    // [event, fits?]: the machines must agree with each verdict (checked by `differential`).
    const script: [AggregateRef, EventType, unknown, boolean][] = [
      [web, "PoolAgentSpawned", { agentId: "a", reason: "min" }, false], // pool not created: not shown
      [web, "PoolCreated", { config: poolConfig(), instance: "i" }, true],
      [web, "PoolCreated", { config: poolConfig(), instance: "i" }, false],
      [web, "PoolClosed", {}, false], // not closing
      [web, "PoolReopened", { config: poolConfig(), instance: "i" }, false], // not closed
      [ag, "AgentStarted", { generation: 1 }, false], // not requested yet: untracked
      [ag, "AgentRequested", { poolId: "web", runtime: "process", deadline: d }, true],
      [ag, "AgentRequested", { poolId: "web", runtime: "process", deadline: d }, false],
      [ag, "AgentPortsAllocated", { generation: 2, ports: [1] }, false], // another generation
      [ag, "AgentCreated", { generation: 1, instanceId: "x" }, false], // no ports yet
      [ag, "AgentTimedOut", { deadline: d - 1 }, false], // a stale timer
      [ag, "AgentPortsAllocated", { generation: 1, ports: [1, 2] }, true],
      [ag, "AgentCreated", { generation: 1, instanceId: "x" }, true],
      [ag, "AgentStarted", { generation: 1 }, true],
      [ag, "AgentTimedOut", { deadline: d }, false], // ready: no deadline armed
      [ag, "AgentStopped", {}, false], // not stopping
      [ag, "AgentRecycled", { generation: 2, deadline: d }, false], // not recycling
      [ag, "AgentLeased", { leaseId: "L1" }, true],
      [ls, "LeaseGranted", { poolId: "web", agentId: "a", ttlMs: 10, expiresAt: d }, true],
      [ag, "AgentLeased", { leaseId: "L2" }, false], // leased already
      [ag, "AgentReleased", { leaseId: "L2" }, false], // another lease
      [ls, "LeaseRenewed", { expiresAt: d }, false], // does not extend
      [ls, "LeaseRenewed", { expiresAt: d + 100 }, true],
      [ls, "LeaseExpired", { deadline: d }, false], // renewed since
      [ag, "AgentDrainRequested", { reason: "scale-down", deadline: d + 50 }, true], // → draining
      [ag, "AgentDrainRequested", { reason: "again", deadline: d + 60 }, false],
      [ag, "AgentReleased", { leaseId: "L2" }, false],
      [ag, "AgentReleased", { leaseId: "L1" }, true], // → stopping, ports still held
      [ls, "LeaseReleased", {}, true],
      [ls, "LeaseRevoked", { reason: "late" }, false], // ended: untracked
      [ag, "AgentRecycleRequested", { reason: "r", deadline: d }, false], // stopping
      [ag, "AgentStopped", {}, true],
      [ag, "AgentFailed", { phase: "x", code: "y", message: "z" }, false], // ended: untracked
      [web, "PoolSpawnFailed", { agentId: "b", code: "ports", message: "exhausted" }, true],
      [web, "PoolCloseRequested", { reason: "down" }, true],
      [web, "PoolAgentSpawned", { agentId: "c", reason: "min" }, false], // closing
      [web, "PoolAgentRecycled", { agentId: "a", reason: "max-age" }, false],
      [web, "PoolAgentRetired", { agentId: "a", reason: "closing" }, true], // still recorded while closing
      [web, "PoolClosed", {}, true],
      [web, "PoolAgentRetired", { agentId: "a", reason: "scale-down" }, false], // closed
      [web, "PoolSpawnFailed", { agentId: "b", code: "late", message: "x" }, false],
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
    assert.deepEqual([v.agents.ignored, v.agents.untracked], [12, 2]);
    assert.deepEqual([v.leases.ignored, v.leases.untracked], [2, 1]);
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
        totalLeases: 1,
        totalRecycles: 0,
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
 * Differential: events the machines would not all accept — any events in any order, and real
 * histories with events replayed or moved — fed to the machines and to the worldview alike.
 */
describe("worldview against the machines on input they partly reject", () => {
  const deadlines = [T0 + 100, T0 + 200, T0 + 300];
  const arbEvent = fc.oneof(
    fc
      .record({
        id: fc.constantFrom("a", "__proto__"),
        type: fc.constantFrom(...typesOfKind("agent")),
        g: fc.integer({ min: 1, max: 3 }),
        d: fc.constantFrom(...deadlines),
        lease: fc.constantFrom("L1", "L2"),
        pool: fc.constantFrom("web", "constructor"),
      })
      .map(({ id, type, g, d, lease, pool }) => {
        const data: Record<string, unknown> = {
          AgentRequested: { poolId: pool, runtime: "process", deadline: d },
          AgentPortsAllocated: { generation: g, ports: [9000 + g] },
          AgentCreated: { generation: g, instanceId: `i${g}` },
          AgentStarted: { generation: g },
          AgentLeased: { leaseId: lease },
          AgentReleased: { leaseId: lease },
          AgentRecycleRequested: { reason: "r", deadline: d },
          AgentRecycled: { generation: g, deadline: d },
          AgentDrainRequested: { reason: "d", deadline: d },
          AgentStopped: {},
          AgentFailed: { phase: "p", code: "c", message: "m" },
          AgentTimedOut: { deadline: d },
        };
        return { ref: agentRef(id), type, data: data[type] };
      }),
    fc
      .record({
        id: fc.constantFrom("L1", "L2"),
        type: fc.constantFrom<EventType>(
          "LeaseGranted",
          "LeaseRenewed",
          "LeaseReleased",
          "LeaseExpired",
          "LeaseRevoked",
        ),
        d: fc.constantFrom(...deadlines),
      })
      .map(({ id, type, d }) => {
        const data: Record<string, unknown> = {
          LeaseGranted: { poolId: "web", agentId: "a", holder: "", ttlMs: 100, expiresAt: d },
          LeaseRenewed: { expiresAt: d },
          LeaseReleased: {},
          LeaseExpired: { deadline: d },
          LeaseRevoked: { reason: "x" },
        };
        return { ref: leaseRef(id), type, data: data[type] };
      }),
    fc
      .record({
        id: fc.constantFrom("web", "constructor"),
        type: fc.constantFrom<EventType>(
          "PoolCreated",
          "PoolReconfigured",
          "PoolAgentSpawned",
          "PoolAgentRetired",
          "PoolSpawnFailed",
          "PoolCloseRequested",
          "PoolClosed",
          "PoolReopened",
        ),
        n: fc.integer({ min: 0, max: 3 }),
      })
      .map(({ id, type, n }) => {
        const config = poolConfig({ min: n, warm: n });
        const data: Record<string, unknown> = {
          PoolCreated: { config, instance: "i" },
          PoolReconfigured: { config, instance: "j" },
          PoolAgentSpawned: { agentId: "a", reason: "warm" },
          PoolAgentRetired: { agentId: "a", reason: "scale-down" },
          PoolSpawnFailed: { agentId: "a", code: `E${n}`, message: "m" },
          PoolCloseRequested: { reason: `r${n}` },
          PoolClosed: {},
          PoolReopened: { config, instance: "k" },
        };
        return { ref: poolRef(id), type, data: data[type] };
      }),
  );

  it("property: on arbitrary events, ignored + untracked is exactly what the machines rejected", () => {
    fc.assert(
      fc.property(
        fc.array(arbEvent, { maxLength: 150 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (inputs, cuts) => {
          differential(
            inputs.map((x, i) => ({ ...x, at: T0 + i })),
            cuts,
          );
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
): World {
  const w = new World();
  const stream: Envelope[] = [];
  const unfit: Unfit = { agents: 0, leases: 0, pools: new Map() };
  const bounds = new Set(cuts.map((c) => c % (inputs.length + 1)));
  let state = worldviewProjection.init();
  // At each cut: the worldview so far must say what the machines say so far; then it goes on from
  // a msgpack checkpoint of itself, as the runner does.
  const check = () => {
    const v = worldviewProjection.save(state);
    assertMatchesMachines(v, w, unfit);
    state = worldviewProjection.load(decode(encode(v)) as Worldview);
  };
  for (const [i, { ref, type, data, at }] of inputs.entries()) {
    if (bounds.has(i)) check();
    w.clock = at;
    const before = w.snap(ref.kind, ref.id);
    // A second creation of an aggregate that already ended is the one thing the worldview
    // cannot tell (ended aggregates are only counted): leave those out.
    if (before?.status === "done" && (type === "AgentRequested" || type === "LeaseGranted")) continue;
    const e = createEvent(ref, type, data, { id: `${i}`, at });
    stream.push(e);
    worldviewProjection.apply(state, record(e, stream.length));
    if (w.send(ref, type, data as never)) continue; // accepted: the worldview must apply it
    if (ref.kind === "agent") unfit.agents++;
    else if (ref.kind === "lease") unfit.leases++;
    // Events for a pool not created yet are not shown at all; the others count as ignored.
    else if (before && before.value !== "new") unfit.pools.set(ref.id, (unfit.pools.get(ref.id) ?? 0) + 1);
  }
  check();
  const v = foldWorldview(records(stream));
  assert.deepEqual(v.skipped, {});
  assert.deepEqual(worldviewProjection.save(state), v);
  return w;
}
