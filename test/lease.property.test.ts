import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { type AnyMachineSnapshot, initialTransition } from "xstate";
import { agentMachine } from "../machines/agent.ts";
import { step } from "../machines/step.ts";
import type { DataInputOf, EventType } from "../src/events/catalogue.ts";
import type { Envelope } from "../src/events/envelope.ts";
import { leaseSlice } from "../src/projections/leases.ts";
import { eventsFor } from "./helpers/decider.ts";

/**
 * "An agent is in at most one lease" holds by construction: the lease is a phase of its agent.
 * Random acquire / release / renew / expire / revoke / fail sequences over three agents (lease
 * ids aimed at the right agent or not, at the held lease or a stale one) are folded through the
 * agent machine, keeping what it accepts — what the stream would hold — and through the lease
 * projection. Neither may ever show two active leases on one agent, and they must agree.
 */

const AGENTS = ["a1", "a2", "a3"] as const;
const T = 1_000_000;
const uuid = (n: number) => `0190a1b2-c3d4-7e5f-8a9b-${n.toString(16).padStart(12, "0")}`;

type Op =
  | { kind: "acquire"; agent: number; target: number; n: number }
  | { kind: "release" | "revoke" | "renew" | "expire"; agent: number; n: number; stale: boolean }
  | { kind: "fail"; agent: number };

const arbOp: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant("acquire" as const),
    agent: fc.nat(2),
    target: fc.nat(2), // the agent the lease id names: usually the same, sometimes another
    n: fc.nat(1_000),
  }),
  fc.record({
    kind: fc.constantFrom("release" as const, "revoke" as const, "renew" as const, "expire" as const),
    agent: fc.nat(2),
    n: fc.nat(1_000),
    stale: fc.boolean(), // aim at a lease id that is not the held one
  }),
  fc.record({ kind: fc.constant("fail" as const), agent: fc.nat(2) }),
);

describe("leases (property)", () => {
  it("folding an agent's events never yields two active leases, and the projection agrees", () => {
    fc.assert(
      fc.property(fc.array(arbOp, { maxLength: 60 }), (ops) => {
        const ev = new Map(AGENTS.map((a) => [a, eventsFor({ kind: "agent", id: a })]));
        const snaps = new Map<string, AnyMachineSnapshot>();
        const projection = leaseSlice.init();
        let seq = 0;
        let at = T;
        const offer = <K extends EventType>(agent: string, type: K, data: DataInputOf<K>) => {
          const e: Envelope = (ev.get(agent as (typeof AGENTS)[number]) as ReturnType<typeof eventsFor>)(
            type,
            data,
            at,
          );
          const before = snaps.get(agent) as AnyMachineSnapshot;
          const [after] = step(agentMachine, before, e);
          if (after === before) return; // refused: not stored
          snaps.set(agent, after);
          leaseSlice.reduce(projection, e as never, { seq: ++seq, time: at });
        };
        for (const a of AGENTS) {
          snaps.set(a, initialTransition(agentMachine)[0]);
          offer(a, "AgentRequested", { poolId: "p", runtime: "process", deadline: T + 100 });
          offer(a, "AgentPortsAllocated", { generation: 1, ports: [9000] });
          offer(a, "AgentCreated", { generation: 1, instanceId: `i-${a}` });
          offer(a, "AgentStarted", { generation: 1 });
        }
        for (const op of ops) {
          at += 10;
          const agent = AGENTS[op.agent] as string;
          const held = snaps.get(agent)?.context.lease as { id: string; expiresAt: number } | null;
          switch (op.kind) {
            case "acquire": {
              const leaseId = `${AGENTS[op.target]}.${uuid(op.n)}`;
              offer(agent, "AgentLeased", {
                leaseId,
                poolId: "p",
                holder: "h",
                ttlMs: 500,
                expiresAt: at + 500,
              });
              break;
            }
            case "fail":
              offer(agent, "AgentFailed", { phase: "ready", code: "x", message: "" });
              break;
            default: {
              const leaseId = held && !op.stale ? held.id : `${agent}.${uuid(op.n)}`;
              if (op.kind === "release") offer(agent, "AgentReleased", { leaseId });
              if (op.kind === "revoke") offer(agent, "AgentLeaseRevoked", { leaseId, reason: "r" });
              if (op.kind === "renew") offer(agent, "AgentLeaseRenewed", { leaseId, expiresAt: at + 1_000 });
              if (op.kind === "expire")
                offer(agent, "AgentLeaseExpired", { leaseId, deadline: held?.expiresAt ?? at });
            }
          }
          // After every step: at most one live lease per agent, and it is the one the agent holds.
          const view = leaseSlice.save(projection, undefined);
          const perAgent = new Map<string, number>();
          for (const l of view.live) perAgent.set(l.agentId, (perAgent.get(l.agentId) ?? 0) + 1);
          for (const a of AGENTS) {
            assert.ok((perAgent.get(a) ?? 0) <= 1, `${a} is in ${perAgent.get(a)} leases`);
            const lease = snaps.get(a)?.context.lease as { id: string; expiresAt: number } | null;
            const live = view.live.find((l) => l.agentId === a);
            assert.equal(live?.id, lease?.id, `${a}: projection and machine disagree`);
            assert.equal(live?.expiresAt, lease?.expiresAt);
            if (lease)
              assert.ok(lease.id.startsWith(`${a}.`), `${a} holds ${lease.id}, named for another agent`);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
