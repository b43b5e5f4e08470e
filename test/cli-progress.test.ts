import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { progress, progressLine } from "../src/cli/progress.ts";

/** A stderr stand-in: what was written, and whether it is a terminal. */
function sink(isTTY: boolean) {
  const writes: string[] = [];
  return { isTTY, writes, write: (text: string) => writes.push(text) };
}

describe("progress on stderr", () => {
  it("silent for the first second, then events/s and an ETA on one redrawn line; done clears it", () => {
    let now = 0;
    const err = sink(true);
    const p = progress({ toSeq: 100_000, json: false, sink: err, now: () => now });
    now = 900;
    p.add(45_000, 45_000);
    assert.deepEqual(err.writes, [], "nothing within the first second");
    now = 1_500;
    p.add(15_000, 60_000);
    // 60,000 read in 1.5 s: 40,000 ev/s; 40,000 left: 1.0 s.
    assert.deepEqual(err.writes, ["\r\u001b[Kreading: 60,000 events  40,000 ev/s  ETA 1.0 s"]);
    now = 1_550;
    p.add(1_000, 61_000);
    assert.equal(err.writes.length, 1, "at most one redraw per 100 ms");
    p.done();
    assert.equal(err.writes.at(-1), "\r\u001b[K", "the line is cleared at the end");
  });

  it("never for --json, never when stderr is not a terminal, and a short read leaves nothing", () => {
    for (const [json, tty] of [
      [true, true],
      [false, false],
    ] as const) {
      let now = 0;
      const err = sink(tty);
      const p = progress({ toSeq: 10, json, sink: err, now: () => now });
      now = 5_000;
      p.add(5, 5);
      p.done();
      assert.deepEqual(err.writes, [], `json=${json} tty=${tty}`);
    }
    const err = sink(true);
    const p = progress({ toSeq: 10, json: false, sink: err, now: () => 10 });
    p.add(10, 10);
    p.done();
    assert.deepEqual(err.writes, []);
  });

  it("the line's figures", () => {
    assert.equal(progressLine(120_000, 2_000, 30_000), "reading: 120,000 events  60,000 ev/s  ETA 0.5 s");
    assert.equal(progressLine(0, 0, 10), "reading: 0 events  0 ev/s  ETA 0.0 s");
  });
});
