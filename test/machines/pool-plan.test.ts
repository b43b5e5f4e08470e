import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { type AgentSummary, planPool } from "../../machines/pool-plan.ts";
import { poolConfig } from "../helpers/events.ts";

const agent = (id: string, phase: AgentSummary["phase"], over: Partial<AgentSummary> = {}): AgentSummary => ({
  id,
  phase,
  generationLeases: 0,
  recycles: 0,
  readyAt: 0,
  idleSince: phase === "idle" ? 0 : null,
  ...over,
});

const NOW = 10_000;
const plan = (agents: AgentSummary[], over: Partial<Parameters<typeof planPool>[0]> = {}) =>
  planPool({ config: poolConfig(), state: "open", agents, waiters: 0, now: NOW, ...over });

describe("pool plan", () => {
  it("an empty pool spawns up to the warm target", () => {
    assert.deepEqual(plan([]), [
      { type: "spawn", reason: "min" },
      { type: "spawn", reason: "min" },
    ]);
  });

  it("agents on the way count as available: nothing spawns twice", () => {
    assert.deepEqual(plan([agent("a", "starting"), agent("b", "starting")]), []);
  });

  it("waiting acquirers spawn on demand, never beyond max", () => {
    const leased = [1, 2, 3].map((i) => agent(`l${i}`, "leased"));
    const d = plan(leased, { waiters: 10 });
    assert.equal(d.length, 2);
    assert.ok(d.every((x) => x.type === "spawn" && x.reason === "demand"));
  });

  it("idle past the timeout retires down to warm and min, oldest first", () => {
    const idle = ["a", "b", "c", "d"].map((id, i) => agent(id, "idle", { idleSince: i * 100 }));
    assert.deepEqual(plan(idle), [
      { type: "retire", agentId: "a", reason: "idle-timeout" },
      { type: "retire", agentId: "b", reason: "idle-timeout" },
    ]);
    assert.deepEqual(plan(idle, { waiters: 1 }), [], "never while someone waits");
  });

  it("limits recycle idle agents, or retire them after maxRecycles (a replacement follows)", () => {
    const c = poolConfig({ recycle: { maxLeases: 3, maxRecycles: 2, maxAgeMs: 5_000 } });
    const d = planPool({
      config: c,
      state: "open",
      waiters: 0,
      now: NOW,
      agents: [
        agent("old", "idle", { readyAt: NOW - 6_000, idleSince: NOW }),
        agent("busy", "idle", { generationLeases: 3, recycles: 2, idleSince: NOW }),
      ],
    });
    assert.deepEqual(d, [
      { type: "recycle", agentId: "old", reason: "max-age" },
      { type: "retire", agentId: "busy", reason: "max-recycles" },
      { type: "spawn", reason: "replace" },
    ]);
  });

  it("closing retires everything still live; closed does nothing", () => {
    const agents = [agent("a", "idle"), agent("b", "leased"), agent("c", "starting"), agent("d", "stopping")];
    assert.deepEqual(
      plan(agents, { state: "closing" }).map((d) => (d as { agentId: string }).agentId),
      ["a", "b", "c"],
    );
    assert.deepEqual(plan(agents, { state: "closed" }), []);
  });

  it("spawning pauses during a backoff", () => {
    assert.deepEqual(plan([], { spawnPausedUntil: NOW + 1 }), []);
  });

  it("property: never plans past max, never below min by retiring, never twice for one agent", () => {
    const phases = ["starting", "idle", "leased", "draining", "recycling", "stopping"] as const;
    fc.assert(
      fc.property(
        fc.record({ min: fc.nat(4), extra: fc.nat(6), warm: fc.nat(6), waiters: fc.nat(12) }),
        fc.array(
          fc.record({ phase: fc.constantFrom(...phases), idleSince: fc.nat(NOW), leases: fc.nat(5) }),
          { maxLength: 12 },
        ),
        (k, raw) => {
          const max = Math.max(1, k.min + k.extra);
          const c = poolConfig({
            min: Math.min(k.min, max),
            max,
            warm: Math.min(k.warm, max),
            recycle: { maxLeases: 4 },
          });
          const agents = raw.map((r, i) =>
            agent(`a${i}`, r.phase, {
              idleSince: r.phase === "idle" ? r.idleSince : null,
              generationLeases: r.leases,
            }),
          );
          const d = planPool({ config: c, state: "open", agents, waiters: k.waiters, now: NOW });
          const live = agents.filter((a) => !["draining", "stopping"].includes(a.phase)).length;
          const spawns = d.filter((x) => x.type === "spawn").length;
          const retires = d.filter((x) => x.type === "retire").length;
          assert.ok(live - retires + spawns <= Math.max(max, live - retires), "spawned past max");
          if (spawns > 0) assert.ok(live - retires + spawns <= max);
          const ids = d.filter((x) => x.type !== "spawn").map((x) => (x as { agentId: string }).agentId);
          assert.equal(new Set(ids).size, ids.length, "two decisions for one agent");
          const idleRetired = d.filter((x) => x.type === "retire" && x.reason === "idle-timeout").length;
          if (idleRetired > 0) assert.ok(live - retires >= c.min);
        },
      ),
      { numRuns: 500 },
    );
  });
});
