import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import { hashLeaseToken, leaseTokenMatches, newLeaseToken } from "../src/cp/pool/lease-token.ts";
import { AgentLeased } from "../src/events/agent.ts";

describe("lease tokens (src/cp/pool/lease-token.ts)", () => {
  it("32 random bytes in base64url, and the SHA-256 the event keeps", () => {
    const a = newLeaseToken();
    const b = newLeaseToken();
    assert.match(a.token, /^[A-Za-z0-9_-]{43}$/);
    assert.notEqual(a.token, b.token);
    assert.equal(a.hash, createHash("sha256").update(a.token).digest("base64url"));
    assert.equal(hashLeaseToken(a.token), a.hash);
    const data = { leaseId: "x.01943b1e-7a00-7000-8000-000000000001", poolId: "p", ttlMs: 1, expiresAt: 2 };
    assert.equal(AgentLeased.schema.safeParse({ ...data, tokenHash: a.hash }).success, true);
    assert.equal(AgentLeased.schema.safeParse({ ...data, tokenHash: a.token.slice(1) }).success, false);
  });

  it("only the token itself matches: not another, not its hash, not empty; no hash matches nothing", () => {
    const { token, hash } = newLeaseToken();
    assert.equal(leaseTokenMatches(token, hash), true);
    assert.equal(leaseTokenMatches(newLeaseToken().token, hash), false);
    assert.equal(leaseTokenMatches(hash, hash), false);
    assert.equal(leaseTokenMatches("", hash), false);
    assert.equal(leaseTokenMatches(`${token}x`, hash), false);
    assert.equal(leaseTokenMatches(token, undefined), false);
    assert.equal(leaseTokenMatches(token, "short"), false);
  });
});
