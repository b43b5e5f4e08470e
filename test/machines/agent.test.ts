import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { getShortestPaths } from "@xstate/graph";
import type { SnapshotFrom } from "xstate";
import { agentAggregate, agentMachine, agentPhase } from "../../machines/agent.ts";
import type { Envelope } from "../../src/events/envelope.ts";
import { eventsFor, fold, given } from "../helpers/decider.ts";

const ref = { kind: "agent", id: "a1" } as const;
const T = 1_000_000;
const THUMB = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const L1 = "a1.0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
const L2 = "a1.0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c";
const grant = (leaseId: string, at: number) => ({
  leaseId,
  poolId: "p",
  holder: "me",
  ttlMs: 1_000,
  expiresAt: at + 1_000,
});

function ready() {
  const ev = eventsFor(ref);
  const h = [
    ev("AgentRequested", { poolId: "p", runtime: "process", deadline: T + 100 }, T),
    ev("AgentPortsAllocated", { generation: 1, ports: [8000, 8001] }, T + 1),
    ev("AgentCreated", { generation: 1, instanceId: "i-1" }, T + 2),
    ev("AgentStarted", { generation: 1 }, T + 3),
    ev("AgentRegistered", { generation: 1, thumbprint: THUMB, peerCN: "a1.p.agent.corral" }, T + 3),
    ev("InitStarted", { generation: 1, stepCount: 1, deadline: T + 60 }, T + 3),
    ev("InitCompleted", { generation: 1, durationMs: 0 }, T + 3),
  ];
  return { ev, h };
}

