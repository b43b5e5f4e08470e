import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { encode as msgpackEncode } from "@msgpack/msgpack";
import fc from "fast-check";
import { mixedHistory } from "../bench/mixed-history.ts";
import { type Msg, workload } from "../bench/rebuild.ts";
import { decode, decodeEvent, decodeEventView, encode, encodeEvent } from "../src/codec/msgpack.ts";
import { MsgpackCursor, MsgpackFormatError } from "../src/codec/msgpack-cursor.ts";
import type { CorralEvent } from "../src/events/catalogue.ts";
import { DecodeError } from "../src/events/errors.ts";
import { type AnyEventView, ReadPlan } from "../src/events/reads.ts";
import { worldviewProjection } from "../src/projections/worldview.ts";
import { type StoredRecord, toRecord } from "../src/store/records.ts";
import { makeEvent } from "./helpers/events.ts";

/** What decodeEventView should give for a whole event: its head, and of its data the fields read. */
function projected(full: CorralEvent, plan: ReadPlan): AnyEventView {
  const reads = plan.of(full.type);
  const all = full.data as Record<string, unknown>;
  const data = reads ? Object.fromEntries(reads.names.filter((n) => n in all).map((n) => [n, all[n]])) : {};
  return { type: full.type, v: full.v, aggregate: full.aggregate, at: full.at, data };
}

/** The outcome of a decode: the value, or the error's reason and message. */
function outcome<T>(f: () => T): { ok: T } | { reason: string; message: string } {
  try {
    return { ok: f() };
  } catch (err) {
    assert.ok(err instanceof DecodeError, `a decode threw ${err}`);
    return { reason: err.reason, message: err.message };
  }
}

const corpus: Msg[] = [...mixedHistory(4_000, { lanes: 50, pools: 3 }), ...workload(2_000)];
const plan = new ReadPlan({
  CommandCreated: ["agentId", "maxRetries"],
  AgentLeased: ["leaseId", "expiresAt"],
  PoolCreated: ["config"],
});
const at = { seq: 7, subject: "corral.evt.x.y" };

