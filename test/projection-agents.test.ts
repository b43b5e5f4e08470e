import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { agentNote, formatStatus } from "../src/cli/pool-format.ts";
import { decode, encode } from "../src/codec/msgpack.ts";
import type { DataInputOf, EventType } from "../src/events/catalogue.ts";
import type { Envelope } from "../src/events/envelope.ts";
import type { LiveAgent } from "../src/projections/agents.ts";
import { formatWorldview } from "../src/projections/format.ts";
import { foldWorldview, type Worldview, worldviewProjection } from "../src/projections/worldview.ts";
import type { StoredRecord } from "../src/store/records.ts";
import { eventsFor } from "./helpers/decider.ts";

/**
 * The agents slice's issue-9 fields, from a known event sequence: each live agent's session (the
 * session aggregate's state), registration (the verdict on its generation's certificate) and init
 * progress; the registered / untrusted totals; and how `corral worldview` and `corral status`
 * show them.
 */

const T0 = Date.UTC(2026, 0, 1);
const THUMB = (n: number) => n.toString(16).padStart(64, "0");

/** One agent's story, both aggregates (agent/<id>, session/<id>) in stream order. */
function story(id: string) {
  const agent = eventsFor({ kind: "agent", id });
  const session = eventsFor({ kind: "session", id });
  let at = T0;
  const events: Envelope[] = [];
  const push = <T extends EventType>(ref: "agent" | "session", type: T, data: DataInputOf<T>) => {
    events.push((ref === "agent" ? agent : session)(type, data, ++at));
    return api;
  };
  const api = {
    events,
    a: <T extends EventType>(type: T, data: DataInputOf<T>) => push("agent", type, data),
    s: <T extends EventType>(type: T, data: DataInputOf<T>) => push("session", type, data),
    /** requested → created → started: the instance runs, the session is next. */
    started() {
      return api
        .a("AgentRequested", { poolId: "web", runtime: "process", deadline: T0 + 60_000 })
        .a("AgentPortsAllocated", { generation: 1, ports: [] })
        .a("AgentCreated", { generation: 1, instanceId: `${id}-1` })
        .a("AgentStarted", { generation: 1 });
    },
    connected() {
      return api
        .s("SessionConnecting", { generation: 1, address: "127.0.0.1:7070", seed: 7 })
        .s("SessionConnected", { generation: 1, attempts: 1, peerCN: id, thumbprint: THUMB(1), chain: "ok" });
    },
  };
  return api;
}

function records(events: readonly Envelope[]): StoredRecord[] {
  return events.map(
    (event, i) =>
      ({ seq: i + 1, subject: `corral.evt.${event.aggregate.kind}.x`, time: T0 + i, event }) as StoredRecord,
  );
}

const fold = (events: readonly Envelope[]) => foldWorldview(records(events));

function live(w: Worldview, id: string): LiveAgent {
  const a = w.agents.live.find((x) => x.id === id);
  assert.ok(a, `${id} is live`);
  return a;
}

const STEPS = ["config", "git", "ssh", "post-init", "agent-ready"] as const;

