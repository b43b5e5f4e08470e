import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { jetstream } from "@nats-io/jetstream";
import fc from "fast-check";
import { decode, encode } from "../src/codec/msgpack.ts";
import type { EventType } from "../src/events/catalogue.ts";
import type { AggregateRef, Envelope } from "../src/events/envelope.ts";
import { DecodeError } from "../src/events/errors.ts";
import { CheckpointStore } from "../src/projections/checkpoints.ts";
import { formatWorldview, loadWorldview } from "../src/projections/index.ts";
import type { ProjectionLogger } from "../src/projections/projection.ts";
import { ProjectionRunner } from "../src/projections/runner.ts";
import { foldWorldview, type Worldview, worldviewProjection } from "../src/projections/worldview.ts";
import { EventStore } from "../src/store/event-store.ts";
import type { StoredRecord } from "../src/store/records.ts";
import { makeEvent } from "./helpers/events.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";

const cmd = (id: string): AggregateRef => ({ kind: "command", id });

/** Records as a reader would hand them over, numbered from 1. */
function records(events: readonly (Envelope | DecodeError)[]): StoredRecord[] {
  return events.map((e, i) => {
    const seq = i + 1;
    const base = { seq, subject: "corral.evt.command.t", time: 1_000 + seq };
    return e instanceof DecodeError ? { ...base, error: e } : ({ ...base, event: e } as StoredRecord);
  });
}

/** Counts a worldview must always agree with, whatever it was fed. */
function assertConsistent(w: Worldview): void {
  const c = w.commands;
  for (const s of ["pending", "sent", "acked"] as const) {
    assert.equal(c.byState[s], c.live.filter((x) => x.state === s).length, `byState.${s}`);
  }
  assert.equal(
    c.agents.reduce((sum, a) => sum + a.live, 0),
    c.live.length,
  );
  assert.ok(c.agents.every((a) => a.live > 0));
  assert.equal(new Set(c.live.map((x) => x.id)).size, c.live.length);
}

/** A logger that keeps what it was told, to check what the runner reported. */
function recordingLogger(): ProjectionLogger & { lines: { obj: Record<string, unknown>; msg: string }[] } {
  const lines: { obj: Record<string, unknown>; msg: string }[] = [];
  return { lines, warn: (obj, msg) => lines.push({ obj: obj as Record<string, unknown>, msg }) };
}

