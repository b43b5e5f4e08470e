import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { agentAggregate } from "../machines/agent.ts";
import { ActorHost, type ActorView } from "../src/cp/actor-host.ts";
import { ControlPlane } from "../src/cp/control-plane.ts";
import { simulatedDialer } from "../src/cp/simulated-dialer.ts";
import { asAgentView } from "../src/cp/views.ts";
import type { PoolConfig } from "../src/events/pool.ts";
import { silentLogger } from "../src/log.ts";
import { SimulatedRuntime } from "../src/runtime/simulated.ts";
import { EventStore } from "../src/store/event-store.ts";
import { SnapshotStore } from "../src/store/snapshots.ts";
import { until } from "./helpers/daemon.ts";
import { poolConfig } from "./helpers/events.ts";
import { markedTestNats } from "./helpers/nats.ts";

const sized = (n: number): PoolConfig =>
  poolConfig({ min: n, max: n, warm: n, idleTimeoutMs: 0, maintenanceIntervalMs: 5_000 });

/** What a recovery gives, in a form two recoveries can be compared by. */
const shape = (views: ActorView[]) =>
  views
    .map((v) => ({ id: v.ref.id, seq: v.seq, value: v.value, context: v.context }))
    .sort((a, b) => a.id.localeCompare(b.id));

/**
 * A restart starts from the recovery point the last stop wrote (snapshots as of a stream
 * sequence) and folds only the events after it (ARCHITECTURE.md, "Start-up"). Whatever happened
 * after the point — leases, agents retired and spawned, another instance's agents — it must give
 * what a replay of the whole history gives.
 */
/** Hosts that only recover agents (never resumed: no effect of theirs runs), on the test's store. */
async function recoverers(nc: NatsConnection, t: { after(fn: () => void): void }) {
  const store = await EventStore.open(nc);
  const snapshots = await SnapshotStore.open(nc);
  t.after(() => store.close());
  const none = Object.fromEntries(agentAggregate.effects.map((name) => [name, () => {}]));
  const recoverer = () =>
    new ActorHost({
      store,
      snapshots,
      aggregates: [agentAggregate],
      effects: { agent: none },
      timers: false,
    });
  return { store, snapshots, recoverer };
}

