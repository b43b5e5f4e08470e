import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { leaseAggregate, leaseMachine } from "../../machines/lease.ts";
import { eventsFor, fold, given } from "../helpers/decider.ts";

const ref = { kind: "lease", id: "L1" } as const;
const T = 5_000_000;

describe("lease machine", () => {
  const ev = eventsFor(ref);
  const granted = ev(
    "LeaseGranted",
    { poolId: "p", agentId: "a", holder: "me", ttlMs: 1_000, expiresAt: T + 1_000 },
    T,
  );

  it("granted with a TTL; renew extends it (never shortens)", () => {
    given(leaseMachine, [])
      .when(granted)
      .thenState("granted", { expiresAt: T + 1_000, holder: "me" });
    given(leaseMachine, [granted])
      .when(ev("LeaseRenewed", { expiresAt: T + 2_000 }, T + 500))
      .thenState("granted", { expiresAt: T + 2_000 });
    given(leaseMachine, [granted])
      .when(ev("LeaseRenewed", { expiresAt: T + 900 }, T + 500))
      .thenRejected();
  });

  it("expires at its deadline and asks for the agent to be recycled; stale timers are rejected", () => {
    given(leaseMachine, [granted])
      .when(ev("LeaseExpired", { deadline: T + 1_000 }, T + 1_000))
      .thenState("expired", { endReason: "expired" }, ["recycleAgent"]);
    const renewed = ev("LeaseRenewed", { expiresAt: T + 3_000 }, T + 900);
    given(leaseMachine, [granted, renewed])
      .when(ev("LeaseExpired", { deadline: T + 1_000 }, T + 1_000))
      .thenRejected();
  });

  it("released or revoked ends it; nothing after that", () => {
    const rel = ev("LeaseReleased", {}, T + 10);
    given(leaseMachine, [granted])
      .when(rel)
      .thenState("released", { endedAt: T + 10 });
    given(leaseMachine, [granted, rel])
      .when(ev("LeaseRenewed", { expiresAt: T + 9_000 }, T + 11))
      .thenRejected();
    given(leaseMachine, [granted])
      .when(ev("LeaseRevoked", { reason: "pool closed" }, T + 10))
      .thenState("revoked", { endReason: "pool closed" });
  });

  it("its timer is the expiry while granted, none after", () => {
    assert.equal(leaseAggregate.timer?.(fold(leaseMachine, [granted]))?.at, T + 1_000);
    assert.equal(leaseAggregate.timer?.(fold(leaseMachine, [granted, ev("LeaseReleased", {}, T + 1)])), null);
  });
});
