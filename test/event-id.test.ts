import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { uuidv7, uuidv7Time } from "../src/events/id.ts";

const FORMAT = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe("event ids (UUIDv7)", () => {
  it("are RFC 9562 version 7, carry their millisecond, and sort in the order they were made", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2_000_000_000_000, max: 2 ** 47 }),
        fc.integer({ min: 1, max: 50 }),
        (ms, n) => {
          const ids = Array.from({ length: n }, () => uuidv7(ms));
          for (const id of ids) {
            assert.match(id, FORMAT);
            assert.ok(uuidv7Time(id) >= ms);
          }
          assert.deepEqual([...ids].sort(), ids);
          assert.equal(new Set(ids).size, n);
        },
      ),
      { numRuns: 200 },
    );
  });
});