describe("recovery point: snapshots plus the tail give what a full replay gives", () => {
  const nats = markedTestNats();

  const start = (
    instance: string,
    pool: string,
    config: PoolConfig,
    runtime: SimulatedRuntime,
    // By default points at stop, or when the test writes one.
    points: { recoveryPointEveryMs: number; recoveryPointEveryEvents?: number } = { recoveryPointEveryMs: 0 },
  ) =>
    ControlPlane.start({
      nc: nats.nc,
      instance,
      pools: { [pool]: config },
      runtimes: { process: runtime },
      dialer: (host) => simulatedDialer(host, Date.now, silentLogger),
      ...points,
    });
  const agentsOf = (cp: ControlPlane, pool: string) => cp.pool(pool).status().agents;

  it("after leases, retired and new agents, and another instance's events past the point", async (t) => {
    const ours = new SimulatedRuntime("rp-ours");
    const theirs = new SimulatedRuntime("rp-theirs");
    const other = (await start("rp-theirs", "rp-other", sized(2), theirs)).cp;
    let cp = (await start("rp-ours", "rp-pool", sized(6), ours)).cp;
    t.after(async () => {
      await Promise.all([cp.stop({ stopAgents: true }), other.stop({ stopAgents: true })]);
    });
    await until(
      "6 + 2 idle",
      () => agentsOf(cp, "rp-pool").length === 6 && agentsOf(other, "rp-other").length === 2,
    );
    await until("all idle", () => agentsOf(cp, "rp-pool").every((a) => a.phase === "idle"), 10_000);
    const held = await cp.pool("rp-pool").acquire({ timeoutMs: 5_000 });
    await cp.host.idle();
    await cp.stop(); // writes the point

    // Past the point: a smaller pool (idle agents retired, stopped), a release, a new lease, and
    // the other instance's agents (whose first events are before the point) leased.
    cp = (await start("rp-ours", "rp-pool", sized(4), ours)).cp;
    await until("4 agents", () => agentsOf(cp, "rp-pool").length === 4, 10_000);
    await cp.pool("rp-pool").release(held.leaseId, held.leaseToken);
    await cp.pool("rp-pool").acquire({ timeoutMs: 5_000 });
    await other.pool("rp-other").acquire({ timeoutMs: 5_000 });
    await Promise.all([cp.host.idle(), other.host.idle()]);

    const { snapshots, recoverer } = await recoverers(nats.nc, t);
    const ourPool = (v: ActorView) => asAgentView(v).context.poolId === "rp-pool";
    const fromPoint = recoverer();
    const viaPoint = await fromPoint.recover("agent", ourPool, { point: "rp-ours" });
    const viaReplay = await recoverer().recover("agent", ourPool);
    assert.equal(viaReplay.length, 4);
    assert.deepEqual(shape(viaPoint), shape(viaReplay));
    assert.equal(
      fromPoint.forged,
      0,
      "another instance's agents met in the tail are loaded, not taken for replays",
    );
    const point = await snapshots.getPoint("agent.rp-ours");
    assert.equal(point?.ids.length, 6, "the point lists the six agents live at the stop");
  });

  it("a pool no longer configured is found through the point (not the whole stream) and closed", async (t) => {
    const runtime = new SimulatedRuntime("rp-two");
    const both = { "rp-kept": sized(1), "rp-dropped": sized(1) };
    const first = await ControlPlane.start({
      nc: nats.nc,
      instance: "rp-two",
      pools: both,
      runtimes: { process: runtime },
      dialer: (host) => simulatedDialer(host, Date.now, silentLogger),
    });
    await until("both pools warm", () => agentsOf(first.cp, "rp-dropped").length === 1);
    await first.cp.host.idle();
    await first.cp.stop();
    const { cp, report } = await start("rp-two", "rp-kept", sized(1), runtime);
    t.after(() => cp.stop({ stopAgents: true }));
    assert.deepEqual(report.pools.sort(), ["rp-dropped", "rp-kept"]);
    await until("the dropped pool closed", () => cp.pool("rp-dropped").state === "closed", 10_000);
  });

  it("under load a point follows every `recoveryPointEveryEvents` events, not only the interval", async (t) => {
    const runtime = new SimulatedRuntime("rp-count");
    const { cp } = await start("rp-count", "rp-count", sized(2), runtime, {
      recoveryPointEveryMs: 3_600_000, // the interval never comes in this test
      recoveryPointEveryEvents: 40,
    });
    t.after(() => cp.stop({ stopAgents: true }));
    await until("2 idle", () => agentsOf(cp, "rp-count").filter((a) => a.phase === "idle").length === 2);
    const { snapshots } = await recoverers(nats.nc, t);
    const atBoot = await snapshots.getPoint("agent.rp-count");
    assert.ok(atBoot, "one at boot");
    const sup = cp.pool("rp-count");
    for (let i = 0; i < 30; i++) {
      const lease = await sup.acquire({ timeoutMs: 5_000 });
      await sup.release(lease.leaseId, lease.leaseToken); // each cycle stores a few agent events
    }
    await cp.host.idle();
    await until(
      "a later point",
      async () => ((await snapshots.getPoint("agent.rp-count"))?.seq ?? 0) > atBoot.seq,
    );
    const point = await snapshots.getPoint("agent.rp-count");
    const last = await cp.store.lastSeq();
    assert.ok(
      last - (point?.seq ?? 0) < 200,
      `the tail a crash would fold stays short: ${last} - ${point?.seq}`,
    );
  });

  it("a point written while acquires and releases flow, then a crash (no stop)", async (t) => {
    const runtime = new SimulatedRuntime("rp-live");
    const cp = (await start("rp-live", "rp-live", sized(4), runtime)).cp;
    t.after(() => cp.stop({ stopAgents: true }));
    await until("4 idle", () => agentsOf(cp, "rp-live").filter((a) => a.phase === "idle").length === 4);
    let flowing = true;
    const sup = cp.pool("rp-live");
    const clients = Array.from({ length: 3 }, async () => {
      while (flowing) {
        const lease = await sup.acquire({ timeoutMs: 5_000 });
        await sup.release(lease.leaseId, lease.leaseToken);
      }
    });
    await new Promise((r) => setTimeout(r, 300));
    await cp.host.writeRecoveryPoint("agent", "rp-live");
    await new Promise((r) => setTimeout(r, 300));
    flowing = false;
    await Promise.all(clients);
    await cp.host.idle();

    const { store, snapshots, recoverer } = await recoverers(nats.nc, t);
    const ours = (v: ActorView) => asAgentView(v).context.poolId === "rp-live";
    const point = await snapshots.getPoint("agent.rp-live");
    assert.ok(point && point.seq < (await store.lastSeq()), "events were stored after the point");
    const viaPoint = await recoverer().recover("agent", ours, { point: "rp-live" });
    const viaReplay = await recoverer().recover("agent", ours);
    assert.equal(viaReplay.length, 4);
    assert.deepEqual(shape(viaPoint), shape(viaReplay));
  });
});
