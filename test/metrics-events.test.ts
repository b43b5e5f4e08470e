import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ActorView } from "../src/cp/actor-host.ts";
import { createEvent, type EventType } from "../src/events/catalogue.ts";
import { CorralMetrics } from "../src/metrics/definitions.ts";
import { eventMetrics } from "../src/metrics/events.ts";

/*
 * What each stored event does to the counters and histograms (src/metrics/events.ts), fed as the
 * actor host's onChange feeds them: the event and its actor's state after it.
 */

const agent = { kind: "agent" as const, id: "p-1" };
let n = 0;

/** The event `type` on agent p-1 of pool p at `at`, the agent in `value` after it. */
function agentEvent(type: EventType, data: unknown, at: number, value: unknown, status = "active") {
  const event = createEvent(agent, type, data, { id: `e${++n}`, at });
  const view: ActorView = { ref: agent, seq: n, value, context: { poolId: "p" }, status };
  return [view, event] as const;
}

async function values(metric: {
  get(): Promise<{
    values: { labels: Partial<Record<string, string | number>>; value: number; metricName?: string }[];
  }>;
}): Promise<Record<string, string | number | undefined>[]> {
  return (await metric.get()).values.map((v) => ({ ...v.labels, name: v.metricName, value: v.value }));
}

describe("metrics from stored events", () => {
  it("spawn → ready: from the request (or the recycle) to the first idle phase, once per generation", async () => {
    const m = new CorralMetrics();
    const feed = eventMetrics(m);
    feed(
      ...agentEvent(
        "AgentRequested",
        { poolId: "p", runtime: "process", deadline: 9e12 },
        1_000,
        "requested",
      ),
    );
    feed(...agentEvent("AgentStarted", { generation: 1 }, 3_500, { ready: "idle" }));
    feed(
      ...agentEvent(
        "AgentLeased",
        { leaseId: "p-1.01a23437-a92a-7000-9e08-9a3f6eaefaff", poolId: "p", ttlMs: 1_000, expiresAt: 9_000 },
        4_000,
        { ready: "leased" },
      ),
    );
    feed(
      ...agentEvent("AgentReleased", { leaseId: "p-1.01a23437-a92a-7000-9e08-9a3f6eaefaff" }, 4_100, {
        ready: "idle",
      }),
    );
    feed(...agentEvent("AgentRecycled", { generation: 2, deadline: 9e12 }, 10_000, "requested"));
    feed(...agentEvent("AgentStarted", { generation: 2 }, 10_500, { ready: "idle" }));
    const ready = await values(m.spawnReady);
    assert.deepEqual(
      ready.filter((v) => v.name !== "corral_agent_spawn_ready_seconds_bucket"),
      [
        { pool: "p", name: "corral_agent_spawn_ready_seconds_sum", value: 3 },
        { pool: "p", name: "corral_agent_spawn_ready_seconds_count", value: 2 },
      ],
    );
    const leases = await values(m.leaseEvents);
    assert.deepEqual(leases, [
      { pool: "p", event: "granted", name: undefined, value: 1 },
      { pool: "p", event: "released", name: undefined, value: 1 },
    ]);
    assert.equal(
      (await values(m.events)).reduce((s, v) => s + Number(v.value), 0),
      6,
    );
  });

  it("an agent that fails before ready is not timed", async () => {
    const m = new CorralMetrics();
    const feed = eventMetrics(m);
    feed(
      ...agentEvent(
        "AgentRequested",
        { poolId: "p", runtime: "process", deadline: 9e12 },
        1_000,
        "requested",
      ),
    );
    feed(
      ...agentEvent(
        "AgentFailed",
        { phase: "starting", code: "start_failed", message: "" },
        2_000,
        "failed",
        "done",
      ),
    );
    feed(...agentEvent("AgentStarted", { generation: 1 }, 3_000, { ready: "idle" })); // not after a failure
    const count = (await values(m.spawnReady)).find(
      (v) => v.name === "corral_agent_spawn_ready_seconds_count",
    );
    assert.equal(count, undefined);
    assert.deepEqual(await values(m.failures), [
      { pool: "p", code: "start_failed", name: undefined, value: 1 },
    ]);
  });

  it("init steps by step and outcome, from their durationMs", async () => {
    const m = new CorralMetrics();
    const feed = eventMetrics(m);
    feed(
      ...agentEvent(
        "InitStepCompleted",
        { generation: 1, name: "git", index: 1, exitCode: 0, durationMs: 1_200 },
        1,
        "starting",
      ),
    );
    feed(
      ...agentEvent(
        "InitStepFailed",
        {
          generation: 1,
          name: "post-init",
          index: 2,
          reason: "timeout",
          detail: "",
          exitCode: null,
          durationMs: 30_000,
        },
        2,
        "starting",
      ),
    );
    const sums = (await values(m.initStep)).filter((v) => v.name === "corral_init_step_seconds_sum");
    assert.deepEqual(sums, [
      { pool: "p", step: "git", outcome: "ok", name: "corral_init_step_seconds_sum", value: 1.2 },
      { pool: "p", step: "post-init", outcome: "timeout", name: "corral_init_step_seconds_sum", value: 30 },
    ]);
  });

  it("failure codes: the first 32 keep their name, the rest count as other", async () => {
    const m = new CorralMetrics();
    const feed = eventMetrics(m);
    for (let i = 0; i < 40; i++)
      feed(
        ...agentEvent("AgentFailed", { phase: "ready", code: `code_${i}`, message: "" }, i, "failed", "done"),
      );
    feed(...agentEvent("AgentFailed", { phase: "ready", code: "code_3", message: "" }, 50, "failed", "done"));
    const by = new Map((await values(m.failures)).map((v) => [v.code, v.value]));
    assert.equal(by.size, 33);
    assert.equal(by.get("other"), 8);
    assert.equal(by.get("code_3"), 2);
    assert.equal(by.get("code_35"), undefined);
  });

  it("recycles and spawn failures by the pool's reason and code", async () => {
    const m = new CorralMetrics();
    const feed = eventMetrics(m);
    const pool = { kind: "pool" as const, id: "p" };
    const view: ActorView = { ref: pool, seq: 1, value: "open", context: {}, status: "active" };
    feed(
      view,
      createEvent(pool, "PoolAgentRecycled", { agentId: "p-1", reason: "max-leases" }, { id: "r1", at: 1 }),
    );
    feed(
      view,
      createEvent(
        pool,
        "PoolSpawnFailed",
        { agentId: "p-2", code: "image_unavailable", message: "", streak: 1, retryAt: 2 },
        { id: "r2", at: 1 },
      ),
    );
    assert.deepEqual(await values(m.recycles), [
      { pool: "p", reason: "max-leases", name: undefined, value: 1 },
    ]);
    assert.deepEqual(await values(m.spawnFailures), [
      { pool: "p", code: "image_unavailable", name: undefined, value: 1 },
    ]);
  });
});
