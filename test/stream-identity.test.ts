import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ControlPlane } from "../src/cp/control-plane.ts";
import { simulatedDialer } from "../src/cp/simulated-dialer.ts";
import { DaemonWorldview } from "../src/daemon/worldview.ts";
import type { PoolConfig } from "../src/events/pool.ts";
import { silentLogger } from "../src/log.ts";
import { CheckpointStore } from "../src/projections/checkpoints.ts";
import { loadWorldview } from "../src/projections/index.ts";
import { SnapshotStore as WorldviewSnapshots } from "../src/projections/snapshots.ts";
import { foldWorldview, worldviewProjection } from "../src/projections/worldview.ts";
import { SimulatedRuntime } from "../src/runtime/simulated.ts";
import { EventStore } from "../src/store/event-store.ts";
import type { StoredRecord } from "../src/store/records.ts";
import { SnapshotStore } from "../src/store/snapshots.ts";
import { until } from "./helpers/daemon.ts";
import { poolConfig } from "./helpers/events.ts";
import { markedTestNats } from "./helpers/nats.ts";

const pool: PoolConfig = poolConfig({
  min: 2,
  max: 2,
  warm: 2,
  idleTimeoutMs: 0,
  maintenanceIntervalMs: 5_000,
});

/**
 * State kept in KV beside the stream (actor snapshots, recovery points, the worldview's checkpoint
 * and snapshots) belongs to one stream. The README's advice for a stream from before marks is to
 * start on a fresh one; deleting CORRAL_EVENTS and keeping the buckets used to make the next start
 * crash (an agent's snapshot expected a sequence the new stream never had) and the worldview skip
 * the new stream's first events.
 */
describe("saved state is bound to the stream it was folded from", () => {
  const nats = markedTestNats();

  const start = (runtime: SimulatedRuntime) =>
    ControlPlane.start({
      nc: nats.nc,
      instance: "sid",
      pools: { sid: pool },
      runtimes: { process: runtime },
      dialer: (host) => simulatedDialer(host, Date.now, silentLogger),
      recoveryPointEveryMs: 0,
    });

  /** Two warm agents, one leased; the worldview checkpointed and snapshotted; then a stop. */
  async function run(runtime: SimulatedRuntime): Promise<{ agents: string[]; lastSeq: number }> {
    const { cp } = await start(runtime);
    try {
      const view = await DaemonWorldview.open(nats.nc, cp.store, silentLogger, 60_000, {
        everyEvents: 1,
        minIntervalMs: 0,
        share: 1,
      });
      const status = () => cp.pool("sid").status().agents;
      await until("2 idle", () => status().filter((a) => a.phase === "idle").length === 2, 10_000);
      await cp.pool("sid").acquire({ timeoutMs: 5_000 });
      await cp.host.idle();
      await view.now();
      await view.close();
      return { agents: status().map((a) => a.id), lastSeq: await cp.store.lastSeq() };
    } finally {
      await cp.stop(); // writes the recovery point; the agents stay up, as after `corral up` exits
    }
  }

  async function records(store: EventStore): Promise<StoredRecord[]> {
    const out: StoredRecord[] = [];
    for await (const b of store.read({})) out.push(...b);
    return out;
  }

  it("after the stream is deleted and made again, nothing saved from the old one is used", async () => {
    const runtime = new SimulatedRuntime("sid");
    const first = await run(runtime);
    const old = await EventStore.open(nats.nc);
    const oldIdentity = old.identity;
    assert.ok(
      (await CheckpointStore.open(nats.nc, { stream: oldIdentity }).then((c) => c.get("worldview")))?.seq,
    );
    await old.jsm.streams.delete(old.stream);
    old.close();

    // Started again on a new stream with the same name: a fresh pool, not the old agents.
    const second = await run(runtime);
    const store = await EventStore.open(nats.nc);
    assert.notEqual(store.identity, oldIdentity, "a stream made again is another stream");
    assert.equal(second.agents.length, 2);
    for (const id of second.agents) assert.ok(!first.agents.includes(id), `${id} is a new agent`);

    // The worldview as the CLI loads it is the new stream's, from the new checkpoint.
    const all = await records(store);
    const { state, seq } = await loadWorldview(store);
    assert.equal(seq, second.lastSeq);
    assert.deepEqual(state, foldWorldview(all));
    for (const id of first.agents) assert.ok(!JSON.stringify(state).includes(id), `${id} is not in it`);
    // …and as of a moment of the new stream, never from the old stream's snapshots.
    const mid = Math.floor(second.lastSeq / 2);
    const at = await loadWorldview(store, { at: mid });
    assert.deepEqual(at.state, foldWorldview(all.filter((r) => r.seq <= mid)));

    // What is stored is stamped: the new stream's own, and the old stream's snapshots are gone.
    const cp = await CheckpointStore.open(nats.nc, { stream: store.identity }).then((c) =>
      c.get("worldview"),
    );
    assert.equal(cp?.stream, store.identity);
    const { entries } = await (await WorldviewSnapshots.open(nats.nc)).list(worldviewProjection.name);
    assert.ok(entries.length > 0);
    for (const e of entries) assert.equal(e.stream, store.identity, `snapshot at ${e.seq}`);
    const actors = await SnapshotStore.open(nats.nc, undefined, 1, undefined, oldIdentity);
    assert.equal(await actors.getPoint("agent.sid"), undefined, "the old stream's point was overwritten");
    const current = await SnapshotStore.open(nats.nc, undefined, 1, undefined, store.identity);
    assert.deepEqual((await current.getPoint("agent.sid"))?.ids.sort(), [...second.agents].sort());
    store.close();

    const { cp: last } = await start(runtime);
    await last.stop({ stopAgents: true });
  });
});