describe("agent machine", () => {
  it("requested → creating → starting → ready.idle, each step asking for its effect", () => {
    const ev = eventsFor(ref);
    const req = ev("AgentRequested", { poolId: "p", runtime: "docker", deadline: T + 100 }, T);
    given(agentMachine, [])
      .when(req)
      .thenState("requested", { createdAt: T, generation: 1, deadline: T + 100 }, ["allocatePorts"]);
    const ports = ev("AgentPortsAllocated", { generation: 1, ports: [8000] }, T + 1);
    given(agentMachine, [req])
      .when(ports)
      .thenState("creating", { ports: [8000] }, ["createInstance"]);
    const created = ev("AgentCreated", { generation: 1, instanceId: "c1" }, T + 2);
    given(agentMachine, [req, ports])
      .when(created)
      .thenState("starting", { instanceId: "c1" }, ["startInstance"]);
    const started = ev("AgentStarted", { generation: 1 }, T + 3);
    given(agentMachine, [req, ports, created])
      .when(started)
      .thenState("connecting", { deadline: T + 100 }, ["dialAgent"]);
  });

  it("connecting → initializing → ready.idle: registered, then the init plan, and only InitCompleted makes it leasable", () => {
    const { ev, h } = ready();
    const [req, ports, created, started, registered, initStarted, completed] = h.map((e) => e);
    if (!req || !ports || !created || !started || !registered || !initStarted || !completed)
      throw new Error("history");
    given(agentMachine, [req, ports, created, started])
      .when(registered)
      .thenState("initializing", { identity: { thumbprint: THUMB, peerCN: "a1.p.agent.corral" } }, []);
    given(agentMachine, [req, ports, created, started])
      .when(ev("AgentLeased", grant(L1, T + 4), T + 4))
      .thenRejected();
    const steps = [req, ports, created, started, registered];
    given(agentMachine, steps)
      .when(ev("InitStarted", { generation: 1, stepCount: 5, deadline: T + 900 }, T + 4))
      .thenState("initializing", { init: { step: null, index: 0, of: 5 }, deadline: T + 900 });
    const plan = [...steps, ev("InitStarted", { generation: 1, stepCount: 5, deadline: T + 900 }, T + 4)];
    given(agentMachine, plan)
      .when(ev("InitStepStarted", { generation: 1, name: "git", index: 1, of: 5 }, T + 5))
      .thenState("initializing", { init: { step: "git", index: 1, of: 5 } });
    given(agentMachine, plan)
      .when(ev("InitStepStarted", { generation: 1, name: "git", index: 5, of: 5 }, T + 5))
      .thenRejected();
    given(agentMachine, [
      ...plan,
      ev("InitStepStarted", { generation: 1, name: "git", index: 1, of: 5 }, T + 5),
    ])
      .when(ev("AgentLeased", grant(L1, T + 6), T + 6))
      .thenRejected();
    given(agentMachine, [...steps, initStarted])
      .when(completed)
      .thenState({ ready: "idle" }, { readyAt: T + 3, deadline: null }, []);
  });

  it("an init plan that fails fails the agent (the pool replaces it), naming the step", () => {
    const { ev, h } = ready();
    given(agentMachine, h.slice(0, 6))
      .when(
        ev(
          "InitFailed",
          { generation: 1, step: "git", reason: "exit_code", detail: "fatal: repository not found" },
          T + 9,
        ),
      )
      .thenState(
        "failed",
        {
          error: {
            phase: "initializing",
            code: "init_exit_code",
            message: "init step git failed: fatal: repository not found",
          },
        },
        ["cleanupInstance"],
      );
  });

  it("an untrusted agent is recycled from connecting, initializing and ready — a lease it held ends with it", () => {
    const { ev, h } = ready();
    const untrusted = ev("AgentUntrusted", { generation: 1, reason: "cn_mismatch", detail: "CN x" }, T + 9);
    for (const upTo of [4, 6]) {
      given(agentMachine, h.slice(0, upTo))
        .when(untrusted)
        .thenState(
          "recycling",
          { untrusted: { reason: "cn_mismatch", detail: "CN x" }, stopReason: "untrusted: cn_mismatch" },
          ["recycleInstance"],
        );
    }
    const leased = ev("AgentLeased", grant(L1, T + 8), T + 8);
    given(agentMachine, [...h, leased])
      .when(untrusted)
      .thenState("recycling", { lease: null }, ["recycleInstance"]);
    given(agentMachine, h.slice(0, 4))
      .when(ev("AgentUntrusted", { generation: 2, reason: "cn_mismatch", detail: "" }, T + 9))
      .thenRejected();
  });

  it("after a restart, every phase with a session re-dials; the others resume their own step", () => {
    const { h } = ready();
    for (const [upTo, effect] of [
      [3, "startInstance"],
      [4, "dialAgent"],
      [6, "dialAgent"],
      [7, "dialAgent"],
    ] as const) {
      const s = fold(agentMachine, h.slice(0, upTo));
      assert.deepEqual(
        (agentAggregate.resume?.(s) ?? []).map((e) => e.type),
        [effect],
        `after ${upTo} events`,
      );
    }
  });

  it("facts about another generation are stale and rejected", () => {
    const { ev, h } = ready();
    given(agentMachine, h.slice(0, 2))
      .when(ev("AgentCreated", { generation: 2, instanceId: "x" }, T + 5))
      .thenRejected();
  });

  it("idle ⇄ leased counts leases; a release for another lease is rejected", () => {
    const { ev, h } = ready();
    const leased = ev("AgentLeased", grant(L1, T + 10), T + 10);
    given(agentMachine, h)
      .when(leased)
      .thenState(
        { ready: "leased" },
        {
          lease: { id: L1, holder: "me", ttlMs: 1_000, grantedAt: T + 10, expiresAt: T + 1_010 },
          leasesServed: 1,
        },
        [],
      );
    given(agentMachine, [...h, leased])
      .when(ev("AgentReleased", { leaseId: L2 }, T + 11))
      .thenRejected();
    given(agentMachine, [...h, leased])
      .when(ev("AgentLeased", grant(L2, T + 11), T + 11))
      .thenRejected();
    given(agentMachine, [...h, leased])
      .when(ev("AgentReleased", { leaseId: L1 }, T + 12))
      .thenState({ ready: "idle" }, { lease: null, leasesServed: 1, idleSince: T + 12 });
  });

  it("a grant must name this agent and its pool", () => {
    const { ev, h } = ready();
    given(agentMachine, h)
      .when(ev("AgentLeased", grant("a2.0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", T + 10), T + 10))
      .thenRejected();
    given(agentMachine, h)
      .when(ev("AgentLeased", { ...grant(L1, T + 10), poolId: "other" }, T + 10))
      .thenRejected();
  });

  it("renewal must extend the held lease; expiry acts only for the held lease at its current end", () => {
    const { ev, h } = ready();
    const leased = ev("AgentLeased", grant(L1, T + 10), T + 10);
    const renewed = ev("AgentLeaseRenewed", { leaseId: L1, expiresAt: T + 5_000 }, T + 20);
    given(agentMachine, [...h, leased])
      .when(renewed)
      .thenState(
        { ready: "leased" },
        { lease: { id: L1, holder: "me", ttlMs: 1_000, grantedAt: T + 10, expiresAt: T + 5_000 } },
      );
    given(agentMachine, [...h, leased])
      .when(ev("AgentLeaseRenewed", { leaseId: L1, expiresAt: T + 500 }, T + 20))
      .thenRejected();
    given(agentMachine, [...h, leased])
      .when(ev("AgentLeaseRenewed", { leaseId: L2, expiresAt: T + 9_000 }, T + 20))
      .thenRejected();
    // A timer armed before the renewal is stale.
    given(agentMachine, [...h, leased, renewed])
      .when(ev("AgentLeaseExpired", { leaseId: L1, deadline: T + 1_010 }, T + 1_010))
      .thenRejected();
    given(agentMachine, [...h, leased, renewed])
      .when(ev("AgentLeaseExpired", { leaseId: L1, deadline: T + 5_000 }, T + 5_000))
      .thenState({ ready: "expired" }, { lease: null }, []);
    // Released and leased again: the old lease's expiry must not touch the new one.
    const released = ev("AgentReleased", { leaseId: L1 }, T + 30);
    const again = ev("AgentLeased", grant(L2, T + 40), T + 40);
    given(agentMachine, [...h, leased, released, again])
      .when(ev("AgentLeaseExpired", { leaseId: L1, deadline: T + 1_010 }, T + 1_010))
      .thenRejected();
  });

  it("an expired agent is recycled or drained, never leased; a leased one is never recycled", () => {
    const { ev, h } = ready();
    const leased = ev("AgentLeased", grant(L1, T + 10), T + 10);
    const expired = ev("AgentLeaseExpired", { leaseId: L1, deadline: T + 1_010 }, T + 1_010);
    const recycle = ev("AgentRecycleRequested", { reason: "lease-expired", deadline: T + 2_000 }, T + 1_011);
    given(agentMachine, [...h, leased, expired])
      .when(ev("AgentLeased", grant(L2, T + 1_011), T + 1_011))
      .thenRejected();
    given(agentMachine, [...h, leased, expired])
      .when(recycle)
      .thenState("recycling", {}, ["recycleInstance"]);
    given(agentMachine, [...h, leased, expired])
      .when(ev("AgentDrainRequested", { reason: "max-recycles", deadline: T + 2_000 }, T + 1_011))
      .thenState("stopping", {}, ["stopInstance"]);
    given(agentMachine, [...h, leased])
      .when(recycle)
      .thenRejected();
  });

  it("revoke ends the lease: idle when leased, stopping when draining", () => {
    const { ev, h } = ready();
    const leased = ev("AgentLeased", grant(L1, T + 10), T + 10);
    const revoke = ev("AgentLeaseRevoked", { leaseId: L1, reason: "pool closed" }, T + 20);
    given(agentMachine, [...h, leased])
      .when(revoke)
      .thenState({ ready: "idle" }, { lease: null });
    const drain = ev("AgentDrainRequested", { reason: "closing", deadline: T + 700 }, T + 15);
    given(agentMachine, [...h, leased, drain])
      .when(revoke)
      .thenState("stopping", { lease: null }, ["stopInstance"]);
  });

  it("the timer is the lease's end while leased, the earlier of lease end and drain deadline while draining", () => {
    const { ev, h } = ready();
    const leased = ev("AgentLeased", grant(L1, T + 10), T + 10);
    assert.deepEqual(agentAggregate.timer?.(fold(agentMachine, [...h, leased])), {
      at: T + 1_010,
      input: { type: "AgentLeaseExpired", data: { leaseId: L1, deadline: T + 1_010 } },
    });
    const drain = ev("AgentDrainRequested", { reason: "closing", deadline: T + 700 }, T + 15);
    assert.deepEqual(agentAggregate.timer?.(fold(agentMachine, [...h, leased, drain])), {
      at: T + 700,
      input: { type: "AgentTimedOut", data: { deadline: T + 700 } },
    });
  });

  it("recycle: stop the instance, then a new generation starts over at requested", () => {
    const { ev, h } = ready();
    const rr = ev("AgentRecycleRequested", { reason: "max-leases", deadline: T + 500 }, T + 20);
    given(agentMachine, h)
      .when(rr)
      .thenState("recycling", { deadline: T + 500 }, ["recycleInstance"]);
    given(agentMachine, [...h, rr])
      .when(ev("AgentRecycled", { generation: 2, deadline: T + 900 }, T + 30))
      .thenState(
        "requested",
        { generation: 2, recycles: 1, ports: [], instanceId: null, deadline: T + 900 },
        ["allocatePorts"],
      );
    given(agentMachine, [...h, rr])
      .when(ev("AgentRecycled", { generation: 3, deadline: T + 900 }, T + 30))
      .thenRejected();
  });

  it("drain: idle stops at once; leased waits for the release", () => {
    const { ev, h } = ready();
    const drain = ev("AgentDrainRequested", { reason: "closing", deadline: T + 700 }, T + 20);
    given(agentMachine, h).when(drain).thenState("stopping", { stopReason: "closing" }, ["stopInstance"]);
    const leased = ev("AgentLeased", grant(L1, T + 10), T + 10);
    given(agentMachine, [...h, leased])
      .when(drain)
      .thenState("draining", {}, []);
    given(agentMachine, [...h, leased, drain])
      .when(ev("AgentReleased", { leaseId: L1 }, T + 30))
      .thenState("stopping", {}, ["stopInstance"]);
    given(agentMachine, [...h, leased, drain])
      .when(ev("AgentTimedOut", { deadline: T + 700 }, T + 700))
      .thenState("stopping", {}, ["stopInstance"]);
  });

  it("a step past its deadline fails the agent and cleans up; a stale timer is rejected", () => {
    const ev = eventsFor(ref);
    const req = ev("AgentRequested", { poolId: "p", runtime: "process", deadline: T + 100 }, T);
    given(agentMachine, [req])
      .when(ev("AgentTimedOut", { deadline: T + 100 }, T + 100))
      .thenState(
        "failed",
        {
          error: {
            phase: "requested",
            code: "timeout",
            message: "requested did not finish before its deadline",
          },
        },
        ["cleanupInstance"],
      );
    given(agentMachine, [req])
      .when(ev("AgentTimedOut", { deadline: T + 99 }, T + 100))
      .thenRejected();
  });

  it("fails from any live state with the reported reason", () => {
    const { ev, h } = ready();
    const failed = ev("AgentFailed", { phase: "ready", code: "exited", message: "code 137" }, T + 40);
    given(agentMachine, h)
      .when(failed)
      .thenState("failed", { error: { phase: "ready", code: "exited", message: "code 137" } });
    given(agentMachine, [...h, failed])
      .when(ev("AgentLeased", grant(L1, T + 41), T + 41))
      .thenRejected();
  });

  it("resume re-runs the effect of the step in progress; timer follows the deadline", () => {
    const { h } = ready();
    assert.deepEqual(agentAggregate.resume?.(fold(agentMachine, h.slice(0, 2))), [
      {
        type: "createInstance",
        params: { poolId: "p", generation: 1, ports: [8000, 8001], instanceId: null },
      },
    ]);
    // A ready agent's effect is its session: re-dialled (the dial is deduplicated).
    assert.deepEqual(agentAggregate.resume?.(fold(agentMachine, h)), [
      { type: "dialAgent", params: { generation: 1 } },
    ]);
    assert.equal(agentAggregate.timer?.(fold(agentMachine, h.slice(0, 1)))?.at, T + 100);
    assert.equal(agentAggregate.timer?.(fold(agentMachine, h)), null);
  });

  it("agentPhase names every state the way the pool sees it", () => {
    assert.equal(agentPhase({ ready: "idle" }), "idle");
    assert.equal(agentPhase({ ready: "leased" }), "leased");
    assert.equal(agentPhase({ ready: "expired" }), "expired");
    for (const s of ["new", "requested", "creating", "starting", "connecting", "initializing"])
      assert.equal(agentPhase(s), "starting");
    for (const s of ["draining", "recycling", "stopping", "stopped", "failed"])
      assert.equal(agentPhase(s), s);
  });
});

