import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { CorralEvent } from "../src/events/catalogue.ts";
import { agentOfThumbprint, registrationOf, registrySlice } from "../src/projections/registry.ts";
import { eventsFor } from "./helpers/decider.ts";

const T1 = "a".repeat(64);
const T2 = "b".repeat(64);
const meta = { seq: 1, time: 0 };

function fold(events: unknown[]) {
  const s = registrySlice.init();
  for (const e of events) registrySlice.reduce(s, e as never, meta);
  return s;
}

const a = eventsFor({ kind: "agent", id: "a" });
const b = eventsFor({ kind: "agent", id: "b" });
const requested = (ev: typeof a) => ev("AgentRequested", { poolId: "p", runtime: "process", deadline: 1 }, 0);
const registered = (ev: typeof a, thumbprint: string, generation = 1) =>
  ev("AgentRegistered", { generation, thumbprint, peerCN: "x.p.agent.corral" }, 1);

describe("registry slice", () => {
  it("binds thumbprint ⇄ agent on AgentRegistered, both ways", () => {
    const s = fold([requested(a), registered(a, T1)]);
    assert.equal(registrationOf(s, "a")?.state, "registered");
    assert.equal(registrationOf(s, "a")?.thumbprint, T1);
    assert.equal(agentOfThumbprint(s, T1), "a");
  });

  it("a thumbprint bound to one agent is never bound to another (counted as ignored)", () => {
    const s = fold([requested(a), requested(b), registered(a, T1), registered(b, T1)]);
    assert.equal(agentOfThumbprint(s, T1), "a");
    assert.equal(registrationOf(s, "b")?.state, "unregistered");
    assert.equal(registrySlice.save(s, {}).ignored, 1);
  });

  it("untrusted keeps the reason and drops the binding; a later register clears it", () => {
    const untrusted = a(
      "AgentUntrusted",
      { generation: 1, reason: "cert_thumbprint_mismatch", detail: "d" },
      2,
    );
    const s = fold([requested(a), registered(a, T1), untrusted]);
    assert.deepEqual(
      { state: registrationOf(s, "a")?.state, reason: registrationOf(s, "a")?.reason },
      { state: "untrusted", reason: "cert_thumbprint_mismatch" },
    );
    assert.equal(agentOfThumbprint(s, T1), undefined);
    registrySlice.reduce(s, registered(a, T2) as CorralEvent as never, meta);
    assert.equal(registrationOf(s, "a")?.state, "registered");
    assert.equal(registrationOf(s, "a")?.reason, undefined);
  });

  for (const [name, end] of [
    ["a new generation", a("AgentRecycled", { generation: 2, deadline: 5 }, 3)],
    ["AgentStopped", a("AgentStopped", {}, 3)],
    ["AgentFailed", a("AgentFailed", { phase: "ready", code: "died", message: "" }, 3)],
  ] as const) {
    it(`${name} evicts the registration and frees the thumbprint`, () => {
      const s = fold([requested(a), registered(a, T1), end]);
      assert.equal(agentOfThumbprint(s, T1), undefined);
      assert.notEqual(registrationOf(s, "a")?.state, "registered");
      registrySlice.reduce(s, requested(b) as never, meta);
      registrySlice.reduce(s, registered(b, T1) as never, meta);
      assert.equal(agentOfThumbprint(s, T1), "b");
    });
  }

  it("a verdict for an older generation changes nothing", () => {
    const s = fold([
      requested(a),
      a("AgentRecycled", { generation: 2, deadline: 5 }, 3),
      registered(a, T1, 1),
    ]);
    assert.deepEqual(registrationOf(s, "a"), { agentId: "a", generation: 2, state: "unregistered" });
    assert.equal(registrySlice.save(s, {}).ignored, 1);
  });

  it("saves canonical plain data and loads it back to the same state", () => {
    const untrusted = b("AgentUntrusted", { generation: 1, reason: "label_mismatch", detail: "" }, 2);
    const s = fold([requested(b), requested(a), registered(a, T1), untrusted]);
    const view = registrySlice.save(s, {});
    assert.deepEqual(
      view.agents.map((r) => r.agentId),
      ["a", "b"],
    );
    assert.equal(view.registered, 1);
    assert.equal(view.untrusted, 1);
    const back = registrySlice.load(structuredClone(view));
    assert.deepEqual(registrySlice.save(back, {}), view);
    assert.equal(agentOfThumbprint(back, T1), "a");
    assert.throws(() => registrySlice.load({} as never), /not a registry view/);
  });
});
