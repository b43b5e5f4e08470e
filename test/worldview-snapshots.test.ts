import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { diff } from "../src/cli/diff.ts";
import { diffWorldviews } from "../src/cli/history/world-diff.ts";
import { encode } from "../src/codec/msgpack.ts";
import { DaemonWorldview } from "../src/daemon/worldview.ts";
import type { DataInputOf, EventType } from "../src/events/catalogue.ts";
import type { AggregateRef } from "../src/events/envelope.ts";
import { silentLogger } from "../src/log.ts";
import { CHECKPOINT_BUCKET, CheckpointStore } from "../src/projections/checkpoints.ts";
import { loadWorldview, savedWorldviewRunner } from "../src/projections/index.ts";
import { ProjectionRunner } from "../src/projections/runner.ts";
import { SnapshotStore } from "../src/projections/snapshots.ts";
import { foldWorldview, WORLDVIEW_VERSION, worldviewProjection } from "../src/projections/worldview.ts";
import { EventStore } from "../src/store/event-store.ts";
import { bindIntegrity } from "../src/store/integrity.ts";
import { KEY_FILE_ENV, loadOrCreateEventKey } from "../src/store/key-file.ts";
import type { StoredRecord } from "../src/store/records.ts";
import { corral } from "./helpers/cli.ts";
import { makeEvent, poolConfig } from "./helpers/events.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";
import { tempDir } from "./helpers/teardown.ts";

/**
 * Worldview snapshots at intervals (src/projections/snapshots.ts), taken by the daemon's own
 * worldview as events arrive, and time travel from them: `--at` and `diff` give what a fold from
 * zero gives, a snapshot or index without a valid mark is passed over, only the newest `keep`
 * are kept, and one of another worldview version is never loaded.
 */

const T0 = Date.UTC(2026, 11, 1, 9, 0, 0);
type Step = { [T in EventType]: [AggregateRef, T, DataInputOf<T>] }[EventType];

/** Agent `n`'s whole life in pool `p` (leased once, then retired), and a command while leased. */
function agentLife(n: number): Step[] {
  const id = `p-${n}`;
  const a: AggregateRef = { kind: "agent", id };
  const pool: AggregateRef = { kind: "pool", id: "p" };
  const c: AggregateRef = { kind: "command", id: `c-${n}` };
  const leaseId = `${id}.0190f000-0000-7000-8000-${String(n).padStart(12, "0")}`;
  const g = { generation: 1 };
  return [
    [pool, "PoolAgentSpawned", { agentId: id, reason: "warm" }],
    [a, "AgentRequested", { poolId: "p", runtime: "process", deadline: T0 + 1e6 }],
    [a, "AgentPortsAllocated", { ...g, ports: [6000 + (n % 500)] }],
    [a, "AgentCreated", { ...g, instanceId: `i-${n}` }],
    [a, "AgentStarted", g],
    [a, "AgentRegistered", { ...g, thumbprint: "ab".repeat(32), peerCN: id }],
    [a, "InitCompleted", { ...g, durationMs: 5 }],
    [a, "AgentLeased", { leaseId, poolId: "p", holder: "h", ttlMs: 60_000, expiresAt: T0 + 1e6 }],
    [c, "CommandCreated", { agentId: id, action: "npm test" }],
    [c, "CommandSent", { attempt: 1 }],
    [c, "CommandCompleted", { result: { exitCode: 0, durationMs: 3 } }],
    [a, "AgentReleased", { leaseId }],
    [pool, "PoolAgentRetired", { agentId: id, reason: "scale-down" }],
    [a, "AgentDrainRequested", { reason: "scale-down", deadline: T0 + 1e6 }],
    n % 5 === 0
      ? [a, "AgentFailed", { phase: "stopping", code: "gone", message: "x" }]
      : [a, "AgentStopped", {}],
  ];
}