/** Inputs built from the current state so that guards can pass. */
function samples(s: SnapshotFrom<typeof agentMachine>): Envelope[] {
  const c = s.context;
  const at = c.deadline ?? T;
  const mk = (type: string, data: unknown): Envelope => ({
    id: `${type}-${at}`,
    type,
    v: 1,
    aggregate: ref,
    at,
    data,
  });
  const recycle = c.generation < 3; // bound the state space: generations are unbounded otherwise
  return [
    mk("AgentRequested", { poolId: "p", runtime: "process", deadline: T + 100 }),
    mk("AgentPortsAllocated", { generation: c.generation, ports: [9000] }),
    mk("AgentCreated", { generation: c.generation, instanceId: `i${c.generation}` }),
    mk("AgentStarted", { generation: c.generation }),
    mk("AgentRegistered", { generation: c.generation, thumbprint: THUMB, peerCN: "cn" }),
    mk("InitStarted", { generation: c.generation, stepCount: 2, deadline: T + 500 }),
    mk("InitStepStarted", { generation: c.generation, name: "git", index: 1, of: 2 }),
    mk("InitCompleted", { generation: c.generation, durationMs: 1 }),
    mk("InitFailed", { generation: c.generation, step: "git", reason: "timeout", detail: "" }),
    mk("AgentUntrusted", { generation: c.generation, reason: "cn_mismatch", detail: "" }),
    mk("AgentLeased", grant(L1, at)),
    mk("AgentLeaseRenewed", { leaseId: L1, expiresAt: at + 5_000 }),
    mk("AgentReleased", { leaseId: L1 }),
    ...(c.lease ? [mk("AgentLeaseExpired", { leaseId: L1, deadline: c.lease.expiresAt })] : []),
    mk("AgentLeaseRevoked", { leaseId: L1, reason: "r" }),
    ...(recycle
      ? [
          mk("AgentRecycleRequested", { reason: "r", deadline: at + 10 }),
          mk("AgentRecycled", { generation: c.generation + 1, deadline: at + 20 }),
        ]
      : []),
    mk("AgentDrainRequested", { reason: "d", deadline: at + 30 }),
    mk("AgentStopped", {}),
    mk("AgentFailed", { phase: "x", code: "y", message: "z" }),
    mk("AgentTimedOut", { deadline: at }),
  ];
}

