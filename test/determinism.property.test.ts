import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { initialTransition, transition } from "xstate";
import { commandAggregate, commandMachine } from "../machines/command.ts";
import { step } from "../machines/step.ts";
import { decode, encode } from "../src/codec/msgpack.ts";
import { ActorHost, type AnyInput } from "../src/cp/actor-host.ts";
import { RejectedInputError } from "../src/cp/errors.ts";
import { ManualScheduler } from "../src/cp/manual-scheduler.ts";
import type { AggregateRef, Envelope } from "../src/events/envelope.ts";
import { EventStore } from "../src/store/event-store.ts";
import { SnapshotStore } from "../src/store/snapshots.ts";
import { eventsFor, fold } from "./helpers/decider.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";

/** Random command inputs, each valid on its own (the machine decides which ones it accepts). */
const arbInput: fc.Arbitrary<AnyInput> = fc.oneof(
  fc.record({
    type: fc.constant("CommandCreated"),
    data: fc.record({
      agentId: fc.constantFrom("a1", "a2"),
      action: fc.constantFrom("run", "stop"),
      payload: fc.dictionary(fc.string({ maxLength: 3 }), fc.integer()),
      maxRetries: fc.integer({ min: 0, max: 3 }),
      timeouts: fc.record({
        pending: fc.integer({ min: 1, max: 500 }),
        sent: fc.integer({ min: 1, max: 500 }),
        acked: fc.integer({ min: 1, max: 500 }),
      }),
    }),
  }),
  fc.record({
    type: fc.constantFrom("CommandSent", "CommandAcked"),
    data: fc.record({ attempt: fc.integer({ min: 1, max: 4 }) }),
  }),
  fc.record({
    type: fc.constant("CommandCompleted"),
    data: fc.record({ result: fc.option(fc.integer(), { nil: undefined }) }),
  }),
  fc.record({
    type: fc.constant("CommandFailed"),
    data: fc.record({ error: fc.constantFrom("boom", "exit 2") }),
  }),
  fc.record({ type: fc.constant("CommandCancelled"), data: fc.record({ reason: fc.constant("user") }) }),
  // Timeouts at plausible deadlines: the machine must reject every one that is not armed.
  fc.record({
    type: fc.constant("CommandTimedOut"),
    data: fc.record({ deadline: fc.integer({ min: 0, max: 3_000 }) }),
  }),
);

/** Inputs with increasing times; a TimedOut is aimed at the armed deadline half of the time. */
function toEvents(ref: AggregateRef, inputs: { input: AnyInput; dt: number; aim: boolean }[]): Envelope[] {
  const ev = eventsFor(ref);
  const out: Envelope[] = [];
  let at = 1_000;
  for (const { input, dt, aim } of inputs) {
    at += dt;
    let data = input.data as Record<string, unknown>;
    if (input.type === "CommandTimedOut" && aim) {
      const deadline = (fold(commandMachine, out).context as { deadline: number | null }).deadline;
      if (deadline !== null) {
        at = Math.max(at, deadline);
        data = { deadline };
      }
    }
    out.push(ev(input.type as "CommandSent", data as { attempt: number }, at));
  }
  return out;
}

const arbHistory = fc.array(
  fc.record({ input: arbInput, dt: fc.integer({ min: 0, max: 400 }), aim: fc.boolean() }),
  {
    maxLength: 25,
  },
);

/** What the host uses of an action (its `info` holds the scope's actor, which differs). */
const named = (actions: readonly { type: string; params?: unknown }[]) =>
  actions.map(({ type, params }) => ({ type, params }));

const view = (s: { value: unknown; context: unknown; status: string }) => ({
  value: s.value,
  context: s.context,
  status: s.status,
});

describe("determinism (fast-check)", () => {
  it("folding the same events twice gives identical snapshots", () => {
    fc.assert(
      fc.property(arbHistory, (h) => {
        const events = toEvents({ kind: "command", id: "p" }, h);
        assert.deepEqual(view(fold(commandMachine, events)), view(fold(commandMachine, events)));
      }),
      { numRuns: 500 },
    );
  });

  it("the host's step is xstate's transition: same snapshot, same actions, same rejections", () => {
    fc.assert(
      fc.property(arbHistory, (h) => {
        let s = initialTransition(commandMachine)[0];
        for (const e of toEvents({ kind: "command", id: "p" }, h)) {
          const [theirs, theirActions] = transition(commandMachine, s, e as never);
          const [ours, ourActions] = step(commandMachine, s, e as never);
          assert.equal(ours === s, theirs === s);
          assert.deepEqual([view(ours), named(ourActions)], [view(theirs), named(theirActions)]);
          s = theirs;
        }
      }),
      { numRuns: 300 },
    );
  });

  it("snapshot (persisted through msgpack) + tail equals the full fold, at every cut", () => {
    fc.assert(
      fc.property(arbHistory, fc.nat(), (h, cutSeed) => {
        const events = toEvents({ kind: "command", id: "p" }, h);
        const cut = events.length === 0 ? 0 : cutSeed % (events.length + 1);
        const head = fold(commandMachine, events.slice(0, cut));
        const persisted = decode(encode({ value: head.value, context: head.context })) as {
          value: unknown;
          context: unknown;
        };
        let s = commandMachine.resolveState(persisted as never);
        for (const e of events.slice(cut)) s = transition(commandMachine, s, e as never)[0];
        assert.deepEqual(view(s), view(fold(commandMachine, events)));
      }),
      { numRuns: 500 },
    );
  });
});

describe("determinism through the host and a real nats-server", () => {
  let t: TestNats;
  let store: EventStore;
  let snapshots: SnapshotStore;
  before(async () => {
    t = await startTestNats();
    const nc = await t.connect();
    store = await EventStore.open(nc);
    snapshots = await SnapshotStore.open(nc);
  });
  after(async () => {
    store.close();
    await t.cleanup();
  });

  it("what a host accepted, a fresh host rebuilds (snapshot + tail) and a pure fold of the stream reproduces", async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(arbHistory, fc.integer({ min: 1, max: 5 }), async (h, every) => {
        const ref: AggregateRef = { kind: "command", id: `prop-${run++}` };
        const scheduler = new ManualScheduler(1_000);
        const host = new ActorHost({
          store,
          snapshots,
          aggregates: [commandAggregate],
          effects: { command: { dispatch: () => {}, cancelOnAgent: () => {} } },
          snapshotEvery: every,
          scheduler,
          timers: false, // the inputs above already include timeouts; real timers would add more
        });
        for (const e of toEvents(ref, h)) {
          scheduler.advance(Math.max(0, e.at - scheduler.now()));
          try {
            await host.send(ref, {
              type: e.type as "CommandSent",
              data: e.data as { attempt: number },
              at: e.at,
            });
          } catch (err) {
            if (!(err instanceof RejectedInputError)) throw err;
          }
        }
        const live = await host.get(ref);
        await host.close();
        const stored = (await store.readAggregate(ref)).map((r) => r.event as Envelope);
        const pure = fold(commandMachine, stored);
        const rebuilt = await new ActorHost({
          store,
          snapshots,
          aggregates: [commandAggregate],
          effects: { command: { dispatch: () => {}, cancelOnAgent: () => {} } },
        }).get(ref);
        assert.deepEqual(view(rebuilt), view(pure));
        assert.deepEqual(view(live), view(pure));
        assert.equal(rebuilt.seq, live.seq);
      }),
      { numRuns: 25 },
    );
  });
});
