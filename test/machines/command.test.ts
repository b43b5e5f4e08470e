import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { getShortestPaths, getSimplePaths } from "@xstate/graph";
import type { SnapshotFrom } from "xstate";
import { commandAggregate, commandMachine } from "../../machines/command.ts";
import type { Envelope } from "../../src/events/envelope.ts";
import { eventsFor, fold, given } from "../helpers/decider.ts";

const ref = { kind: "command", id: "c1" } as const;
const T0 = 1_000_000;

function history() {
  const ev = eventsFor(ref);
  const created = ev(
    "CommandCreated",
    {
      agentId: "a1",
      action: "run",
      payload: { x: 1 },
      maxRetries: 1,
      timeouts: { pending: 100, sent: 200, acked: 300 },
    },
    T0,
  );
  return { ev, created };
}

describe("command machine (given / when / then)", () => {
  it("CommandCreated → pending, dispatches attempt 1 with a pending deadline", () => {
    const { created } = history();
    const { actions } = given(commandMachine, [])
      .when(created)
      .thenState("pending", { attempt: 1, retries: 0, deadline: T0 + 100, createdAt: T0 }, ["dispatch"]);
    assert.deepEqual(actions[0]?.params, { agentId: "a1", action: "run", payload: { x: 1 }, attempt: 1 });
  });

  it("a second CommandCreated is rejected", () => {
    const { ev, created } = history();
    given(commandMachine, [created])
      .when(ev("CommandCreated", { agentId: "a1", action: "run" }, T0 + 1))
      .thenRejected();
  });

  it("happy path: sent → acked → completed, each arming its own deadline", () => {
    const { ev, created } = history();
    const sent = ev("CommandSent", { attempt: 1 }, T0 + 10);
    given(commandMachine, [created])
      .when(sent)
      .thenState("sent", { deadline: T0 + 10 + 200 }, []);
    const acked = ev("CommandAcked", { attempt: 1 }, T0 + 20);
    given(commandMachine, [created, sent])
      .when(acked)
      .thenState("acked", { deadline: T0 + 20 + 300 });
    given(commandMachine, [created, sent, acked])
      .when(ev("CommandCompleted", { result: { ok: true } }, T0 + 30))
      .thenState("completed", { deadline: null, finishedAt: T0 + 30, result: { ok: true } });
  });

  it("an ack for another attempt is stale and rejected", () => {
    const { ev, created } = history();
    const sent = ev("CommandSent", { attempt: 1 }, T0 + 10);
    given(commandMachine, [created, sent])
      .when(ev("CommandAcked", { attempt: 2 }, T0 + 20))
      .thenRejected();
  });

  it("timeout before the ack retries (dispatch again) until maxRetries, then fails", () => {
    const { ev, created } = history();
    const sent = ev("CommandSent", { attempt: 1 }, T0 + 10);
    const t1 = ev("CommandTimedOut", { deadline: T0 + 210 }, T0 + 210);
    given(commandMachine, [created, sent])
      .when(t1)
      .thenState("pending", { attempt: 2, retries: 1, deadline: T0 + 210 + 100 }, ["dispatch"]);
    // Retries exhausted (maxRetries 1): the next timeout fails the command.
    given(commandMachine, [created, sent, t1])
      .when(ev("CommandTimedOut", { deadline: T0 + 310 }, T0 + 310))
      .thenState("failed", { deadline: null, error: "not sent before the deadline" });
  });

  it("a timer for a deadline that is no longer armed is stale and rejected", () => {
    const { ev, created } = history();
    const sent = ev("CommandSent", { attempt: 1 }, T0 + 10);
    given(commandMachine, [created, sent])
      .when(ev("CommandTimedOut", { deadline: T0 + 100 }, T0 + 100))
      .thenRejected();
  });

  it("timeout after the ack fails without a second dispatch", () => {
    const { ev, created } = history();
    const h = [
      created,
      ev("CommandSent", { attempt: 1 }, T0 + 10),
      ev("CommandAcked", { attempt: 1 }, T0 + 20),
    ];
    given(commandMachine, h)
      .when(ev("CommandTimedOut", { deadline: T0 + 320 }, T0 + 320))
      .thenState("failed", { error: "no completion before the deadline" }, []);
  });

  it("cancel after sending tells the agent; final states accept nothing", () => {
    const { ev, created } = history();
    const sent = ev("CommandSent", { attempt: 1 }, T0 + 10);
    const cancel = ev("CommandCancelled", { reason: "user" }, T0 + 11);
    given(commandMachine, [created, sent])
      .when(cancel)
      .thenState("cancelled", { error: "user" }, ["cancelOnAgent"]);
    given(commandMachine, [created, sent, cancel])
      .when(ev("CommandAcked", { attempt: 1 }, T0 + 12))
      .thenRejected();
  });

  it("the aggregate's timer is the context deadline, and none when final", () => {
    const { ev, created } = history();
    const s = fold(commandMachine, [created]);
    assert.deepEqual(commandAggregate.timer?.(s), {
      at: T0 + 100,
      input: { type: "CommandTimedOut", data: { deadline: T0 + 100 } },
    });
    const done = fold(commandMachine, [created, ev("CommandCancelled", { reason: "x" }, T0 + 1)]);
    assert.equal(commandAggregate.timer?.(done), null);
  });
});