describe("agent machine (model-based paths)", () => {
  it("reaches every state; ports and instance are cleared whenever a generation ends", () => {
    const paths = getShortestPaths(agentMachine, {
      // biome-ignore lint/suspicious/noExplicitAny: graph options are typed for machine events, ours are envelopes
      events: samples as any,
      limit: 3_000,
      // Lease counts grow without bound; states differ by what the machine decides on.
      serializeState: (s) =>
        JSON.stringify([s.value, s.context.generation, s.context.lease?.expiresAt, s.context.deadline]),
    });
    const values = new Set(paths.map((p) => JSON.stringify(p.state.value)));
    for (const v of [
      "requested",
      "creating",
      "starting",
      "connecting",
      "initializing",
      { ready: "idle" },
      { ready: "leased" },
      { ready: "expired" },
      "draining",
      "recycling",
      "stopping",
      "stopped",
      "failed",
    ]) {
      assert.ok(values.has(JSON.stringify(v)), `unreachable: ${JSON.stringify(v)}`);
    }
    for (const p of paths) {
      const c = p.state.context;
      if (p.state.value === "requested") assert.deepEqual(c.ports, []);
      if (p.state.status === "done") assert.equal(c.deadline, null);
      // A lease is held exactly while leased or draining.
      const holds = JSON.stringify(p.state.value).includes("leased") || p.state.value === "draining";
      assert.equal(c.lease !== null, holds, JSON.stringify(p.state.value));
      assert.equal(c.recycles, Math.max(0, c.generation - 1));
    }
  });
});