describe("worldview snapshots at intervals against a real nats-server", () => {
  let t: TestNats;
  let nc: NatsConnection;
  let store: EventStore;
  const { key, file: keyFile } = loadOrCreateEventKey(tempDir("snapshots-key-"));
  const last = new Map<string, number>();
  let agents = 0;

  /** `lives` more agents' lives, 6 at a time interleaved, as a running pool stores them. */
  async function live(lives: number): Promise<void> {
    for (let done = 0; done < lives; done += 6) {
      const group = Array.from({ length: Math.min(6, lives - done) }, () => agentLife(agents++));
      for (let step = 0; step < 15; step++) {
        for (const life of group) {
          const [ref, type, data] = life[step] as Step;
          const k = `${ref.kind}/${ref.id}`;
          const e = makeEvent(ref, type, data as DataInputOf<typeof type>, T0 + step);
          last.set(k, (await store.append(ref, [e], last.get(k) ?? 0)).lastSeq);
        }
      }
    }
  }

  async function records(toSeq: number): Promise<StoredRecord[]> {
    const out: StoredRecord[] = [];
    for await (const b of store.read({ toSeq })) out.push(...b);
    return out;
  }

  before(async () => {
    t = await startTestNats();
    nc = await t.connect();
    bindIntegrity(nc, { key }); // as the daemon does: every store on it marks and checks
    store = await EventStore.open(nc);
    await store.append(
      { kind: "pool", id: "p" },
      [makeEvent({ kind: "pool", id: "p" }, "PoolCreated", { config: poolConfig(), instance: "i1" }, T0)],
      0,
    );
    last.set("pool/p", 1);
  });
  after(async () => {
    store.close();
    await t.cleanup();
  });

  const snapshots = () => SnapshotStore.open(nc, { integrity: { key } });

  it("the daemon's worldview takes one every `everyEvents` as events arrive, and `--at` folds from the nearest", async () => {
    const policy = { everyEvents: 300, minIntervalMs: 0, share: 1 };
    const w = await DaemonWorldview.open(nc, store, silentLogger, 60_000, policy);
    for (let round = 0; round < 6; round++) {
      await live(24); // 360 events
      await w.now();
      // The write runs beside the fold: wait for it before the next round makes another due.
      await until(async () => (await (await snapshots()).list("worldview")).entries.length > round);
    }
    await w.close();
    const { entries } = await (await snapshots()).list("worldview");
    assert.equal(entries.length, 6);
    for (const [i, e] of entries.entries()) {
      assert.equal(e.version, WORLDVIEW_VERSION);
      if (i > 0) assert.ok(e.seq - (entries[i - 1]?.seq ?? 0) >= 300, `spaced by the interval: ${e.seq}`);
    }
    const lastSeq = await store.lastSeq();
    const all = await records(lastSeq);
    const runner = await savedWorldviewRunner(store);
    const between = Math.floor(((entries[2]?.seq ?? 0) + (entries[3]?.seq ?? 0)) / 2);
    for (const seq of [5, entries[0]?.seq ?? 0, between, entries[5]?.seq ?? 0, lastSeq - 3]) {
      const { state } = await loadWorldview(store, { at: seq });
      assert.deepEqual(state, foldWorldview(all.filter((r) => r.seq <= seq)), `--at ${seq}`);
    }
    const from = await runner.startAt(between);
    assert.equal(from.seq, entries[2]?.seq, "starts from the snapshot nearest before");

    // The real CLI, as a user runs it: the same JSON as a fold from zero.
    const r = await corral(["worldview", "--at", String(between), "--json"], {
      NATS_URL: t.url,
      [KEY_FILE_ENV]: keyFile,
    });
    assert.equal(r.code, 0, r.stderr);
    const expected = foldWorldview(all.filter((x) => x.seq <= between));
    assert.deepEqual(JSON.parse(r.stdout).state, JSON.parse(JSON.stringify(expected)));
  });

  it("a reader gets the checkpoint and snapshots as raw bytes (direct gets); a missing bucket is none, at once", async () => {
    // Requests are messages: a second connection subscribed to the API subjects sees each one.
    const spy = await t.connect();
    const seen = { direct: 0, json: 0 };
    spy.subscribe(`$JS.API.DIRECT.GET.KV_${CHECKPOINT_BUCKET}.>`, { callback: () => void seen.direct++ });
    spy.subscribe(`$JS.API.STREAM.MSG.GET.KV_${CHECKPOINT_BUCKET}`, { callback: () => void seen.json++ });
    await spy.flush();
    const { entries } = await (await snapshots()).list("worldview");
    const at = (entries[1]?.seq ?? 0) + 1;
    const { state } = await loadWorldview(store, { at });
    assert.deepEqual(state, foldWorldview((await records(at)).filter((r) => r.seq <= at)));
    await spy.flush();
    assert.ok(seen.direct >= 3, `checkpoint, index and chunk by direct get (saw ${seen.direct})`);
    assert.equal(seen.json, 0, "none through the JSON message API");
    await spy.close();

    const t0 = performance.now();
    const none = await CheckpointStore.open(nc, { bucket: "corral_not_there", create: false });
    assert.equal(await none.get("worldview"), undefined);
    assert.ok(performance.now() - t0 < 1_000, "a missing bucket does not wait out a request timeout");
  });

  it("diff across snapshots gives what folding the whole range gives, agents' ends included", async () => {
    const { entries } = await (await snapshots()).list("worldview");
    const a = 40;
    const b = (entries.at(-2)?.seq ?? 0) + 7;
    assert.ok(b - a > 1000);
    const all = await records(b);
    const endedBy = new Map<string, string>();
    for (const r of all)
      if (r.seq > a && r.event?.aggregate.kind === "agent") endedBy.set(r.event.aggregate.id, r.event.type);
    const before = foldWorldview(all.filter((r) => r.seq <= a));
    const expected = { ...diffWorldviews(before, foldWorldview(all), endedBy), from: a, to: b };
    let text = "";
    const opts = { a: { seq: a }, b: { seq: b }, json: true, jumpWorth: 500 };
    const d = await diff(store, opts, { write: (s) => (text += s) });
    assert.deepEqual(d, expected);
    assert.ok(
      d.agents.removed.some((x) => x.endedBy === "AgentFailed"),
      "ends looked up",
    );
    assert.deepEqual(JSON.parse(text), JSON.parse(JSON.stringify(expected)));
  });

  it("a snapshot or an index without a valid mark is passed over: an older one, or a fold from zero", async () => {
    const forger = new Kvm(await t.connect("forger"));
    const kv = await forger.open(CHECKPOINT_BUCKET);
    const { entries } = await (await snapshots()).list("worldview");
    const newest = entries.at(-1);
    assert.ok(newest);
    const seq = newest.seq + 5;
    const all = await records(seq);
    const expected = foldWorldview(all);
    // Someone else's bytes in the newest snapshot's first chunk: its digest no longer matches.
    const chunk = `worldview.snapshot.${newest.slot}.0`;
    const real = (await kv.get(chunk))?.value as Uint8Array;
    const cp = await CheckpointStore.open(nc, { integrity: { key } });
    await cp.delete("worldview"); // so only snapshots can stand in for the fold
    await kv.put(
      chunk,
      real.map((x, i) => (i === 20 ? x ^ 1 : x)),
    );
    const runner = await savedWorldviewRunner(store);
    assert.equal((await runner.startAt(seq)).seq, entries.at(-2)?.seq, "the next older one");
    assert.deepEqual((await loadWorldview(store, { at: seq })).state, expected);

    // An index written without the key: none is believed.
    const index = (await kv.get("worldview.snapshots"))?.value as Uint8Array;
    await kv.put("worldview.snapshots", encode(entries));
    assert.equal((await runner.startAt(seq)).seq, 0);
    assert.deepEqual((await loadWorldview(store, { at: seq })).state, expected);
    // A reader without the key believes none either.
    await kv.put("worldview.snapshots", index);
    const blind = await EventStore.open(nc, { integrity: "unverified" });
    assert.equal((await (await savedWorldviewRunner(blind)).startAt(seq)).seq, 0);
    blind.close();
    await kv.put(chunk, real);
    assert.equal((await runner.startAt(seq)).seq, newest.seq, "restored, believed again");
  });

  it("keeps `keep`, thinned evenly over the stream, in chunks of any size, and never loads another version's", async () => {
    const bucket = "snap_keep";
    const small = await SnapshotStore.open(nc, { bucket, keep: 4, chunkBytes: 300, integrity: { key } });
    const runner = new ProjectionRunner(store, worldviewProjection, {
      snapshots: small,
      snapshotPolicy: { everyEvents: 300, minIntervalMs: 0, share: 1 },
      batch: 100,
    });
    const lastSeq = await store.lastSeq();
    const taken: number[] = [];
    for (let to = 300; to <= lastSeq; to += 300) {
      await runner.catchUp(to);
      await runner.settled();
      taken.push(to);
    }
    const { entries } = await small.list("worldview");
    const seqs = entries.map((e) => e.seq);
    assert.ok(taken.length >= 7, `snapshots taken: ${taken}`);
    assert.equal(seqs.length, 4, `no more than kept: ${seqs}`);
    assert.deepEqual([seqs[0], seqs.at(-1)], [taken[0], taken.at(-1)], "the oldest and the newest stay");
    const span = (taken.at(-1) ?? 0) - (taken[0] ?? 0);
    for (let i = 1; i < seqs.length; i++) {
      const gap = (seqs[i] ?? 0) - (seqs[i - 1] ?? 0);
      assert.ok(gap <= (2 * span) / 3, `evenly thinned: gap ${gap} in ${seqs}`);
    }
    assert.ok(
      entries.every((e) => e.chunks > 1),
      "each split over several chunks",
    );
    const newest = entries.at(-1)?.seq ?? 0;
    const from = await runner.startAt(newest);
    assert.equal(from.seq, newest);
    assert.deepEqual(worldviewProjection.save(from.state), foldWorldview(await records(newest)));

    // A snapshot of another (older) worldview version, newer than every other: never loaded.
    const old = { seq: lastSeq, version: WORLDVIEW_VERSION - 1, state: runner.view() };
    assert.equal(await small.prepare("worldview", old)(), "written");
    const after = await small.list("worldview");
    assert.equal(after.entries.length, 4, "one thinned out to make room");
    assert.equal(after.entries.at(-1)?.version, WORLDVIEW_VERSION - 1);
    assert.equal((await small.nearest("worldview", WORLDVIEW_VERSION, lastSeq))?.seq, newest);
    const reader = new ProjectionRunner(store, worldviewProjection, { snapshots: small, readOnly: true });
    assert.equal((await reader.startAt(lastSeq)).seq, newest);
  });
});

async function until(check: () => Promise<boolean>, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
}