describe("agents slice: session, registration, init", () => {
  it("follows one agent from its start through a lost session to ready", () => {
    const s = story("a1").started();
    let w = fold(s.events);
    assert.equal(live(w, "a1").state, "connecting");
    assert.equal(live(w, "a1").session, null);
    assert.deepEqual(live(w, "a1").registration, { state: "unregistered" });
    assert.deepEqual(live(w, "a1").init, { state: "pending" });

    s.connected().a("AgentRegistered", { generation: 1, thumbprint: THUMB(1), peerCN: "a1" });
    w = fold(s.events);
    assert.equal(live(w, "a1").state, "initializing");
    assert.deepEqual(live(w, "a1").session, { state: "connected", generation: 1 });
    assert.deepEqual(live(w, "a1").registration, { state: "registered" });
    assert.deepEqual(w.agents.byRegistration, { registered: 1, untrusted: 0, unregistered: 0 });

    s.a("InitStarted", { generation: 1, stepCount: 5, deadline: T0 + 900_000 });
    w = fold(s.events);
    assert.deepEqual(live(w, "a1").init, { state: "running", index: 0, of: 5 });
    assert.equal(live(w, "a1").deadline, T0 + 900_000, "the plan's deadline is armed");
    s.a("InitStepStarted", { generation: 1, name: "config", index: 0, of: 5 })
      .a("InitStepCompleted", { generation: 1, name: "config", index: 0, exitCode: 0, durationMs: 3 })
      .a("InitStepStarted", { generation: 1, name: "git", index: 1, of: 5 });
    w = fold(s.events);
    assert.deepEqual(live(w, "a1").init, { state: "running", step: "git", index: 1, of: 5 });
    assert.match(formatWorldview(w), /init 2\/5 git/);

    // The session breaks mid-git: the agent waits, initializing, for the next session's plan.
    s.s("SessionBroken", { generation: 1, reason: "peer_closed" });
    w = fold(s.events);
    assert.equal(live(w, "a1").state, "initializing");
    assert.deepEqual(live(w, "a1").session, { state: "broken", generation: 1, reason: "peer_closed" });
    assert.deepEqual(live(w, "a1").init, { state: "running", step: "git", index: 1, of: 5 });

    s.connected().a("InitStarted", { generation: 1, stepCount: 5, deadline: T0 + 900_000 });
    for (const [index, name] of STEPS.entries()) {
      s.a("InitStepStarted", { generation: 1, name, index, of: 5 }).a("InitStepCompleted", {
        generation: 1,
        name,
        index,
        exitCode: 0,
        durationMs: index === 0 ? 0 : 5,
        skipped: index === 0,
      });
    }
    s.a("InitCompleted", { generation: 1, durationMs: 900 });
    w = fold(s.events);
    const a1 = live(w, "a1");
    assert.equal(a1.state, "idle");
    assert.deepEqual(a1.init, { state: "completed" });
    assert.equal(a1.readyAt, s.events.at(-1)?.at);
    assert.equal(a1.deadline, null);
    assert.deepEqual(a1.session, { state: "connected", generation: 1 });
    assert.equal(w.agents.ignored, 0);
    assert.equal(w.agents.untracked, 0);
    assert.deepEqual(w.agents.pools, [
      { poolId: "web", recycles: 0, registered: 1, untrusted: 0, stopped: 0, failed: 0 },
    ]);
  });

  it("an untrusted agent is recycled with its reason shown; the next generation starts unregistered", () => {
    const s = story("u1").started().connected();
    s.a("AgentUntrusted", { generation: 1, reason: "cn_mismatch", detail: "CN is someone else's" });
    let w = fold(s.events);
    const u1 = live(w, "u1");
    assert.equal(u1.state, "recycling");
    assert.deepEqual(u1.registration, { state: "untrusted", reason: "cn_mismatch" });
    assert.deepEqual(w.agents.byRegistration, { registered: 0, untrusted: 1, unregistered: 0 });
    assert.equal(w.agents.pools[0]?.untrusted, 1);
    assert.match(formatWorldview(w), /UNTRUSTED: cn_mismatch/);

    s.a("AgentRecycled", { generation: 2, deadline: T0 + 90_000 });
    w = fold(s.events);
    assert.deepEqual(live(w, "u1").registration, { state: "unregistered" });
    assert.deepEqual(live(w, "u1").init, { state: "pending" });
    // The session still tells of generation 1 until the next dial names generation 2.
    assert.deepEqual(live(w, "u1").session, { state: "connected", generation: 1 });
    assert.equal(w.agents.pools[0]?.untrusted, 1, "lifetime count survives the recycle");
  });

  it("a failed init fails the agent, with the step and its stderr among the failures", () => {
    const s = story("f1").started().connected();
    s.a("AgentRegistered", { generation: 1, thumbprint: THUMB(2), peerCN: "f1" })
      .a("InitStarted", { generation: 1, stepCount: 2, deadline: T0 + 900_000 })
      .a("InitStepStarted", { generation: 1, name: "git", index: 0, of: 2 })
      .a("InitFailed", {
        generation: 1,
        step: "git",
        reason: "exit_code",
        detail: "exit code 128\nfatal: repository '/nope' does not exist",
      });
    const w = fold(s.events);
    assert.equal(w.agents.live.length, 0);
    assert.equal(w.agents.byState.failed, 1);
    assert.deepEqual(
      w.agents.failures.map((f) => [f.agentId, f.phase, f.code, f.message]),
      [
        [
          "f1",
          "initializing",
          "init_exit_code",
          "init step git failed: exit code 128\nfatal: repository '/nope' does not exist",
        ],
      ],
    );
  });

  it("events that do not fit are counted, never applied", () => {
    const s = story("x1").started();
    s.a("InitStarted", { generation: 1, stepCount: 1, deadline: T0 + 900_000 }) // not registered yet
      .a("AgentRegistered", { generation: 2, thumbprint: THUMB(3), peerCN: "x1" }) // another generation
      .s("SessionConnected", {
        generation: 1,
        attempts: 1,
        peerCN: null,
        thumbprint: null,
        chain: "no certs",
      }); // no dial
    const w = fold(s.events);
    assert.equal(live(w, "x1").state, "connecting");
    assert.equal(live(w, "x1").session, null);
    assert.equal(w.agents.ignored, 3);
    // A session of an agent the stream never requested is untracked.
    const other = story("ghost").s("SessionConnecting", { generation: 1, address: "h:1", seed: 1 });
    assert.equal(fold(other.events).agents.untracked, 1);
  });

  it("a checkpoint round trip keeps every field", () => {
    const s = story("c1").started().connected();
    s.a("AgentRegistered", { generation: 1, thumbprint: THUMB(4), peerCN: "c1" })
      .a("InitStarted", { generation: 1, stepCount: 3, deadline: T0 + 900_000 })
      .a("InitStepStarted", { generation: 1, name: "ssh", index: 1, of: 3 });
    const whole = fold(s.events);
    const state = worldviewProjection.load(decode(encode(whole)) as Worldview);
    assert.deepEqual(worldviewProjection.save(state), whole);
    assert.deepEqual(live(whole, "c1").registration, { state: "registered" });
    assert.deepEqual(live(whole, "c1").init, { state: "running", step: "ssh", index: 1, of: 3 });
  });
});

