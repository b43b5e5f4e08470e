import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { commandAggregate } from "../machines/command.ts";
import { ActorHost, type Input } from "../src/cp/actor-host.ts";
import type { EffectHandlers } from "../src/cp/effects.ts";
import { InvalidInputError, RejectedInputError } from "../src/cp/errors.ts";
import type { AggregateRef } from "../src/events/envelope.ts";
import { EventStore } from "../src/store/event-store.ts";
import { SnapshotStore } from "../src/store/snapshots.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";

const create = (over: Partial<Input<"CommandCreated">["data"]> = {}): Input<"CommandCreated"> => ({
  type: "CommandCreated",
  data: { agentId: "agent-1", action: "echo", payload: {}, ...over },
});

const quiet: EffectHandlers = { dispatch: () => {}, cancelOnAgent: () => {} };

async function typesOf(store: EventStore, ref: AggregateRef): Promise<string[]> {
  return (await store.readAggregate(ref)).map((r) => r.event?.type ?? "?");
}

// A bound for a loaded machine, not a speed claim: a met condition returns at once.
async function until(cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("actor host against a real nats-server", () => {
  let t: TestNats;
  let store: EventStore;
  let snapshots: SnapshotStore;
  const hosts: ActorHost[] = [];
  const newHost = (
    effects: EffectHandlers = quiet,
    extra: Partial<ConstructorParameters<typeof ActorHost>[0]> = {},
  ) => {
    const h = new ActorHost({
      store,
      snapshots,
      aggregates: [commandAggregate],
      effects: { command: effects },
      ...extra,
    });
    hosts.push(h);
    return h;
  };

  before(async () => {
    t = await startTestNats();
    const nc = await t.connect();
    store = await EventStore.open(nc);
    snapshots = await SnapshotStore.open(nc);
  });
  after(async () => {
    await Promise.all(hosts.map((h) => h.close()));
    store.close();
    await t.cleanup();
  });

  it("runs effects only after the event is stored, and effects report back as inputs", async () => {
    const ref: AggregateRef = { kind: "command", id: "persist-first" };
    const observed: { seq: number; storedLast: number }[] = [];
    const host = newHost({
      ...quiet,
      dispatch: async (params: { attempt: number }, ctx) => {
        observed.push({ seq: ctx.seq, storedLast: await store.lastSeqOf(ctx.aggregate) });
        await ctx.offer(ctx.aggregate, { type: "CommandSent", data: { attempt: params.attempt } });
      },
    });
    const accepted = await host.send(ref, create());
    await host.idle();
    assert.equal(observed.length, 1);
    assert.equal(observed[0]?.seq, accepted.seq);
    assert.equal(observed[0]?.storedLast, accepted.seq, "the event was in the stream when the effect ran");
    assert.deepEqual(await typesOf(store, ref), ["CommandCreated", "CommandSent"]);
    assert.equal((await host.get(ref)).value, "sent");
  });

  it("a rejected input is an error and stores nothing", async () => {
    const ref: AggregateRef = { kind: "command", id: "reject-1" };
    const host = newHost();
    await host.send(ref, create());
    const last = await store.lastSeqOf(ref);
    await assert.rejects(
      host.send(ref, { type: "CommandAcked", data: { attempt: 1 } }),
      (e: unknown) =>
        e instanceof RejectedInputError && /in state "pending" does not accept CommandAcked/.test(e.message),
    );
    await assert.rejects(
      host.send({ kind: "command", id: "never-created" }, { type: "CommandSent", data: { attempt: 1 } }),
      RejectedInputError,
    );
    assert.equal(await store.lastSeqOf(ref), last);
    assert.equal(await store.lastSeqOf({ kind: "command", id: "never-created" }), 0);
  });

  it("invalid input names what is wrong and stores nothing", async () => {
    const host = newHost();
    const ref: AggregateRef = { kind: "command", id: "invalid-1" };
    await assert.rejects(
      host.send(ref, create({ action: "" })),
      (e: unknown) => e instanceof InvalidInputError && /data\.action/.test(e.message),
    );
    await assert.rejects(
      host.send(ref, { type: "Nope" as "CommandSent", data: { attempt: 1 } }),
      /unknown event type "Nope"/,
    );
    await assert.rejects(host.send({ kind: "agent", id: "x" }, create()), /no aggregate kind agent/);
    await assert.rejects(
      host.send({ kind: "command", id: "a b" }, create()),
      /aggregate id "a b" is invalid/,
    );
    assert.equal(await store.lastSeqOf(ref), 0);
  });

  it("a conflicting writer makes the host reload and re-decide", async () => {
    const ref: AggregateRef = { kind: "command", id: "occ-host" };
    const a = newHost();
    const b = newHost();
    await a.send(ref, create());
    await b.send(ref, { type: "CommandSent", data: { attempt: 1 } }); // b loads, appends; a's copy is now stale
    // a still thinks "pending": its CommandSent conflicts, it reloads, and now refuses it.
    await assert.rejects(a.send(ref, { type: "CommandSent", data: { attempt: 1 } }), RejectedInputError);
    // a's stale copy would refuse an ack; the host checks, reloads and accepts it.
    const acked = await a.send(ref, { type: "CommandAcked", data: { attempt: 1 } });
    assert.equal(acked.value, "acked");
    assert.deepEqual(await typesOf(store, ref), ["CommandCreated", "CommandSent", "CommandAcked"]);
  });

  it("creating an id that already exists conflicts, reloads, and is rejected", async () => {
    const ref: AggregateRef = { kind: "command", id: "exists-1" };
    await newHost().send(ref, create());
    await assert.rejects(newHost().send(ref, create()), RejectedInputError);
    assert.equal((await store.readAggregate(ref)).length, 1);
  });

  it("a retried input with the same id is answered like the first and stored once", async () => {
    const ref: AggregateRef = { kind: "command", id: "idem-1" };
    let dispatches = 0;
    const effects = { ...quiet, dispatch: () => void dispatches++ };
    const id = "018f0000-0000-7000-8000-000000000001";
    const first = await newHost(effects).send(ref, { ...create(), id });
    // Another host (say, after a crash) retries the same request with the same id.
    const again = await newHost(effects).send(ref, { ...create(), id });
    assert.equal(again.seq, first.seq);
    assert.equal(again.value, "pending");
    assert.equal((await store.readAggregate(ref)).length, 1);
    assert.equal(dispatches, 1);
  });

  it("writes snapshots every N events and loads snapshot + tail", async () => {
    const ref: AggregateRef = { kind: "command", id: "snap-1" };
    const host = newHost(quiet, { snapshotEvery: 2 });
    await host.send(ref, create());
    const sent = await host.send(ref, { type: "CommandSent", data: { attempt: 1 } });
    await host.idle();
    const snap = await snapshots.get(ref);
    assert.equal(snap?.seq, sent.seq);
    assert.equal(snap?.value, "sent");
    await host.send(ref, { type: "CommandAcked", data: { attempt: 1 } });
    // A fresh host must use the snapshot: mark it, then check the mark survives the tail fold.
    await snapshots.put(ref, {
      ...(snap as NonNullable<typeof snap>),
      context: { ...(snap?.context as object), action: "from-snapshot" },
    });
    const view = await newHost().get(ref);
    assert.equal(view.value, "acked");
    assert.equal((view.context as { action: string }).action, "from-snapshot");
    // A snapshot of another machine version is ignored: full replay.
    await snapshots.put(ref, { ...(snap as NonNullable<typeof snap>), version: 99 });
    assert.equal(((await newHost().get(ref)).context as { action: string }).action, "echo");
  });

  it("deadlines become persisted TimedOut inputs: retries, then fails", async () => {
    const ref: AggregateRef = { kind: "command", id: "timer-1" };
    const host = newHost();
    await host.send(ref, create({ maxRetries: 2, timeouts: { pending: 50, sent: 50, acked: 50 } }));
    await until(async () => (await host.get(ref)).status === "done");
    assert.deepEqual(await typesOf(store, ref), [
      "CommandCreated",
      "CommandTimedOut",
      "CommandTimedOut",
      "CommandTimedOut",
    ]);
    const view = await host.get(ref);
    assert.equal(view.value, "failed");
    assert.equal((view.context as { retries: number }).retries, 2);
  });

  it("after a restart, recover() rebuilds live actors and re-arms their deadlines", async () => {
    const ref: AggregateRef = { kind: "command", id: "recover-1" };
    const doneRef: AggregateRef = { kind: "command", id: "recover-done" };
    const first = newHost();
    // Long enough that the first host's timer cannot fire before its "crash", even on a loaded machine.
    await first.send(
      ref,
      create({ maxRetries: 0, timeouts: { pending: 10_000, sent: 2_000, acked: 2_000 } }),
    );
    await first.send(ref, { type: "CommandSent", data: { attempt: 1 } });
    await first.send(doneRef, create());
    await first.send(doneRef, { type: "CommandCancelled", data: { reason: "test" } });
    await first.close(); // "crash": its timers are gone
    const second = newHost();
    const live = await second.recover("command");
    assert.ok(live.some((v) => v.ref.id === "recover-1"));
    assert.ok(second.liveActors("command").some((a) => a.ref.id === "recover-1"));
    assert.ok(!second.liveActors("command").some((a) => a.ref.id === "recover-done"));
    await until(async () => (await second.get(ref)).status === "done");
    assert.deepEqual(await typesOf(store, ref), ["CommandCreated", "CommandSent", "CommandTimedOut"]);
  });

  it("keeps one aggregate sequential while different aggregates run concurrently", async () => {
    const host = newHost();
    const refs = Array.from({ length: 40 }, (_, i): AggregateRef => ({ kind: "command", id: `conc-${i}` }));
    await Promise.all(refs.map((r) => host.send(r, create())));
    // 3 inputs per aggregate fired at once: the queue keeps them in order, so all are accepted.
    await Promise.all(
      refs.flatMap((r) => [
        host.send(r, { type: "CommandSent", data: { attempt: 1 } }),
        host.send(r, { type: "CommandAcked", data: { attempt: 1 } }),
        host.send(r, { type: "CommandCompleted", data: {} }),
      ]),
    );
    for (const r of refs.slice(0, 5)) {
      assert.deepEqual(await typesOf(store, r), [
        "CommandCreated",
        "CommandSent",
        "CommandAcked",
        "CommandCompleted",
      ]);
    }
  });
});