describe("worldview reducers (pure)", () => {
  it("follows a command through retries, acks and every way of ending", () => {
    const a = cmd("a");
    const b = cmd("b");
    const c = cmd("c");
    const d = cmd("d");
    const created = (ref: AggregateRef, agentId: string, maxRetries = 1) =>
      makeEvent(ref, "CommandCreated", { agentId, action: "npm test", maxRetries }, 100);
    const w = foldWorldview(
      records([
        created(a, "agent-1"),
        created(b, "agent-1"),
        created(c, "agent-2", 0),
        created(d, "agent-2"),
        makeEvent(a, "CommandSent", { attempt: 1 }, 110),
        makeEvent(a, "CommandTimedOut", { deadline: 120 }, 120), // retry 1 of 1: back to pending
        makeEvent(a, "CommandSent", { attempt: 2 }, 130),
        makeEvent(a, "CommandAcked", { attempt: 2 }, 140),
        makeEvent(b, "CommandSent", { attempt: 1 }, 150),
        makeEvent(b, "CommandCompleted", { result: 1 }, 160),
        makeEvent(c, "CommandTimedOut", { deadline: 170 }, 170), // no retries left: failed
        makeEvent(d, "CommandCancelled", { reason: "user" }, 180),
        makeEvent(b, "CommandFailed", { error: "late" }, 190), // b is finished: untracked
        new DecodeError("not-envelope", "junk"),
        makeEvent(cmd("zz"), "CommandAcked", { attempt: 1 }, 200), // never created: untracked
      ]),
    );
    assert.deepEqual(w.commands.byState, {
      pending: 0,
      sent: 0,
      acked: 1,
      completed: 1,
      failed: 1,
      cancelled: 1,
    });
    assert.deepEqual(w.commands.live, [
      {
        id: "a",
        agentId: "agent-1",
        action: "npm test",
        state: "acked",
        attempt: 2,
        retries: 1,
        maxRetries: 1,
        createdAt: 100,
        updatedAt: 140,
        createdSeq: 1,
        lastSeq: 8,
      },
    ]);
    assert.deepEqual(w.commands.agents, [{ agentId: "agent-1", live: 1 }]);
    assert.equal(w.commands.untracked, 2);
    assert.equal(w.commands.ignored, 0);
    assert.equal(w.totals.events, 14);
    assert.equal(w.totals.byType.CommandSent, 3);
    assert.deepEqual(w.skipped, { "not-envelope": 1 });
    assert.equal(w.lastSeq, 15);
    assert.equal(w.lastEventAt, 200);
  });

  it("ignores transitions the command's state does not allow, without corrupting counts", () => {
    const a = cmd("a");
    const w = foldWorldview(
      records([
        makeEvent(a, "CommandCreated", { agentId: "x", action: "go" }, 1),
        makeEvent(a, "CommandAcked", { attempt: 1 }, 2), // not sent yet
        makeEvent(a, "CommandCompleted", {}, 3), // nothing was handed over
        makeEvent(a, "CommandCreated", { agentId: "y", action: "again" }, 4), // duplicate
      ]),
    );
    assert.equal(w.commands.ignored, 3);
    assert.equal(w.commands.live[0]?.state, "pending");
    assert.equal(w.commands.live[0]?.agentId, "x");
    assertConsistent(w);
  });

  // Any order of any command events (the machine's guards are not assumed), over ids that are
  // dangerous as object keys, with poison mixed in.
  const ids = ["a", "b", "c", "__proto__", "constructor"];
  const agents = ["agent-1", "agent-2", "toString"];
  const arbRecord = fc.oneof(
    { weight: 1, arbitrary: fc.constant(new DecodeError("invalid-data", "bad") as Envelope | DecodeError) },
    {
      weight: 12,
      arbitrary: fc
        .record({
          id: fc.constantFrom(...ids),
          agent: fc.constantFrom(...agents),
          type: fc.constantFrom<EventType>(
            "CommandCreated",
            "CommandSent",
            "CommandAcked",
            "CommandCompleted",
            "CommandFailed",
            "CommandTimedOut",
            "CommandCancelled",
          ),
          n: fc.integer({ min: 1, max: 3 }),
          at: fc.integer({ min: 1, max: 1e6 }),
        })
        .map(({ id, agent, type, n, at }): Envelope | DecodeError => {
          const ref = cmd(id);
          switch (type) {
            case "CommandCreated":
              return makeEvent(ref, type, { agentId: agent, action: "a", maxRetries: n - 1 }, at);
            case "CommandSent":
            case "CommandAcked":
              return makeEvent(ref, type, { attempt: n }, at);
            case "CommandTimedOut":
              return makeEvent(ref, type, { deadline: at }, at);
            case "CommandFailed":
              return makeEvent(ref, type, { error: "e" }, at);
            case "CommandCancelled":
              return makeEvent(ref, type, { reason: "r" }, at);
            default:
              return makeEvent(ref, "CommandCompleted", {}, at);
          }
        }),
    },
  );

  it("property: the result does not depend on how the stream is split into checkpointed catch-ups", () => {
    fc.assert(
      fc.property(
        fc.array(arbRecord, { maxLength: 120 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        (evs, cuts) => {
          const recs = records(evs);
          const whole = foldWorldview(recs);
          assertConsistent(whole);
          // Fold in pieces; between pieces, go through a msgpack checkpoint as the runner does.
          const bounds = [...new Set(cuts.map((c) => c % (recs.length + 1)))].sort((x, y) => x - y);
          let state = worldviewProjection.init();
          let from = 0;
          for (const end of [...bounds, recs.length]) {
            for (const r of recs.slice(from, end)) worldviewProjection.apply(state, r);
            from = Math.max(from, end);
            const saved = decode(encode(worldviewProjection.save(state))) as Worldview;
            state = worldviewProjection.load(saved);
          }
          assert.deepEqual(worldviewProjection.save(state), whole);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("formats totals, states, live commands and skips", () => {
    const a = cmd("a");
    const text = formatWorldview(
      foldWorldview(
        records([
          makeEvent(a, "CommandCreated", { agentId: "agent-7", action: "make build" }, Date.UTC(2025, 0, 2)),
          new DecodeError("unknown-type", "x"),
        ]),
      ),
    );
    assert.match(text, /events\s+1 applied through stream seq 2, last at 2025-01-02T00:00:00.000Z/);
    assert.match(text, /skipped\s+unknown-type 1/);
    assert.match(text, /live 1: pending 1, sent 0, acked 0 \| finished 0/);
    assert.match(text, /agents\s+agent-7 1/);
    assert.match(text, /^\s+a\s+agent-7\s+pending\s+1\s+0\/3\s+2025-01-02T00:00:00.000Z\s+make build$/m);
  });
});

/** A deterministic mix of command lifecycles, in phases, so catch-ups can stop between them. */
function phases(prefix: string, commands: number): Map<string, Envelope[]>[] {
  const out: Map<string, Envelope[]>[] = [new Map(), new Map(), new Map()];
  for (let i = 0; i < commands; i++) {
    const ref = cmd(`${prefix}${i}`);
    const t = 1_000 * i;
    const ev = <T extends EventType>(type: T, data: Parameters<typeof makeEvent<T>>[2], dt: number) =>
      makeEvent(ref, type, data, t + dt);
    const p0 = [ev("CommandCreated", { agentId: `agent-${i % 4}`, action: `job ${i}`, maxRetries: 1 }, 0)];
    const p1: Envelope[] = [ev("CommandSent", { attempt: 1 }, 1)];
    const p2: Envelope[] = [];
    switch (i % 5) {
      case 0:
        p1.push(ev("CommandAcked", { attempt: 1 }, 2));
        p2.push(ev("CommandCompleted", { result: { ok: i } }, 3));
        break;
      case 1:
        p1.push(ev("CommandTimedOut", { deadline: t + 2 }, 2));
        p2.push(ev("CommandSent", { attempt: 2 }, 3), ev("CommandAcked", { attempt: 2 }, 4));
        break;
      case 2:
        p2.push(ev("CommandFailed", { error: "exit 1" }, 3));
        break;
      case 3:
        p2.push(ev("CommandCancelled", { reason: "user" }, 3));
        break;
      default:
        break; // stays sent
    }
    out[0]?.set(ref.id, p0);
    out[1]?.set(ref.id, p1);
    if (p2.length) out[2]?.set(ref.id, p2);
  }
  return out;
}

/** Appends one phase, aggregates in parallel, each aggregate's events in order. */
async function appendPhase(store: EventStore, phase: Map<string, Envelope[]>): Promise<void> {
  await Promise.all(
    [...phase].map(async ([id, events]) => {
      const ref = cmd(id);
      await store.append(ref, events, await store.lastSeqOf(ref));
    }),
  );
}

async function readAll(store: EventStore, toSeq?: number): Promise<StoredRecord[]> {
  const out: StoredRecord[] = [];
  for await (const b of store.read({ toSeq })) out.push(...b);
  return out;
}

describe("projection runner against a real nats-server", () => {
  let t: TestNats;
  let store: EventStore;
  let checkpoints: CheckpointStore;
  before(async () => {
    t = await startTestNats();
    const nc = await t.connect();
    store = await EventStore.open(nc);
    checkpoints = await CheckpointStore.open(nc);
  });
  after(async () => {
    store.close();
    await t.cleanup();
  });

  it("rebuild from zero equals catch-ups resumed from checkpoints, and live follow", async () => {
    const work = phases("inc", 60);
    const follower = new ProjectionRunner(store, worldviewProjection, {});
    const controller = new AbortController();
    let seen = 0;
    let waiter: { seq: number; resolve: () => void } | undefined;
    const following = follower.follow((r) => {
      seen = r.seq;
      if (waiter && seen >= waiter.seq) waiter.resolve();
    }, controller.signal);
    const followerAt = (seq: number) =>
      seen >= seq ? Promise.resolve() : new Promise<void>((resolve) => (waiter = { seq, resolve }));

    const results = [];
    for (const phase of work) {
      await appendPhase(store, phase);
      // A fresh runner each time: it must resume from the checkpoint the previous one wrote.
      const runner = new ProjectionRunner(store, worldviewProjection, { checkpoints, checkpointEvery: 7 });
      const r = await runner.catchUp();
      results.push(r);
      assert.ok(r.checkpoint === "written" || r.checkpoint === "unchanged");
      assert.equal((await checkpoints.get("worldview"))?.seq, r.seq);
    }
    assert.equal(results[0]?.from, 0);
    assert.equal(results[1]?.from, results[0]?.seq);
    assert.equal(results[2]?.from, results[1]?.seq);
    const last = await store.lastSeq();
    assert.equal(results[2]?.seq, last);

    const resumed = new ProjectionRunner(store, worldviewProjection, { checkpoints });
    await resumed.catchUp();
    const rebuilt = new ProjectionRunner(store, worldviewProjection, { checkpoints });
    const rb = await rebuilt.rebuild();
    assert.equal(rb.from, 0);
    assert.equal(rb.records, last);
    await followerAt(last);
    controller.abort();
    await following;

    const reference = foldWorldview(await readAll(store));
    assert.deepEqual(rebuilt.view(), reference);
    assert.deepEqual(resumed.view(), reference);
    assert.deepEqual(follower.view(), reference);
    assertConsistent(reference);
    // Lifecycles are 0 completed, 1 retried then acked, 2 failed, 3 cancelled, 4 still sent.
    assert.deepEqual(reference.commands.byState, {
      pending: 0,
      sent: 12,
      acked: 12,
      completed: 12,
      failed: 12,
      cancelled: 12,
    });
    assert.equal(reference.commands.live.find((c) => c.id === "inc1")?.retries, 1);
    assert.equal(reference.totals.events, last);
    assert.deepEqual((await loadWorldview(store)).state, reference);
    assert.deepEqual((await loadWorldview(store, { useCheckpoint: false })).state, reference);
  });

  it("at(seq) equals folding the prefix, and never starts from a checkpoint past seq", async () => {
    const all = await readAll(store);
    const last = all.at(-1)?.seq ?? 0;
    assert.ok(last > 100);
    const runner = new ProjectionRunner(store, worldviewProjection, { checkpoints });
    await runner.rebuild(); // the checkpoint is now at the very end
    for (const seq of [0, 1, 37, Math.floor(last / 2), last - 1, last]) {
      const prefix = foldWorldview(all.filter((r) => r.seq <= seq));
      const got = await runner.at(seq);
      assert.equal(got.seq, seq);
      assert.deepEqual(got.state, prefix, `at(${seq})`);
      assert.deepEqual((await loadWorldview(store, { at: seq })).state, prefix);
    }
    // A checkpoint at or before seq is a valid start: plant one with a marker to see it used.
    const mid = Math.floor(last / 2);
    const marked = foldWorldview(all.filter((r) => r.seq <= mid));
    marked.commands.ignored = 4242;
    await checkpoints.put("worldview", { seq: mid, version: worldviewProjection.version, state: marked });
    assert.equal((await runner.at(last)).state.commands.ignored, 4242);
    assert.equal((await runner.at(mid - 1)).state.commands.ignored, 0);
    assert.equal((await runner.at(last, { useCheckpoint: false })).state.commands.ignored, 0);
    await runner.rebuild(); // leave a true checkpoint behind
  });

  it("ignores a checkpoint of another version, or one it cannot read, and rebuilds", async () => {
    const reference = foldWorldview(await readAll(store));
    const bogus = { ...reference, lastSeq: 99_999, commands: { ...reference.commands, ignored: 777 } };
    for (const cp of [
      { seq: 99_999, version: worldviewProjection.version + 1, state: bogus },
      { seq: 5, version: worldviewProjection.version, state: { nonsense: true } },
    ]) {
      await checkpoints.put<unknown>("worldview", cp);
      const log = recordingLogger();
      const runner = new ProjectionRunner(store, worldviewProjection, { checkpoints, logger: log });
      const r = await runner.catchUp();
      assert.equal(r.from, 0);
      assert.deepEqual(runner.view(), reference);
      assert.equal(log.lines.length, 1);
      assert.match(log.lines[0]?.msg ?? "", /another version|malformed/);
      assert.deepEqual((await loadWorldview(store)).state, reference);
    }
  });

  it("skips a checkpoint that would not fit in a NATS message, logging it, and goes on", async () => {
    const log = recordingLogger();
    const tiny = await CheckpointStore.open(store.nc, { maxBytes: 64, logger: log });
    const runner = new ProjectionRunner(store, worldviewProjection, {
      checkpoints: tiny,
      checkpointEvery: 10,
      checkpointMinIntervalMs: 0,
    });
    const r = await runner.rebuild();
    assert.equal(r.checkpoint, "too-large");
    assert.equal(runner.seq, await store.lastSeq());
    assert.ok(log.lines.length > 1 && log.lines.every((l) => /too large/.test(l.msg)));
    assert.ok((log.lines[0]?.obj.bytes as number) > 64);

    // At most one checkpoint a second while catching up (a clock that stands still): the first
    // one due, then only the one at the end.
    const capped = recordingLogger();
    const runner2 = new ProjectionRunner(store, worldviewProjection, {
      checkpoints: await CheckpointStore.open(store.nc, { maxBytes: 64, logger: capped }),
      checkpointEvery: 10,
      batch: 10,
      now: () => 5_000,
    });
    const { records } = await runner2.rebuild();
    assert.ok(records > 30, `${records} records: several batches`);
    assert.equal(capped.lines.length, 2);
  });
});

describe("poison messages against a real nats-server", () => {
  let t: TestNats;
  let store: EventStore;
  before(async () => {
    t = await startTestNats();
    store = await EventStore.open(await t.connect());
  });
  after(async () => {
    store.close();
    await t.cleanup();
  });

  it("counts, logs with its sequence and skips each poison record, and goes on past it", async () => {
    const js = jetstream(store.nc);
    const a = cmd("p1");
    await store.append(a, [makeEvent(a, "CommandCreated", { agentId: "agent-1", action: "x" })], 0);
    const valid = makeEvent(cmd("x"), "CommandSent", { attempt: 1 });
    const poison = [
      new Uint8Array([0xc1, 1, 2]), // not msgpack at all
      encode({ hello: "world" }), // msgpack, but not an envelope
      encode({ ...valid, type: "CommandTeleported" }), // an envelope of a type nobody knows
      encode({ ...valid, v: 9 }), // written by a newer corral
      encode({ ...valid, data: { attempt: "one" } }), // invalid data
    ];
    const poisonSeqs: number[] = [];
    for (const bytes of poison) poisonSeqs.push((await js.publish("corral.evt.command.x", bytes)).seq);
    const b = cmd("p2");
    await store.append(b, [makeEvent(b, "CommandCreated", { agentId: "agent-2", action: "y" })], 0);
    const { lastSeq } = await store.append(a, [makeEvent(a, "CommandSent", { attempt: 1 })], 1);

    const log = recordingLogger();
    const runner = new ProjectionRunner(store, worldviewProjection, { logger: log });
    await runner.catchUp();
    const w = runner.view();
    assert.deepEqual(w.skipped, {
      "invalid-data": 1,
      "newer-version": 1,
      "not-envelope": 2,
      "unknown-type": 1,
    });
    assert.equal(w.lastSeq, lastSeq);
    assert.equal(w.totals.events, 3);
    assert.deepEqual(
      w.commands.live.map((c) => [c.id, c.state]),
      [
        ["p1", "sent"],
        ["p2", "pending"],
      ],
    );
    assert.deepEqual(
      log.lines.map((l) => l.obj.seq),
      poisonSeqs,
    );
    assert.ok(
      log.lines.every((l) => l.obj.subject === "corral.evt.command.x" && typeof l.obj.reason === "string"),
    );
    // No checkpoint bucket exists on this server: the CLI's read finds none and says nothing of it.
    const cliLog = recordingLogger();
    const loaded = await loadWorldview(store, { logger: cliLog });
    assert.deepEqual(loaded.skipped, w.skipped);
    assert.equal(loaded.seq, lastSeq);
    assert.deepEqual(
      cliLog.lines.map((l) => l.obj.seq),
      poisonSeqs,
    );
    assert.deepEqual((await loadWorldview(store, { at: poisonSeqs[1] })).skipped, { "not-envelope": 2 });
  });
});
