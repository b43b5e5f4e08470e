import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { before, describe, it } from "node:test";
import {
  checkRegistration,
  classifyAtHello,
  normalAddress,
  type RegisterFacts,
} from "../src/cp/session/register.ts";
import { loadOrCreateCa } from "../src/identity/ca.ts";
import { canonicalAgentName, thumbprintOf } from "../src/identity/names.ts";
import { tempDir } from "./helpers/teardown.ts";

/** The register checks as pure functions: the branches the TLS table (session-register.test.ts) does not reach. */

describe("register checks", () => {
  let facts: RegisterFacts;
  let thumbprint: string;
  before(async () => {
    const ca = await loadOrCreateCa(tempDir("checks-ca-"));
    const issued = await ca.issueAgent({ poolId: "p", agentId: "a1" });
    const cert = new X509Certificate(issued.certPem);
    thumbprint = thumbprintOf(cert.raw);
    facts = {
      dialled: { agentId: "a1", generation: 2 },
      peer: {
        cert,
        peerCN: canonicalAgentName("p", "a1"),
        thumbprint,
        chain: "ok",
        address: "::ffff:10.0.0.5:7070",
      },
      claims: { poolId: "p", agentId: "a1" },
      agent: { poolId: "p", generation: 2, live: true },
      runtime: { address: "10.0.0.5:7070", labels: { poolId: "p", agentId: "a1", generation: 2 } },
      sharers: [],
      registration: { agentId: "a1", generation: 2, state: "unregistered" },
      thumbprintOwner: undefined,
    };
  });

  const reasonOf = (over: Partial<RegisterFacts>) => {
    const v = checkRegistration({ ...facts, ...over });
    return v.ok ? "ok" : v.reason;
  };

  it("passes a genuine peer (an IPv4-mapped peer address is its IPv4 one)", () => {
    assert.deepEqual(checkRegistration(facts), {
      ok: true,
      thumbprint,
      peerCN: canonicalAgentName("p", "a1"),
      idempotent: false,
    });
  });

  it("the same certificate registered before is an idempotent welcome; another one is a replay", () => {
    const registered = { agentId: "a1", generation: 2, state: "registered" as const, thumbprint };
    const v = checkRegistration({ ...facts, registration: registered, thumbprintOwner: "a1" });
    assert.ok(v.ok && v.idempotent);
    assert.equal(
      reasonOf({ registration: { ...registered, thumbprint: "0".repeat(64) } }),
      "cert_thumbprint_mismatch",
    );
  });

  it("refuses an agent the host does not hold live, or whose generation is not the one dialled", () => {
    assert.equal(reasonOf({ agent: null }), "unknown_agent");
    assert.equal(reasonOf({ agent: { poolId: "p", generation: 2, live: false } }), "unknown_agent");
    assert.equal(reasonOf({ runtime: null }), "unknown_agent");
    assert.equal(reasonOf({ agent: { poolId: "p", generation: 3, live: true } }), "label_mismatch");
    assert.equal(
      reasonOf({
        runtime: { address: "10.0.0.5:7070", labels: { poolId: "p", agentId: "a1", generation: 1 } },
      }),
      "label_mismatch",
    );
  });

  it("checks invalid input first, then the certificate, then the world", () => {
    assert.equal(reasonOf({ claims: { poolId: "", agentId: "" }, agent: null }), "bad_register");
    assert.equal(
      reasonOf({ peer: { ...facts.peer, cert: null, thumbprint: null, peerCN: null }, agent: null }),
      "no_peer_cert",
    );
    assert.equal(
      reasonOf({ peer: { ...facts.peer, chain: "UNABLE_TO_GET_ISSUER_CERT" }, agent: null }),
      "chain_invalid",
    );
    assert.equal(reasonOf({ thumbprintOwner: "a2", agent: null }), "thumbprint_in_use");
    assert.equal(reasonOf({ claims: { poolId: "p", agentId: "a2" } }), "san_mismatch");
    assert.equal(reasonOf({ claims: { poolId: "q", agentId: "a1" } }), "cn_mismatch");
    assert.equal(reasonOf({ peer: { ...facts.peer, address: "10.0.0.6:7070" } }), "address_mismatch");
    assert.equal(reasonOf({ sharers: ["a9"] }), "ambiguous_address");
  });

  it("classifies at hello against this generation's registration only", () => {
    const registered = { agentId: "a1", generation: 2, state: "registered" as const, thumbprint };
    assert.deepEqual(classifyAtHello(registered, 2, thumbprint), { kind: "welcome", thumbprint });
    assert.equal(classifyAtHello(registered, 2, "f".repeat(64)).kind, "untrusted");
    assert.equal(classifyAtHello(registered, 2, null).kind, "untrusted");
    assert.equal(classifyAtHello(registered, 3, thumbprint).kind, "register");
    assert.equal(classifyAtHello(undefined, 2, thumbprint).kind, "register");
    assert.equal(classifyAtHello({ ...registered, state: "untrusted" }, 2, thumbprint).kind, "register");
  });

  it("reads addresses in one form", () => {
    assert.equal(normalAddress("::ffff:127.0.0.1:80"), "127.0.0.1:80");
    assert.equal(normalAddress("[::1]:80"), "::1:80");
    assert.equal(normalAddress("10.0.0.1:80"), "10.0.0.1:80");
  });
});
