import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { getShortestPaths } from "@xstate/graph";
import type { SnapshotFrom } from "xstate";
import { backoffSchedule, DIAL_BACKOFF, mulberry32 } from "../../machines/backoff.ts";
import { sessionAggregate, sessionMachine } from "../../machines/session.ts";
import type { Envelope } from "../../src/events/envelope.ts";
import { eventsFor, fold, given } from "../helpers/decider.ts";

const ref = { kind: "session", id: "a1" } as const;
const T = 1_000_000;
const peer = { peerCN: "a1.p.agent.corral", thumbprint: "ab".repeat(32), chain: "ok" };

function connected() {
  const ev = eventsFor(ref);
  const h = [
    ev("SessionConnecting", { generation: 1, address: "127.0.0.1:7000", seed: 42 }, T),
    ev("SessionConnected", { generation: 1, attempts: 2, ...peer }, T + 1),
  ];
  return { ev, h };
}

describe("session machine", () => {
  it("idle → connecting → connected records the cycle and the peer as seen", () => {
    const { ev, h } = connected();
    given(sessionMachine, [])
      .when(h[0]!)
      .thenState("connecting", { generation: 1, address: "127.0.0.1:7000", seed: 42, cycles: 1 }, []);
    given(sessionMachine, h.slice(0, 1))
      .when(h[1]!)
      .thenState("connected", { attempts: 2, ...peer });
    given(sessionMachine, [])
      .when(ev("SessionConnected", { generation: 1, attempts: 1, ...peer }, T))
      .thenRejected();
  });

  it("connected → broken → connecting again (a re-dial of the same generation)", () => {
    const { ev, h } = connected();
    const broken = ev("SessionBroken", { generation: 1, reason: "peer_closed" }, T + 2);
    given(sessionMachine, h).when(broken).thenState("broken", { reason: "peer_closed", peerCN: peer.peerCN });
    given(sessionMachine, [...h, broken])
      .when(ev("SessionConnecting", { generation: 1, address: "127.0.0.1:7000", seed: 7 }, T + 3))
      .thenState("connecting", { seed: 7, cycles: 2, peerCN: null, thumbprint: null, reason: null });
  });

  it("fails on gave_up while connecting and fd-leak-ceiling later; a later dial starts again", () => {
    const { ev, h } = connected();
    const gaveUp = ev("SessionFailed", { generation: 1, reason: "gave_up", attempts: 9 }, T + 1);
    given(sessionMachine, h.slice(0, 1)).when(gaveUp).thenState("failed", { reason: "gave_up", attempts: 9 });
    given(sessionMachine, h)
      .when(ev("SessionFailed", { generation: 1, reason: "fd-leak-ceiling", attempts: 5 }, T + 2))
      .thenState("failed", { reason: "fd-leak-ceiling" });
    given(sessionMachine, [h[0]!, gaveUp])
      .when(ev("SessionConnecting", { generation: 1, address: "127.0.0.1:7000", seed: 8 }, T + 3))
      .thenState("connecting", { cycles: 2, reason: null });
  });

  it("a SessionConnecting of a newer generation starts afresh; an older one and stale facts are refused", () => {
    const { ev, h } = connected();
    given(sessionMachine, h)
      .when(ev("SessionConnecting", { generation: 2, address: "127.0.0.1:7100", seed: 3 }, T + 5))
      .thenState("connecting", {
        generation: 2,
        cycles: 1,
        attempts: 0,
        peerCN: null,
        address: "127.0.0.1:7100",
      });
    const gen2 = [
      ...h,
      ev("SessionConnecting", { generation: 2, address: "127.0.0.1:7100", seed: 3 }, T + 5),
    ];
    given(sessionMachine, gen2)
      .when(ev("SessionConnecting", { generation: 1, address: "127.0.0.1:7000", seed: 4 }, T + 6))
      .thenRejected();
    given(sessionMachine, gen2)
      .when(ev("SessionConnected", { generation: 1, attempts: 1, ...peer }, T + 6))
      .thenRejected();
    given(sessionMachine, gen2)
      .when(ev("SessionFailed", { generation: 1, reason: "gave_up", attempts: 1 }, T + 6))
      .thenRejected();
  });

  it("a restart's dial is accepted over a stream that still says connected", () => {
    const { ev, h } = connected();
    given(sessionMachine, h)
      .when(ev("SessionConnecting", { generation: 1, address: "127.0.0.1:7000", seed: 9 }, T + 9))
      .thenState("connecting", { cycles: 2 });
  });

  it("has no effects, deadlines or resumes (the dialer is the actor)", () => {
    const { h } = connected();
    assert.deepEqual(sessionAggregate.effects, []);
    assert.equal(sessionAggregate.timer, undefined);
    assert.equal(fold(sessionMachine, h).value, "connected");
  });
});

