import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Encoder } from "@msgpack/msgpack";
import fc from "fast-check";
import { encode } from "../src/codec/msgpack.ts";
import { MsgpackWriter } from "../src/codec/msgpack-writer.ts";

/** The encoder src/codec/msgpack.ts falls back to, as it is configured there. */
const reference = new Encoder({ ignoreUndefined: true });
const ref = (v: unknown) => {
  try {
    return { bytes: Buffer.from(reference.encode(v)).toString("hex") };
  } catch (err) {
    return { error: (err as Error).message };
  }
};
const ours = (v: unknown) => {
  try {
    return { bytes: Buffer.from(encode(v)).toString("hex") };
  } catch (err) {
    return { error: (err as Error).message };
  }
};

const ascii = fc.string({
  unit: fc.integer({ min: 0, max: 0x7f }).map((c) => String.fromCharCode(c)),
  maxLength: 40,
});
/** Numbers at every boundary of MessagePack's integer forms, and floats. */
const number = fc.oneof(
  fc.constantFrom(
    0,
    -0,
    1,
    127,
    128,
    255,
    256,
    65_535,
    65_536,
    2 ** 32 - 1,
    2 ** 32,
    2 ** 53 - 1,
    2 ** 53,
    -1,
    -32,
    -33,
    -128,
    -129,
    -32_768,
    -32_769,
    -(2 ** 31),
    -(2 ** 31) - 1,
    -(2 ** 53) + 1,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    0.5,
    1e300,
  ),
  fc.integer({ min: -(2 ** 31) - 10, max: 2 ** 32 + 10 }),
  fc.maxSafeInteger(),
  fc.double(),
);
const plain = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    ascii,
    number,
    fc.boolean(),
    fc.constant(null),
    fc.constant(undefined),
    fc.array(tie("value"), { maxLength: 20 }),
    fc.dictionary(ascii, tie("value"), { maxKeys: 20 }),
  ),
})).value;
/** What only the full encoder writes: non-ASCII text, bytes, dates, bigints, odd objects. */
const other = fc.oneof(
  fc.string({ unit: "grapheme", maxLength: 10 }),
  fc.string({ unit: "binary", maxLength: 10 }),
  fc.uint8Array({ maxLength: 10 }),
  fc.date({ noInvalidDate: true }),
  fc.bigInt(),
  fc.constant(new Map([["a", 1]])),
  fc.constant(Object.create({ inherited: 1 })),
  fc.constant(Object.assign(Object.create(null), { a: 1, b: undefined })),
);
const mixed = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    plain,
    other,
    fc.array(tie("value"), { maxLength: 8 }),
    fc.dictionary(fc.oneof(ascii, fc.string({ unit: "grapheme", maxLength: 4 })), tie("value"), {
      maxKeys: 18,
    }),
  ),
})).value;

describe("MsgpackWriter (src/codec/msgpack-writer.ts)", () => {
  it("writes plain values byte for byte as @msgpack/msgpack, itself", () => {
    const writer = new MsgpackWriter();
    fc.assert(
      fc.property(plain, (v) => {
        const bytes = writer.write(v);
        assert.ok(bytes, "a plain value is the writer's own");
        assert.equal(Buffer.from(bytes).toString("hex"), ref(v).bytes);
      }),
      { numRuns: 3_000 },
    );
  });

  it("gives any value, and any error, exactly as @msgpack/msgpack does", () => {
    fc.assert(
      fc.property(mixed, (v) => assert.deepEqual(ours(v), ref(v))),
      { numRuns: 3_000 },
    );
  });

  it("maps of 16 entries and more, values past a slab, and nesting past the encoder's limit", () => {
    const wide = Object.fromEntries(
      Array.from({ length: 70_000 }, (_, i) => [`k${i}`, i % 3 ? i : undefined]),
    );
    const sixteen = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, i]));
    const fifteen = { ...sixteen, k15: undefined };
    const long = "x".repeat(70_000);
    let deep: unknown = 1;
    for (let i = 0; i < 100; i++) deep = [deep];
    for (const v of [wide, sixteen, fifteen, long, [long, long], deep, [deep]])
      assert.deepEqual(ours(v), ref(v));
    assert.match(ours([deep]).error ?? "", /Too deep/);
  });

  it("hands out bytes of their own: later writes, and writes it gives up on, leave earlier ones as they were", () => {
    const writer = new MsgpackWriter();
    const values = Array.from({ length: 2_000 }, (_, i) => ({ i, s: "y".repeat(i % 300) }));
    const out = values.map((v, i) => {
      // Every third value, first one the writer gives up on halfway (a non-ASCII string at its end).
      if (i % 3 === 0) assert.equal(writer.write({ ...v, last: "é" }), undefined);
      return writer.write(v) as Uint8Array;
    });
    for (const [i, bytes] of out.entries())
      assert.equal(Buffer.from(bytes).toString("hex"), ref(values[i]).bytes);
    assert.ok(out.every((b) => b.constructor === Uint8Array));
    // A value larger than a slab has a buffer of its own, which the next values do not share.
    const big = writer.write("z".repeat(50_000)) as Uint8Array;
    const next = writer.write({ after: true }) as Uint8Array;
    assert.notEqual(big.buffer, next.buffer);
    assert.ok(next.buffer.byteLength <= 8192);
  });
});
