// Checks event marks off the main thread, for bulk reads (src/store/mark-batch.ts sends the batches
// and says what they hold). Plain JavaScript so that it starts without a TypeScript loader; the
// checking itself is mark-bytes.mjs's `StagedChecker`, the same code the main thread falls back to.
import { setPriority } from "node:os";
import { parentPort, workerData } from "node:worker_threads";
import { StagedChecker } from "./mark-bytes.mjs";

// Background work: on two cores it should take what the reader's main thread and nats-server leave
// idle, not preempt them when a batch wakes it (this thread only; Linux nices threads).
try {
  setPriority(10);
} catch {
  // Not allowed here: checks run at the default priority.
}
/** Holds the key (never logged). */
const checker = new StagedChecker(workerData.keyBlock, workerData.keyId);

parentPort.on("message", ({ id, bytes, spans, count }) => {
  const verdicts = new Uint8Array(count);
  const prevs = new Float64Array(count);
  checker.check(new Uint8Array(bytes), spans, count, verdicts, prevs);
  parentPort.postMessage({ id, bytes, spans, verdicts, prevs }, [
    bytes,
    spans.buffer,
    verdicts.buffer,
    prevs.buffer,
  ]);
});
