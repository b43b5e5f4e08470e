import type { EventKey } from "./event-mark.ts";
import { STAGED, StagedChecker } from "./mark-bytes.ts";

/** Bytes and entries a fresh batch starts with (it grows): it holds what the ring's module left. */
const START_BYTES = 1 << 14;
const START_ENTRIES = 32;

/**
 * Marks checked by mark-bytes.ts's `StagedChecker`, a batch at a time: the ones a read's ring
 * (src/store/mark-ring.ts) leaves — a v2 mark, a mark not where the writer puts it, a message the
 * ring no longer holds. Each message is staged as its subject and its raw bytes (header block, then
 * body), copied as they are. Entry i is `subject ‖ header block ‖ body`, `spans[4i…4i+3]` its
 * start, header start, body start and end.
 */
export class MarkBatch {
  count = 0;
  private used = 0;

  constructor(
    private bytes: Uint8Array<ArrayBuffer>,
    private spans: Uint32Array<ArrayBuffer>,
  ) {}

  /**
   * Stages a message on `subject` (its bytes as delivered): `raw` is its header block (`hdr` bytes)
   * then its body. False when there is nothing to MAC: a subject corral never writes (not ASCII,
   * or too long).
   */
  add(subject: Uint8Array, raw: Uint8Array, hdr: number): boolean {
    if (subject.length > 0xffff) return false;
    const need = subject.length + raw.length;
    if (this.used + need > this.bytes.length) {
      const grown = new Uint8Array(Math.max(this.used + need, this.bytes.length * 2));
      grown.set(this.bytes.subarray(0, this.used));
      this.bytes = grown;
    }
    if (4 * this.count + 4 > this.spans.length) {
      const grown = new Uint32Array(this.spans.length * 2);
      grown.set(this.spans);
      this.spans = grown;
    }
    const bytes = this.bytes;
    let at = this.used;
    let wide = 0;
    for (let i = 0; i < subject.length; i++) {
      const c = subject[i] as number;
      wide |= c;
      bytes[at++] = c;
    }
    if (wide > 0x7f) return false;
    const k = 4 * this.count;
    this.spans[k] = this.used;
    this.spans[k + 1] = at;
    this.spans[k + 2] = at + hdr;
    bytes.set(raw, at);
    this.used = at + raw.length;
    this.spans[k + 3] = this.used;
    this.count++;
    return true;
  }

  /** A batch with room for a few messages to start with. */
  static fresh(): MarkBatch {
    return new MarkBatch(new Uint8Array(START_BYTES), new Uint32Array(4 * START_ENTRIES));
  }

  /** The batch's staged bytes and spans; the batch is not used after. */
  take(): { bytes: Uint8Array; spans: Uint32Array; count: number } {
    return { bytes: this.bytes, spans: this.spans, count: this.count };
  }
}

/** Each STAGED verdict's name, by its code. */
export const VERDICTS = Object.keys(STAGED) as (keyof typeof STAGED)[];

/** Checkers by key, each holding its key's MAC state (never logged). */
const checkers = new WeakMap<EventKey, StagedChecker>();

/** Each staged entry's verdict and, when valid, the prev its mark names; on this thread. */
export function checkStaged(key: EventKey, batch: MarkBatch): { verdicts: Uint8Array; prevs: Float64Array } {
  let checker = checkers.get(key);
  if (!checker) {
    checker = new StagedChecker(key.keyBlock(), key.id);
    checkers.set(key, checker);
  }
  const { bytes, spans, count } = batch.take();
  const verdicts = new Uint8Array(count);
  const prevs = new Float64Array(count);
  checker.check(bytes, spans, count, verdicts, prevs);
  return { verdicts, prevs };
}