describe("corral status: the agent note", () => {
  const agent = { id: "a1", phase: "starting", generation: 1, ports: [], leasesServed: 0 };

  it("shows init progress, an untrusted verdict and a broken session", () => {
    const running = { state: "running", step: "git", index: 2, of: 5 };
    assert.equal(agentNote({ ...agent, init: running }), "init 3/5 git");
    assert.equal(agentNote({ ...agent, init: { state: "running", of: 5 } }), "init 0/5");
    assert.equal(
      agentNote({ ...agent, init: running, registration: { state: "untrusted", reason: "san_mismatch" } }),
      "UNTRUSTED: san_mismatch",
    );
    assert.equal(agentNote({ ...agent, session: "broken" }), "session broken");
    assert.equal(
      agentNote({ ...agent, init: { state: "completed" }, registration: { state: "registered" } }),
      "",
    );
    assert.equal(agentNote(agent), "", "an older daemon sends none of them");
  });

  it("puts the note at the end of the agent's row", () => {
    const text = formatStatus({
      pool: "web",
      state: "open",
      agents: [
        { ...agent, init: { state: "running", step: "git", index: 2, of: 5 } },
        {
          ...agent,
          id: "a2",
          phase: "recycling",
          registration: { state: "untrusted", reason: "cn_mismatch" },
        },
      ],
    });
    const rows = text.split("\n").filter((l) => /^\s+a\d/.test(l));
    assert.match(rows[0] ?? "", /^\s+a1\s+starting\s+1\s+-\s+0\s+init 3\/5 git$/);
    assert.match(rows[1] ?? "", /^\s+a2\s+recycling\s+1\s+-\s+0\s+UNTRUSTED: cn_mismatch$/);
  });
});
