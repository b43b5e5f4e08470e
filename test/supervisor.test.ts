import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { ControlPlane } from "../src/cp/control-plane.ts";
import { ManualScheduler } from "../src/cp/manual-scheduler.ts";
import { simulatedDialer } from "../src/cp/simulated-dialer.ts";
import type { PoolConfig } from "../src/events/pool.ts";
import { silentLogger } from "../src/log.ts";
import { PortAllocator } from "../src/ports/allocator.ts";
import { SimulatedRuntime } from "../src/runtime/simulated.ts";
import { ConcurrencyError } from "../src/store/errors.ts";
import { EventStore } from "../src/store/event-store.ts";
import { until } from "./helpers/daemon.ts";
import { poolConfig } from "./helpers/events.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";

/**
 * The supervisor's races, driven deterministically: a real nats-server, a ManualScheduler for
 * every deadline (time moves only when the test says), and a runtime that starts nothing and can
 * hold an operation in flight. Waits are on conditions of the stored state, never on sleeps.
 */
describe("pool supervisor races (manual clock, simulated runtime, real NATS)", () => {
  let t: TestNats;
  let nc: NatsConnection;
  let store: EventStore;
  let n = 0;

  before(async () => {
    t = await startTestNats();
    nc = await t.connect();
    store = await EventStore.open(nc);
  });
  after(async () => {
    store.close();
    await t.cleanup();
  });

  const config = (over: Partial<PoolConfig> = {}): PoolConfig =>
    poolConfig({ min: 1, max: 1, warm: 1, idleTimeoutMs: 0, leaseTtlMs: 1_000, ...over });

  async function start(
    opts: {
      pool?: string;
      over?: Partial<PoolConfig>;
      sim?: SimulatedRuntime;
      scheduler?: ManualScheduler;
      maxConflictRetries?: number;
    } = {},
  ) {
    const pool = opts.pool ?? `sup${process.pid}x${++n}`;
    const instance = `i-${pool}`;
    const sim = opts.sim ?? new SimulatedRuntime(instance);
    const scheduler = opts.scheduler ?? new ManualScheduler();
    const { cp } = await ControlPlane.start({
      nc,
      instance,
      pools: { [pool]: config(opts.over) },
      runtimes: { process: sim },
      ports: new PortAllocator(),
      scheduler,
      maxConflictRetries: opts.maxConflictRetries,
      dialer: (host) => simulatedDialer(host, scheduler.now, silentLogger),
    });
    const idle = (k: number) =>
      until(
        `${k} idle`,
        () =>
          cp
            .pool(pool)
            .status()
            .agents.filter((a) => a.phase === "idle").length >= k,
        10_000,
      );
    return { cp, pool, sim, scheduler, idle };
  }

  async function agentEvents(agentId: string) {
    return (await store.readAggregate({ kind: "agent", id: agentId })).map((r) => r.event);
  }

  it("a lease's expiry racing its release and the agent's next lease acts only on the lease it names", async () => {
    const { cp, pool, scheduler, idle } = await start();
    await idle(1);
    const sup = cp.pool(pool);
    const l1 = await sup.acquire({ timeoutMs: 1_000 });
    await sup.release(l1.leaseId, l1.leaseToken);
    await idle(1);
    const l2 = await sup.acquire({ timeoutMs: 1_000, ttlMs: 5_000 });
    assert.equal(l2.agentId, l1.agentId, "the same agent serves the next lease");
    // L1's expiry timer fired late, after the release and the new grant were stored.
    const late = await cp.host.offer(
      { kind: "agent", id: l1.agentId },
      { type: "AgentLeaseExpired", data: { leaseId: l1.leaseId, deadline: l1.expiresAt } },
    );
    assert.equal(late.accepted, false, "an expiry for a lease the agent no longer holds is refused");
    scheduler.advance(1_500); // past L1's end, before L2's
    assert.equal(sup.status().agents[0]?.lease?.id, l2.leaseId, "L2 still holds the agent");
    scheduler.advance(4_000); // past L2's end: it expires and the agent is renewed
    await until("the expired agent recycled", () => (sup.status().agents[0]?.generation ?? 0) >= 2, 10_000);
    const types = (await agentEvents(l1.agentId)).map((e) => e?.type);
    assert.equal(types.filter((x) => x === "AgentLeaseExpired").length, 1, types.join(", "));
    await cp.stop({ stopAgents: true });
  });

  it("two acquires race for the last idle agent: one lease, one event; the other waits and times out", async () => {
    const { cp, pool, scheduler, idle } = await start();
    await idle(1);
    const sup = cp.pool(pool);
    const settled: string[] = [];
    const races = [0, 1].map((i) =>
      sup.acquire({ timeoutMs: 2_000 }).then(
        (g) => {
          settled.push(`granted ${i}`);
          return g;
        },
        (e: Error & { code?: string }) => {
          settled.push(`${e.code} ${i}`);
          return undefined;
        },
      ),
    );
    await until("one acquire granted", () => settled.length === 1, 10_000);
    assert.match(settled[0] as string, /^granted/);
    assert.equal(sup.status().waiters, 1, "the other acquire waits (max 1: no spawn for it)");
    scheduler.advance(2_000);
    const [x, y] = await Promise.all(races);
    assert.match(settled[1] as string, /^timeout/);
    const first = (x ?? y) as { agentId: string };
    const grants = (await agentEvents(first.agentId)).filter((e) => e?.type === "AgentLeased");
    assert.equal(grants.length, 1);
    await cp.stop({ stopAgents: true });
  });

  it("SIGTERM while a spawn is in flight: the next control plane finishes it, one agent, one instance", async () => {
    const pool = `sup${process.pid}x${++n}`;
    const sim = new SimulatedRuntime(`i-${pool}`);
    const releaseCreate = sim.park("create");
    const first = await start({ pool, sim });
    await until("the spawn in flight", () => sim.calls.create === 1, 10_000);
    await first.cp.stop(); // what SIGTERM does: agents (and the spawn under way) are left
    releaseCreate();
    const second = await start({ pool, sim });
    await second.idle(1);
    assert.equal(second.cp.pool(pool).status().agents.length, 1);
    assert.equal((await sim.list()).length, 1, "one instance: created once or adopted, never twice");
    const spawned = (await store.readAggregate({ kind: "pool", id: pool })).filter(
      (r) => r.event?.type === "PoolAgentSpawned",
    );
    assert.equal(spawned.length, 1, "the restart did not decide the same spawn again");
    await second.cp.stop({ stopAgents: true });
    assert.deepEqual(await sim.list(), []);
  });

  it("optimistic-concurrency retries that run out surface as an error; nothing is stored for the acquire", async () => {
    const { cp, pool, idle } = await start({ maxConflictRetries: 0 });
    await idle(1);
    const agentId = cp.pool(pool).status().agents[0]?.id as string;
    // Another writer appends to the agent behind this host's back: its cached state is stale.
    const other = await EventStore.open(nc);
    const last = await other.lastSeqOf({ kind: "agent", id: agentId });
    const { createEvent } = await import("../src/events/catalogue.ts");
    const ref = { kind: "agent" as const, id: agentId };
    await other.append(
      ref,
      [createEvent(ref, "AgentTimedOut", { deadline: 1 }, { id: `x-${agentId}`, at: 1 })],
      last,
    );
    other.close();
    await assert.rejects(cp.pool(pool).acquire({ timeoutMs: 1_000 }), ConcurrencyError);
    assert.equal((await agentEvents(agentId)).filter((e) => e?.type === "AgentLeased").length, 0);
    await cp.stop({ stopAgents: true });
  });

  it("an agent's template comes from the daemon's own config, never from a PoolReconfigured on the stream", async () => {
    const { cp, pool, sim, scheduler, idle } = await start();
    await idle(1);
    const own = config().template;
    const forged = {
      ...config(),
      template: { ...own, command: ["evil"], mounts: [{ source: "/", target: "/host" }] },
    };
    await cp.host.send(
      { kind: "pool", id: pool },
      { type: "PoolReconfigured", data: { config: forged, instance: `i-${pool}` } },
    );
    // Its lease expires: the agent is recycled, and the next generation is created afresh.
    await cp.pool(pool).acquire({ timeoutMs: 1_000, ttlMs: 500 });
    scheduler.advance(600);
    await until("a second generation created", () => sim.created.length >= 2, 10_000);
    for (const spec of sim.created) assert.deepEqual(spec.template, own);
    await cp.stop({ stopAgents: true });
  });
});