/** Every input that could plausibly arrive, built from the state so that guards can pass. */
function sampleEvents(s: SnapshotFrom<typeof commandMachine>): Envelope[] {
  const at = s.context.deadline ?? T0;
  const mk = (type: string, data: unknown): Envelope => ({
    id: `${type}-${at}`,
    type,
    v: 1,
    aggregate: ref,
    at,
    data,
  });
  return [
    mk("CommandCreated", {
      agentId: "a1",
      action: "run",
      payload: {},
      maxRetries: 2,
      timeouts: { pending: 100, sent: 200, acked: 300 },
    }),
    mk("CommandSent", { attempt: s.context.attempt }),
    mk("CommandAcked", { attempt: s.context.attempt }),
    mk("CommandAcked", { attempt: s.context.attempt + 1 }),
    mk("CommandCompleted", { result: 1 }),
    mk("CommandFailed", { error: "boom" }),
    mk("CommandTimedOut", { deadline: at }),
    mk("CommandTimedOut", { deadline: at - 1 }),
    mk("CommandCancelled", { reason: "stop" }),
  ];
}

describe("command machine (model-based paths from @xstate/graph)", () => {
  // biome-ignore lint/suspicious/noExplicitAny: graph options are typed for machine events, ours are envelopes
  const opts = { events: sampleEvents as any, limit: 5_000 };

  it("reaches every state, and nothing else", () => {
    const reached = new Set(getShortestPaths(commandMachine, opts).map((p) => JSON.stringify(p.state.value)));
    assert.deepEqual(
      [...reached].sort(),
      ["acked", "cancelled", "completed", "failed", "new", "pending", "sent"]
        .map((v) => JSON.stringify(v))
        .sort(),
    );
  });

  it("on every simple path: deadlines only in live states, attempt = retries + 1 ≤ maxRetries + 1, replay is deterministic", () => {
    const paths = getSimplePaths(commandMachine, opts);
    assert.ok(paths.length > 50, `expected many paths, got ${paths.length}`);
    for (const path of paths) {
      const events = path.steps
        .map((s) => s.event as unknown as Envelope)
        .filter((e) => e.type !== "xstate.init");
      const a = fold(commandMachine, events);
      const b = fold(commandMachine, events);
      assert.deepEqual({ v: a.value, c: a.context }, { v: b.value, c: b.context });
      assert.deepEqual(a.value, path.state.value);
      const c = a.context as SnapshotFrom<typeof commandMachine>["context"];
      if (a.status === "done") assert.equal(c.deadline, null);
      else if (a.value !== "new") assert.equal(typeof c.deadline, "number");
      if (a.value !== "new") {
        assert.equal(c.attempt, c.retries + 1);
        assert.ok(c.retries <= c.maxRetries);
      }
    }
  });
});
