import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { headers } from "@nats-io/nats-core";
import { encodeEvent } from "../src/codec/msgpack.ts";
import type { AggregateRef } from "../src/events/envelope.ts";
import { ConcurrencyError } from "../src/store/errors.ts";
import { MARK_HEADER } from "../src/store/event-mark.ts";
import { EventStore } from "../src/store/event-store.ts";
import { PipelinedPublisher, WrongLastSequence } from "../src/store/publisher.ts";
import { eventSubject } from "../src/store/subjects.ts";
import { makeEvent } from "./helpers/events.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";

const created = (ref: AggregateRef) =>
  makeEvent(ref, "CommandCreated", { agentId: "agent-1", action: "echo", payload: { text: ref.id } });

describe("event store against a real nats-server", () => {
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

  it("creates the stream once and is idempotent on the next open", async () => {
    assert.equal(store.ensured.action, "created");
    const again = await EventStore.open(await t.connect());
    assert.equal(again.ensured.action, "unchanged");
    again.close();
    const info = await store.jsm.streams.info("CORRAL_EVENTS");
    assert.deepEqual(info.config.subjects, ["corral.evt.>"]);
    assert.equal(info.config.storage, "file");
  });

  it("updates an existing stream whose settings differ", async () => {
    const other = await EventStore.open(await t.connect(), { stream: { duplicateWindowMs: 60_000 } });
    assert.equal(other.ensured.action, "updated");
    other.close();
    const back = await EventStore.open(await t.connect());
    assert.equal(back.ensured.action, "updated");
    back.close();
  });

  it("appends, reads an aggregate back in order, and reads from a sequence", async () => {
    const ref: AggregateRef = { kind: "command", id: "read-1" };
    const e1 = created(ref);
    const e2 = makeEvent(ref, "CommandSent", { attempt: 1 });
    const e3 = makeEvent(ref, "CommandAcked", { attempt: 1 });
    const r1 = await store.append(ref, [e1, e2], 0);
    assert.equal(r1.seqs.length, 2);
    const r2 = await store.append(ref, [e3], r1.lastSeq);
    assert.equal(await store.lastSeqOf(ref), r2.lastSeq);
    const all = await store.readAggregate(ref);
    assert.deepEqual(
      all.map((r) => r.event?.id),
      [e1.id, e2.id, e3.id],
    );
    assert.deepEqual(all[0]?.event, e1);
    const tail = await store.readAggregate(ref, r1.seqs[0]);
    assert.deepEqual(
      tail.map((r) => r.event?.type),
      ["CommandSent", "CommandAcked"],
    );
    assert.deepEqual(await store.readAggregate({ kind: "command", id: "nobody" }), []);
    const got = await store.get(r1.seqs[1] as number);
    assert.equal(got?.event?.id, e2.id);
    assert.equal(await store.get(999_999), null);
  });

  it("reads everything from a sequence and from a time", async () => {
    const before = Date.now();
    await new Promise((r) => setTimeout(r, 5));
    const ref: AggregateRef = { kind: "command", id: "time-1" };
    const { lastSeq } = await store.append(ref, [created(ref)], 0);
    const fromTime: number[] = [];
    for await (const b of store.read({ fromTime: new Date(before) })) for (const r of b) fromTime.push(r.seq);
    assert.deepEqual(fromTime, [lastSeq]);
    const fromSeq: number[] = [];
    for await (const b of store.read({ fromSeq: lastSeq })) for (const r of b) fromSeq.push(r.seq);
    assert.deepEqual(fromSeq, [lastSeq]);
  });

  it("raises ConcurrencyError with the current sequence on a stale expectedSeq", async () => {
    const ref: AggregateRef = { kind: "command", id: "occ-1" };
    const { lastSeq } = await store.append(ref, [created(ref)], 0);
    await assert.rejects(
      store.append(ref, [makeEvent(ref, "CommandSent", { attempt: 1 })], 0),
      (err: unknown) =>
        err instanceof ConcurrencyError && err.currentSeq === lastSeq && err.expectedSeq === 0,
    );
    // Two writers racing from the same version: exactly one wins.
    const results = await Promise.allSettled([
      store.append(ref, [makeEvent(ref, "CommandSent", { attempt: 1 })], lastSeq),
      store.append(ref, [makeEvent(ref, "CommandSent", { attempt: 1 })], lastSeq),
    ]);
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
    const lost = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    assert.ok(lost.reason instanceof ConcurrencyError);
    assert.equal((await store.readAggregate(ref)).length, 2);
  });

  it("deduplicates a retried append (same event ids) instead of storing it twice", async () => {
    const ref: AggregateRef = { kind: "command", id: "dup-1" };
    const events = [created(ref), makeEvent(ref, "CommandSent", { attempt: 1 })];
    const first = await store.append(ref, events, 0);
    // The ack was "lost": the caller retries exactly the same append.
    const retry = await store.append(ref, events, 0);
    assert.deepEqual(retry.seqs, first.seqs);
    assert.equal(retry.duplicates, 2);
    assert.equal((await store.readAggregate(ref)).length, 2);
  });

  it("a raw publish that was stored but never acknowledged is not doubled by the store's retry", async () => {
    const ref: AggregateRef = { kind: "command", id: "lost-ack" };
    const ev = created(ref);
    // Simulate the lost ack: the message reaches JetStream, the publisher never hears back.
    const h = headers();
    h.set("Nats-Msg-Id", ev.id);
    h.set("Nats-Expected-Last-Subject-Sequence", "0");
    store.nc.publish(eventSubject(ref), encodeEvent(ev), { headers: h });
    await store.nc.flush();
    const r = await store.append(ref, [ev], 0);
    assert.equal(r.duplicates, 1);
    assert.equal((await store.readAggregate(ref)).length, 1);
  });

  it("an append's headers reach the server as the client's own would, ASCII or not", async () => {
    const pub = new PipelinedPublisher(store.nc);
    try {
      for (const [i, msgId] of ["plain-id-1", "ünïcödé-id-1"].entries()) {
        const subject = `corral.evt.command.hdr-${i}`;
        const body = encodeEvent(created({ kind: "command", id: `hdr-${i}` }));
        const ack = await pub.publish(subject, body, msgId, 0, "v3.mark-as-given");
        const stored = await store.jsm.streams.getMessage(store.stream, { seq: ack.seq });
        assert.equal(stored?.header.get("Nats-Msg-Id"), msgId);
        assert.equal(stored?.header.get("Nats-Expected-Last-Subject-Sequence"), "0");
        assert.equal(stored?.header.get(MARK_HEADER), "v3.mark-as-given");
        // The server read them too: the same id again is a duplicate, a wrong expectation a conflict.
        assert.equal((await pub.publish(subject, body, msgId, 0)).duplicate, true);
        await assert.rejects(pub.publish(subject, body, `${msgId}-2`, 0), WrongLastSequence);
      }
    } finally {
      pub.close();
    }
  });

  it("an event too large for the server fails its own append, with the client's reason, and no other", async () => {
    const ref: AggregateRef = { kind: "command", id: "huge-1" };
    const huge = makeEvent(ref, "CommandCreated", {
      agentId: "agent-1",
      action: "echo",
      payload: { text: "x".repeat(2 * 1024 * 1024) },
    });
    const other: AggregateRef = { kind: "command", id: "beside-huge-1" };
    const [failed, fine] = await Promise.allSettled([
      store.append(ref, [huge], 0),
      store.append(other, [created(other)], 0),
    ]);
    assert.ok(failed.status === "rejected", "the huge append fails");
    assert.match(String(failed.reason), /max_payload/);
    assert.equal(fine.status, "fulfilled");
    assert.equal((await store.append(ref, [created(ref)], 0)).seqs.length, 1);
  });

  it("rejects bad input with an error that names it, storing nothing", async () => {
    const ref: AggregateRef = { kind: "command", id: "bad-1" };
    await assert.rejects(
      store.append({ kind: "command", id: "a.b" }, [], 0),
      /aggregate id "a.b" is invalid/,
    );
    await assert.rejects(
      store.append({ kind: "nope" as "command", id: "x" }, [], 0),
      /aggregate kind "nope"/,
    );
    const wrong = created({ kind: "command", id: "other" });
    await assert.rejects(store.append(ref, [wrong], 0), /belongs to command\/other/);
    const bad = { ...created(ref), data: { agentId: "a", action: "" } };
    await assert.rejects(store.append(ref, [bad], 0), /data\.action/);
    assert.equal(await store.lastSeqOf(ref), 0);
  });

  it("reads that start while appends are in flight end at what was stored when they started, missing nothing", async () => {
    // nats-server 2.9 miscounts a consumer's pending after concurrent appends: a read that
    // trusted it either never ended (too high) or ended early, skipping events (too low).
    let stop = false;
    const writers = Array.from({ length: 4 }, async (_, w) => {
      const ref: AggregateRef = { kind: "command", id: `live-${w}` };
      let seq = (await store.append(ref, [created(ref)], 0)).lastSeq;
      for (let i = 1; !stop; i++) {
        seq = (await store.append(ref, [makeEvent(ref, "CommandSent", { attempt: i })], seq)).lastSeq;
        await new Promise((r) => setTimeout(r, 2));
      }
    });
    try {
      for (let i = 0; i < 40; i++) {
        const before = await store.lastSeq();
        const from = Math.max(1, before - 20);
        const filter = i % 2 ? "corral.evt.command.*" : undefined;
        const read = (async () => {
          const seen = new Set<number>();
          for await (const batch of store.read({ fromSeq: from, filter, stallMs: 60_000 }))
            for (const r of batch) seen.add(r.seq);
          return seen;
        })();
        const seen = await Promise.race([
          read,
          new Promise<never>((_, reject) =>
            // A read that missed its end would wait for the 60 s stall: 20 s tells the two apart.
            setTimeout(() => reject(new Error(`read ${i} did not end`)), 20_000),
          ),
        ]);
        for (let q = from; q <= before; q++) {
          if (filter && !(await store.get(q))?.subject.startsWith("corral.evt.command.")) continue;
          assert.ok(seen.has(q), `read ${i} (${filter ?? "all"}) ended without ${q}, stored before it began`);
        }
      }
    } finally {
      stop = true;
      await Promise.all(writers);
    }
  });

  it("follows live appends", async () => {
    const ref: AggregateRef = { kind: "command", id: "follow-1" };
    const ac = new AbortController();
    const seen: string[] = [];
    // From the next sequence, not "new from whenever the consumer starts": no head start to wait for.
    const fromSeq = (await store.lastSeq()) + 1;
    const done = (async () => {
      for await (const r of store.follow({ filter: eventSubject(ref), fromSeq }, ac.signal)) {
        seen.push(r.event?.type ?? "?");
        if (seen.length === 2) ac.abort();
      }
    })();
    const { lastSeq } = await store.append(ref, [created(ref)], 0);
    await store.append(ref, [makeEvent(ref, "CommandSent", { attempt: 1 })], lastSeq);
    await done;
    assert.deepEqual(seen, ["CommandCreated", "CommandSent"]);
  });

  it("a dropped delivery is detected as a gap and re-read, never skipped", async () => {
    const refs = Array.from({ length: 50 }, (_, i): AggregateRef => ({ kind: "command", id: `gap-${i}` }));
    await Promise.all(refs.map((ref) => store.append(ref, [created(ref)], 0)));
    const stats = { messages: 0, resets: 0, gaps: 0 };
    let dropped = 0;
    const seqs: number[] = [];
    const drop = (dseq: number) => dseq === 7 && dropped++ < 3; // lose it three times in a row
    for await (const b of store.read({ filter: "corral.evt.command.*", batch: 10 }, stats, drop)) {
      for (const r of b) seqs.push(r.seq);
    }
    const expected: number[] = [];
    for await (const b of store.read({ filter: "corral.evt.command.*" }))
      for (const r of b) expected.push(r.seq);
    if (seqs.length !== expected.length)
      for (const q of expected.slice(seqs.length))
        console.error("EXTRA", q, (await store.get(q))?.subject, (await store.get(q))?.event?.type);
    assert.deepEqual(seqs, expected);
    assert.equal(stats.gaps, 3);
    assert.equal(stats.resets, 3);
  });

  it("a gap before a read's first message starts it again where the read begins, not at the stream's start", async () => {
    const refs = Array.from({ length: 30 }, (_, i): AggregateRef => ({ kind: "command", id: `gap0-${i}` }));
    await Promise.all(refs.map((ref) => store.append(ref, [created(ref)], 0)));
    const all: number[] = [];
    for await (const b of store.read({ filter: "corral.evt.command.*" })) for (const r of b) all.push(r.seq);
    const from = all[all.length - 20] as number;
    const stats = { messages: 0, resets: 0, gaps: 0 };
    let dropped = 0;
    const drop = (dseq: number) => dseq === 1 && dropped++ < 2; // the first delivery lost, twice
    const seqs: number[] = [];
    for await (const b of store.read({ filter: "corral.evt.command.*", fromSeq: from }, stats, drop))
      for (const r of b) seqs.push(r.seq);
    assert.deepEqual(seqs, all.slice(-20));
    assert.equal(stats.gaps, 2);
  });
});

describe("inputs the stream could not give back", () => {
  it('a "__proto__" key anywhere in data is refused when the event is built, naming where', () => {
    const ref: AggregateRef = { kind: "command", id: "proto" };
    assert.throws(
      () =>
        makeEvent(ref, "CommandCreated", {
          agentId: "a",
          action: "b",
          payload: JSON.parse('{"x":{"__proto__":1}}'),
        }),
      /data\.payload\.x\.__proto__: the key "__proto__" cannot be stored/,
    );
  });
});