describe("MessagePack cursor", () => {
  const cursor = new MsgpackCursor((b) => decode(b));
  const value = fc.oneof(
    fc.jsonValue(),
    fc.uint8Array({ maxLength: 300 }),
    fc.double({ noNaN: true }),
    fc.maxSafeInteger(),
    fc.string({ minLength: 20, maxLength: 300 }), // str 8 / str 16, and the decoder's long path
    fc.array(fc.integer(), { minLength: 16, maxLength: 40 }), // array 16
    fc.dictionary(fc.string(), fc.boolean(), { minKeys: 16, maxKeys: 20 }), // map 16
  );

  it("steps over exactly one value, and reads it as @msgpack/msgpack does", () => {
    fc.assert(
      fc.property(value, (v) => {
        const bytes = msgpackEncode(v);
        cursor.reset(bytes);
        cursor.skip();
        assert.equal(cursor.pos, bytes.length);
        cursor.reset(bytes);
        // Both refuse the same values (a map key "__proto__"), or both give the same one.
        let expected: unknown;
        try {
          expected = decode(bytes);
        } catch (err) {
          assert.throws(() => cursor.value(), { message: (err as Error).message });
          return;
        }
        assert.deepEqual(cursor.value(), expected);
        assert.ok(cursor.done);
      }),
      { numRuns: 500 },
    );
  });

  it("refuses a value cut short, saying where", () => {
    fc.assert(
      fc.property(
        value.filter((v) => msgpackEncode(v).length > 1),
        fc.nat(),
        (v, cut) => {
          const bytes = msgpackEncode(v);
          cursor.reset(bytes.subarray(0, cut % bytes.length));
          assert.throws(() => cursor.skip(), MsgpackFormatError);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("refuses a byte that starts no value (0xc1), and a map key that is not a string", () => {
    cursor.reset(new Uint8Array([0xc1]));
    assert.throws(() => cursor.skip(), /0xc1 at 0 starts no MessagePack value/);
    cursor.reset(new Uint8Array([0x81, 0x01, 0x02])); // {1: 2}
    assert.equal(cursor.mapHeader(), 1);
    assert.throws(() => cursor.key([]), /a map key at byte 1 is not a string/);
  });
});

describe("an event as a reader that declared its reads gets it (decodeEventView)", () => {
  it("is decodeEvent's event less the ids, with only the fields read: for every event of a mixed stream", () => {
    const types = new Set<string>();
    for (const m of corpus) {
      const full = decodeEvent(m.bytes, at);
      types.add(full.type);
      assert.deepEqual(decodeEventView(m.bytes, plan, at), projected(full, plan));
    }
    assert.ok(types.size >= 20, `the corpus holds ${types.size} event types`);
  });

  it("on bytes changed at random: accepts what decodeEvent accepts, as it reads it; refuses with decodeEvent's own error", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...corpus.slice(0, 400)),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }),
        fc.nat({ max: 8 }),
        (m, changes, cut) => {
          const bytes = m.bytes.slice(0, m.bytes.length - (cut === 8 ? 3 : 0));
          for (const [i, b] of changes) bytes[i % bytes.length] = b;
          const full = outcome(() => decodeEvent(bytes, at));
          const view = outcome(() => decodeEventView(bytes, plan, at));
          if ("ok" in full) assert.deepEqual(view, { ok: projected(full.ok, plan) });
          // Refused: by decodeEvent, for the same reason in the same words.
          if (!("ok" in view)) assert.deepEqual(view, full);
        },
      ),
      { numRuns: 3_000 },
    );
  });

  it("checks the fields read, and only those: poison in a field no reader reads does not stop the event", () => {
    const ref = { kind: "command", id: "c1" } as const;
    const created = makeEvent(ref, "CommandCreated", { agentId: "agent-1", action: "npm test" });
    const unreadBad = encode({ ...created, data: { ...(created.data as object), payload: 5 } });
    assert.throws(() => decodeEvent(unreadBad, at), /data\.payload/);
    assert.deepEqual(decodeEventView(unreadBad, plan, at).data, { agentId: "agent-1", maxRetries: 3 });

    const readBad = encode({ ...created, data: { ...(created.data as object), agentId: "no spaces" } });
    const error = outcome(() => decodeEventView(readBad, plan, at));
    assert.deepEqual(
      error,
      outcome(() => decodeEvent(readBad, at)),
    );
    assert.equal((error as { reason: string }).reason, "invalid-data");
  });

  it("fills a read field's default as decodeEvent does, and gives a type nobody reads empty data", () => {
    const ref = { kind: "command", id: "c1" } as const;
    const created = makeEvent(ref, "CommandCreated", { agentId: "agent-1", action: "x" });
    const { maxRetries: _, ...withoutRetries } = created.data as Record<string, unknown>;
    const bytes = encode({ ...created, data: withoutRetries });
    assert.equal((decodeEventView(bytes, plan, at).data as { maxRetries: number }).maxRetries, 3);
    const sent = encodeEvent(makeEvent(ref, "CommandSent", { attempt: 2 }));
    assert.deepEqual(decodeEventView(sent, plan, at).data, {});
  });

  it("a plan refuses reads of a type or a field the catalogue does not have", () => {
    assert.throws(() => new ReadPlan({ Nope: ["x"] } as never), /reads of unknown event type Nope/);
    assert.throws(
      () => new ReadPlan({ CommandSent: ["attemptz"] } as never),
      /CommandSent has no field attemptz/,
    );
  });
});

describe("the worldview folded from its reads", () => {
  it("is the worldview folded from whole events, poison and all", () => {
    const poison = [
      new Uint8Array([0xc1]),
      encode({ hello: 1 }),
      corpus[5]?.bytes.subarray(0, 20) as Uint8Array,
    ];
    const bodies = corpus.map((m) => m.bytes);
    const stream = [...bodies.slice(0, 1_500), ...poison, ...bodies.slice(1_500)];
    const whole = worldviewProjection.init();
    const read = worldviewProjection.init();
    stream.forEach((m, i) => {
      const record: StoredRecord = toRecord(i + 1, "corral.evt.x.y", 1_000 + i, m);
      worldviewProjection.apply(whole, record);
      let event: AnyEventView | undefined;
      try {
        event = worldviewProjection.decode(m, { seq: i + 1 });
      } catch {}
      worldviewProjection.apply(read, event ? { ...record, event, error: undefined } : record);
    });
    const saved = worldviewProjection.save(read);
    assert.deepEqual(saved, worldviewProjection.save(whole));
    assert.equal(saved.totals.events, corpus.length);
    assert.equal(
      Object.values(saved.skipped).reduce((a, b) => a + b, 0),
      poison.length,
    );
  });
});