describe("backoff schedule", () => {
  it("is the same for the same seed: the exact waits of seed 42", () => {
    const waits = backoffSchedule(42);
    assert.deepEqual(waits, backoffSchedule(42));
    // Recomputed by hand from mulberry32(42): wait i = floor(r_i * min(10 000, 500·2^i)).
    const r = mulberry32(42);
    const expected: number[] = [];
    let total = 0;
    for (let i = 0; ; i++) {
      const w = Math.max(1, Math.floor(r() * Math.min(10_000, 500 * 2 ** i)));
      if (total + w > 60_000) break;
      total += w;
      expected.push(w);
    }
    assert.deepEqual(waits, expected);
    assert.deepEqual(waits, WAITS_OF_42);
  });

  it("keeps each wait under its ceiling, the total under the give-up time, and differs by seed", () => {
    for (const seed of [0, 1, 42, 0xffffffff]) {
      const waits = backoffSchedule(seed);
      waits.forEach((w, i) => {
        assert.ok(w >= 1 && w < Math.min(10_000, 500 * 2 ** i) + 1, `wait ${i} = ${w}`);
      });
      assert.ok(waits.reduce((a, b) => a + b, 0) <= 60_000);
      assert.ok(waits.length >= 6, `seed ${seed}: only ${waits.length} waits`);
    }
    assert.notDeepEqual(backoffSchedule(1), backoffSchedule(2));
  });

  it("takes its constants as options and refuses nonsense", () => {
    const waits = backoffSchedule(5, { startMs: 10, capMs: 20, giveUpMs: 100 });
    assert.ok(waits.every((w) => w < 20));
    assert.ok(waits.reduce((a, b) => a + b, 0) <= 100);
    assert.deepEqual(backoffSchedule(5, { ...DIAL_BACKOFF, giveUpMs: 0 }), []);
    assert.throws(() => backoffSchedule(5, { startMs: 0, capMs: 1, giveUpMs: 1 }), /startMs/);
  });
});

/** mulberry32(42)'s draws start 0.6011…, 0.4482…, 0.8524…: pinned so a changed generator or formula shows. */
const WAITS_OF_42 = [300, 448, 1704, 2678, 1398, 5265, 2732, 6247, 8654, 4723, 2499, 8820, 7457, 3070, 1972];

/** Inputs built from the current state: this generation's facts, the next one's dial, a stale one. */
function samples(s: SnapshotFrom<typeof sessionMachine>): Envelope[] {
  const g = Math.max(1, s.context.generation);
  const mk = (type: string, data: unknown): Envelope => ({
    id: type,
    type,
    v: 1,
    aggregate: ref,
    at: T,
    data,
  });
  return [
    // Bounded: every re-dial adds a cycle.
    ...(s.context.cycles < 3
      ? [mk("SessionConnecting", { generation: g, address: "127.0.0.1:7000", seed: 1 })]
      : []),
    ...(g < 3 ? [mk("SessionConnecting", { generation: g + 1, address: "127.0.0.1:7001", seed: 2 })] : []),
    mk("SessionConnected", { generation: g, attempts: 1, ...peer }),
    mk("SessionBroken", { generation: g, reason: "peer_closed" }),
    mk("SessionFailed", { generation: g, reason: "gave_up", attempts: 3 }),
    ...(g > 1 ? [mk("SessionConnected", { generation: g - 1, attempts: 1, ...peer })] : []),
  ];
}

describe("session machine (model-based paths)", () => {
  it("reaches every state; a new cycle forgets the last peer; a replay of each path gives its state", () => {
    const paths = getShortestPaths(sessionMachine, {
      // biome-ignore lint/suspicious/noExplicitAny: graph options are typed for machine events, ours are envelopes
      events: samples as any,
      limit: 2_000,
      serializeState: (s) => JSON.stringify([s.value, s.context]),
    });
    const values = new Set<unknown>(paths.map((p) => p.state.value));
    for (const v of ["idle", "connecting", "connected", "broken", "failed"])
      assert.ok(values.has(v), `unreachable: ${v}`);
    for (const p of paths) {
      const { value, context: c } = p.state;
      // A cycle forgets the last peer; a failure after connecting (fd-leak-ceiling) keeps it.
      if (value === "idle" || value === "connecting") assert.equal(c.peerCN, null);
      if (value === "connected" || value === "broken") assert.notEqual(c.peerCN, null);
      assert.equal(c.reason !== null, value === "broken" || value === "failed");
      // Replaying the path's events gives the same state.
      assert.deepEqual(
        fold(
          sessionMachine,
          p.steps.map((st) => st.event as unknown as Envelope),
        ).context,
        c,
      );
    }
  });
});
