import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { encodeEvent } from "../src/codec/msgpack.ts";
import { createEvent } from "../src/events/catalogue.ts";
import type { AggregateRef } from "../src/events/envelope.ts";
import { uuidv7 } from "../src/events/id.ts";
import { EventStore } from "../src/store/event-store.ts";
import { KEY_FILE_ENV, loadOrCreateEventKey } from "../src/store/key-file.ts";
import { eventSubject } from "../src/store/subjects.ts";
import { corral } from "./helpers/cli.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";
import { SeededStream } from "./helpers/seeded-stream.ts";
import { tempDir } from "./helpers/teardown.ts";

/*
 * corral trace on a seeded stream whose answer is known: a request's chain, a lease it granted
 * (whose release, another request, brings its own chain), events that merely mention the request
 * (the raw prefilter lets them through; the trace must not take them), and a forged event that
 * claims to belong: listed as forged, never in the tree, nor what claims it as a cause.
 */

const T0 = Date.UTC(2026, 10, 23, 9, 0, 0);
const pool: AggregateRef = { kind: "pool", id: "tp" };
const a: AggregateRef = { kind: "agent", id: "tp-a" };
const b: AggregateRef = { kind: "agent", id: "tp-b" };
const lease = `tp-a.${uuidv7(T0 + 100)}`;

describe("corral trace: a request's chain, its lease, and what only claims to belong", () => {
  let t: TestNats;
  let nc: NatsConnection;
  let store: EventStore;
  let env: Record<string, string>;
  const seeded = new SeededStream(() => store);
  const { seq, ev } = seeded;
  const put = seeded.put.bind(seeded);

  before(async () => {
    t = await startTestNats();
    nc = await t.connect();
    const { key, file } = loadOrCreateEventKey(tempDir("trace-key-"));
    store = await EventStore.open(nc, { integrity: { key } });
    env = { NATS_URL: t.url, [KEY_FILE_ENV]: file };
    const leased = { leaseId: lease, poolId: "tp", holder: "ci", ttlMs: 60_000, expiresAt: T0 + 60_100 };
    await put("leased", a, "AgentLeased", leased, T0 + 100, { correlationId: "req-1" });
    // Another request whose holder names req-1: its bytes hold the needle, its envelope does not.
    const other = {
      leaseId: `tp-b.${uuidv7(T0 + 150)}`,
      poolId: "tp",
      holder: "req-1",
      ttlMs: 60_000,
      expiresAt: T0 + 60_150,
    };
    await put("mentions", b, "AgentLeased", other, T0 + 150, { correlationId: "req-9" });
    await put("spawned", pool, "PoolAgentSpawned", { agentId: "tp-c", reason: "warm" }, T0 + 200, {
      cause: "leased",
    });
    // Claims to be caused by the grant, in its chain: unmarked, so forged.
    const forged = createEvent(
      pool,
      "PoolAgentRetired",
      { agentId: "tp-a", reason: "scale-down" },
      {
        id: uuidv7(T0 + 250),
        at: T0 + 250,
        causationId: ev.leased?.id,
        correlationId: "req-1",
      },
    );
    nc.publish(eventSubject(pool), encodeEvent(forged));
    await nc.flush();
    seeded.stored("forged", pool, await store.lastSeq(), forged);
    // A real event naming the forged one as its cause (its own correlation): the chain stops there.
    await put("afterForged", pool, "PoolAgentRecycled", { agentId: "tp-b", reason: "max-leases" }, T0 + 300, {
      cause: "forged",
      correlationId: "req-3",
    });
    await put("released", a, "AgentReleased", { leaseId: lease }, T0 + 400, { correlationId: "req-2" });
    await put("recycled", pool, "PoolAgentRecycled", { agentId: "tp-a", reason: "max-leases" }, T0 + 500, {
      cause: "released",
    });
  });

  after(async () => {
    store.close();
    await t.cleanup();
  });

  type Node = { seq: number; event: { type: string }; children: Node[] };
  const shape = (n: Node): unknown[] => [n.seq, n.event.type, ...n.children.map(shape)];

  it("a correlation id: its chain and its lease's, the forged claimant listed apart", async () => {
    const r = await corral(["trace", "req-1", "--json"], env);
    assert.equal(r.code, 0, r.stderr);
    const tr = JSON.parse(r.stdout);
    assert.deepEqual((tr.roots as Node[]).map(shape), [
      [seq.leased, "AgentLeased", [seq.spawned, "PoolAgentSpawned"]],
      [seq.released, "AgentReleased", [seq.recycled, "PoolAgentRecycled"]],
    ]);
    assert.equal(tr.events, 4);
    assert.deepEqual(
      (tr.unreadable as { seq: number; reason: string }[]).map((u) => [u.seq, u.reason]),
      [[seq.forged, "forged"]],
    );

    const human = await corral(["trace", "req-1"], env);
    assert.equal(human.code, 0, human.stderr);
    assert.match(
      human.stdout,
      new RegExp(`not in the trace: seq ${seq.forged} on corral\\.evt\\.pool\\.tp: FORGED`),
    );
    const tree = human.stdout.split("\n").filter((l) => !l.startsWith("not in the trace"));
    assert.doesNotMatch(tree.join("\n"), /PoolAgentRetired/, "what the forged one claims is not in the tree");
  });

  it("an event id in the middle of a chain: its subtree, and the event that caused it looked up", async () => {
    const r = await corral(["trace", ev.spawned?.id as string], env);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split("\n");
    assert.equal(lines[0], `trace ${ev.spawned?.id} (event): 1 event on 1 aggregate`);
    assert.match(lines[1] as string, new RegExp(`^\\(caused by ${seq.leased} \\S+ agent/tp-a AgentLeased `));
    assert.match(lines[2] as string, new RegExp(`^${seq.spawned} \\S+ pool/tp PoolAgentSpawned `));
  });
});
