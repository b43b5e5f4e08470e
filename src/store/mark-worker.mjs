// Checks event marks off the main thread, for bulk reads (src/store/mark-batch.ts sends the batches
// and says what they hold). Plain JavaScript so that it starts without a TypeScript loader. The MAC
// is EventKey's (src/store/event-mark.ts): SHA-256 over the key block and the encoded input, in
// base64url; this file only fills in the key block, hashes and compares.
import { hash } from "node:crypto";
import { parentPort, workerData } from "node:worker_threads";

const MAC_CHARS = 43;
/** The key block (64 bytes) every MAC input starts with. */
const keyBlock = workerData.keyBlock;

parentPort.on("message", ({ id, bytes, spans, count }) => {
  const view = new Uint8Array(bytes);
  const valid = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    // Each entry: [key block slot][input], then the claimed MAC's 43 characters as bytes.
    const start = spans[2 * i];
    const end = spans[2 * i + 1];
    view.set(keyBlock, start);
    const mac = hash("sha256", view.subarray(start, end), "base64url");
    let diff = mac.length ^ MAC_CHARS;
    for (let j = 0; j < MAC_CHARS; j++) diff |= view[end + j] ^ mac.charCodeAt(j);
    valid[i] = diff === 0 ? 1 : 0;
  }
  parentPort.postMessage({ id, bytes, spans, valid }, [bytes, spans.buffer, valid.buffer]);
});
