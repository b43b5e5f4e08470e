import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { isDeepStrictEqual } from "node:util";
import type { Sessions } from "../src/cp/session/dialer.ts";
import { LiveRegistry } from "../src/cp/session/live-registry.ts";
import { type IssuedCert, loadOrCreateCa } from "../src/identity/ca.ts";
import { agentUri, canonicalAgentName } from "../src/identity/names.ts";
import { CheckpointStore } from "../src/projections/checkpoints.ts";
import { foldWorldview, worldviewProjection } from "../src/projections/worldview.ts";
import type { StoredRecord } from "../src/store/records.ts";
import type { TestPeer } from "./helpers/session-peer.ts";
import { type SessionWorld, sessionWorld, until } from "./helpers/session-world.ts";
import { tempDir } from "./helpers/teardown.ts";

/**
 * The forged-identity table: each forgery, presented by a real agentd over real mTLS, is refused
 * with the one generic answer to the peer and its own reason in AgentUntrusted; the session
 * stays open (the control plane must still reach an untrusted agent) and is never handed out.
 */

const HOUR = 3_600_000;
const agent = (id: string) => ({ kind: "agent", id }) as const;
const session = (id: string) => ({ kind: "session", id }) as const;

describe("register cross-checks: the forged-identity table", () => {
  let w: SessionWorld;
  let sessions: Sessions;
  before(async () => {
    w = await sessionWorld();
    sessions = w.sessions();
  });

  /** Dials `id` and waits for its AgentUntrusted; checks everything a refusal must be. */
  async function refused(id: string, peer: TestPeer, reason: string): Promise<void> {
    sessions.dial(id, 1);
    await until(`AgentUntrusted for ${id}`, async () =>
      (await w.typesOf(agent(id))).includes("AgentUntrusted"),
    );
    const untrusted = (await w.eventsOf(agent(id))).find((e) => e.type === "AgentUntrusted");
    assert.equal(untrusted?.data.reason, reason, String(untrusted?.data.detail));
    assert.ok(!(await w.typesOf(agent(id))).includes("AgentRegistered"));
    await until("the refusal reached the peer", () => peer.received[0]?.at(-1)?.t === "refused");
    assert.deepEqual(peer.received[0]?.at(-1), { t: "refused", message: "registration rejected" });
    assert.equal(w.registry.registrationOf(id)?.state, "untrusted");
    assert.equal((await w.host.get(agent(id))).value, "recycling", "an untrusted agent is recycled");
    assert.equal(sessions.get(id), undefined);
    assert.deepEqual(await w.typesOf(session(id)), ["SessionConnecting", "SessionConnected"]);
    assert.ok(peer.sockets[0] && !peer.sockets[0].destroyed, "the untrusted session stays open");
  }

  const custom = (cn: string, uris: string[]): Promise<IssuedCert> =>
    w.ca.issueCustom({ cn, uris, eku: ["serverAuth"], validityMs: HOUR });

  it("wrong CN → cn_mismatch", async () => {
    const id = await w.newAgent();
    const peer = await w.peerFor(id, {
      cert: await custom(canonicalAgentName("p", "someone-else"), [agentUri(id)]),
    });
    await refused(id, peer, "cn_mismatch");
  });

  it("the SAN of another agent → san_mismatch", async () => {
    const id = await w.newAgent();
    const peer = await w.peerFor(id, {
      cert: await custom(canonicalAgentName("p", id), [agentUri("agent-other")]),
    });
    await refused(id, peer, "san_mismatch");
  });

  it("no agent SAN → no_san", async () => {
    const id = await w.newAgent();
    const peer = await w.peerFor(id, { cert: await custom(canonicalAgentName("p", id), []) });
    await refused(id, peer, "no_san");
  });

  it("a certificate from another CA → chain_invalid (and SessionConnected says why)", async () => {
    const id = await w.newAgent();
    const other = await loadOrCreateCa(tempDir("other-ca-"));
    const peer = await w.peerFor(id, { cert: await other.issueAgent({ poolId: "p", agentId: id }) });
    await refused(id, peer, "chain_invalid");
    const connected = (await w.eventsOf(session(id)))[1]?.data;
    assert.notEqual(connected?.chain, "ok");
    assert.equal(connected?.peerCN, canonicalAgentName("p", id));
  });

  it("a certificate registered to one agent, replayed on another → thumbprint_in_use", async () => {
    const first = await w.newAgent();
    const cert = await w.ca.issueAgent({ poolId: "p", agentId: first });
    await w.peerFor(first, { cert });
    sessions.dial(first, 1);
    await until("first registered", () => w.registry.registrationOf(first)?.state === "registered");
    const second = await w.newAgent();
    const peer = await w.peerFor(second, { cert });
    await refused(second, peer, "thumbprint_in_use");
  });

  it("another certificate for an agent registered this generation → cert_thumbprint_mismatch at hello", async () => {
    const id = await w.newAgent();
    const original = await w.peerFor(id);
    const own = w.sessions();
    own.dial(id, 1);
    await until("registered", () => w.registry.registrationOf(id)?.state === "registered");
    await own.drop(id);
    await original.close();
    const peer = await w.peerFor(id); // a freshly issued, valid certificate for the same agent
    sessions.dial(id, 1);
    await until("untrusted", async () => (await w.typesOf(agent(id))).includes("AgentUntrusted"));
    const untrusted = (await w.eventsOf(agent(id))).find((e) => e.type === "AgentUntrusted");
    assert.equal(untrusted?.data.reason, "cert_thumbprint_mismatch");
    assert.deepEqual(
      peer.received[0]?.map((m) => m.t),
      ["hello", "refused"],
    );
  });

  it("the runtime puts the agent at another address than the peer's → address_mismatch", async () => {
    const id = await w.newAgent();
    const peer = await w.peerFor(id);
    const real = w.targets.get(id)!;
    let asked = 0;
    const moving = w.sessions({
      resolve: async (agentId) => {
        if (agentId !== id) return w.targets.get(agentId) ?? null;
        // Dialled where it was; by register time the runtime says it is elsewhere.
        return ++asked === 1 ? real : { ...real, address: "127.0.0.1:9" };
      },
    });
    moving.dial(id, 1);
    await until("untrusted", async () => (await w.typesOf(agent(id))).includes("AgentUntrusted"));
    const untrusted = (await w.eventsOf(agent(id))).find((e) => e.type === "AgentUntrusted");
    assert.equal(untrusted?.data.reason, "address_mismatch");
    assert.deepEqual(peer.received[0]?.at(-1), { t: "refused", message: "registration rejected" });
  });

  it("instance labels of another pool → label_mismatch", async () => {
    const id = await w.newAgent();
    const peer = await w.peerFor(id);
    const t = w.targets.get(id)!;
    w.targets.set(id, { ...t, labels: { ...t.labels, poolId: "q" } });
    await refused(id, peer, "label_mismatch");
  });

  it("two agents at one address → ambiguous_address", async () => {
    const id = await w.newAgent();
    const peer = await w.peerFor(id);
    const stale = await w.newAgent();
    w.targets.set(stale, { address: peer.address, labels: { poolId: "p", agentId: stale, generation: 1 } });
    sessions.dial(stale, 1); // reaches the other agent's agentd: its SAN is not the stale agent's
    await until("stale untrusted", async () => (await w.typesOf(agent(stale))).includes("AgentUntrusted"));
    const staleVerdict = (await w.eventsOf(agent(stale))).find((e) => e.type === "AgentUntrusted");
    assert.equal(staleVerdict?.data.reason, "san_mismatch");
    sessions.dial(id, 1);
    await until("untrusted", async () => (await w.typesOf(agent(id))).includes("AgentUntrusted"));
    const untrusted = (await w.eventsOf(agent(id))).find((e) => e.type === "AgentUntrusted");
    assert.equal(untrusted?.data.reason, "ambiguous_address");
  });

  it("a register with empty fields is invalid input, refused before anything else → bad_register", async () => {
    const id = await w.newAgent();
    const cert = await w.ca.issueAgent({ poolId: "p", agentId: id });
    const peer = await w.peerFor(id, { cert, poolId: "" });
    await refused(id, peer, "bad_register");
  });

  it("a peer that never sends register → register_timeout", async () => {
    const id = await w.newAgent();
    const peer = await w.peerFor(id, { stallRegister: true });
    const impatient = w.sessions({ options: { registerTimeoutMs: 100, handshakeTimeoutMs: 5_000 } });
    impatient.dial(id, 1);
    await until("untrusted", async () => (await w.typesOf(agent(id))).includes("AgentUntrusted"));
    const untrusted = (await w.eventsOf(agent(id))).find((e) => e.type === "AgentUntrusted");
    assert.equal(untrusted?.data.reason, "register_timeout");
    assert.deepEqual(
      peer.received[0]?.map((m) => m.t),
      ["hello", "register-required", "refused"],
    );
  });

  it("the registry the dialer reads is what a rebuild from the stream gives", async () => {
    const rebuilt = new LiveRegistry();
    await rebuilt.rebuild(w.store);
    const ids = [...Array(40).keys()].map((i) => `agent-${i}`);
    // …and what the daemon's worldview holds, loaded instead of read again.
    const records = [];
    for await (const batch of w.store.read()) records.push(...batch);
    const worldview = foldWorldview(records);
    const loaded = new LiveRegistry();
    loaded.load(worldview.registry, worldview.lastSeq);
    for (const id of ids) {
      assert.deepEqual(rebuilt.registrationOf(id), w.registry.registrationOf(id), id);
      assert.deepEqual(loaded.registrationOf(id), w.registry.registrationOf(id), id);
    }
    assert.ok(ids.some((id) => w.registry.registrationOf(id)?.state === "registered"));
    assert.ok(ids.some((id) => w.registry.registrationOf(id)?.state === "untrusted"));
  });

  it("a rebuild starts from the worldview's checkpoint and folds only the agent events after it", async () => {
    const records: StoredRecord[] = [];
    for await (const batch of w.store.read()) records.push(...batch);
    const ids = [...Array(40).keys()].map((i) => `agent-${i}`);
    const checkpoints = await CheckpointStore.open(w.store.nc, { bucket: `registry-cp-${process.pid}` });
    const { name, version } = worldviewProjection;
    const rebuildFrom = async (upTo: number, seq: number) => {
      const state = foldWorldview(records.slice(0, upTo));
      assert.equal(await checkpoints.put(name, { seq, version, state }), "written");
      const r = new LiveRegistry();
      await r.rebuild(w.store, checkpoints);
      return r;
    };
    const half = Math.floor(records.length / 2);
    const fromMiddle = await rebuildFrom(half, records[half - 1]?.seq ?? 0);
    for (const id of ids) assert.deepEqual(fromMiddle.registrationOf(id), w.registry.registrationOf(id), id);
    // A checkpoint claiming the last sequence is taken at its word: nothing after it is read.
    const last = records.at(-1)?.seq ?? 0;
    const stale = await rebuildFrom(half, last);
    const differs = ids.filter(
      (id) => !isDeepStrictEqual(stale.registrationOf(id), w.registry.registrationOf(id)),
    );
    assert.ok(differs.length > 0, "the registry came from the checkpoint, not from the stream");
  });
});
