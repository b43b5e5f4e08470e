import type { Msg } from "@nats-io/nats-core";
import type { AnyEventView } from "../events/reads.ts";
import { rawDataOf, rawHeaderLength, subjectBytesOf, tappedFrame } from "../nats/raw-msg.ts";
import { describeMark, type EventKey } from "./event-mark.ts";
import type { Verifier } from "./integrity.ts";
import { VERDICTS } from "./mark-batch.ts";
import { STAGED } from "./mark-bytes.ts";
import { markOf, scanHeaders } from "./mark-header.ts";
import { SPAN } from "./mark-module.ts";
import { type MarkRing, type RingBatch, UNMACABLE } from "./mark-ring.ts";
import { decodeRecord, type EventDecoder, forgedRecord, type StoredRecord } from "./records.ts";

const MISMATCH = { check: "mismatch", detail: describeMark("mismatch", undefined) } as const;

/** A writer key, and the ring of the connection read from, where a batch's marks are checked. */
export interface MarkChecking {
  key: EventKey;
  ring: MarkRing;
}

/**
 * The records of one read, collected into batches, each handed on only once every mark in it has
 * been checked, all of a batch's marks at once (src/store/mark-ring.ts): each message is staged as
 * where its bytes are in the ring (the frame reader put them there; a message that came another way
 * is copied in), and the batch checked when it is sealed, or earlier if the ring is about to write
 * over it.
 */
export class RecordBatches<E extends AnyEventView> implements RingBatch {
  private records: StoredRecord<E>[] = [];
  /** Indexes in `records` whose marks are staged, in staging order. */
  private staged: number[] = [];
  /** Per staged message, SPAN fields (mark-ring.ts); grown as a batch grows (most reads are a few events). */
  private spans = new Uint32Array(SPAN * 64);
  /** Staged messages checked so far, the prev each valid one names, and why each forged one is. */
  private checked = 0;
  private prevs = new Float64Array(64);
  private forged = new Map<number, Forged>();
  /** Why a check failed (a bug: the read fails rather than fold what it could not check). */
  private failure: Error | undefined;
  first = -1;

  constructor(
    private readonly decode: EventDecoder<E>,
    private readonly verify: Verifier | undefined,
    private readonly checking?: MarkChecking,
    /** Whether a staged record gets the prev its mark names (reader.ts, `prevs`). */
    private readonly withPrevs = true,
  ) {}

  get size(): number {
    return this.records.length;
  }

  /** The record of a delivered message, its mark staged to be checked with the batch's others. */
  add(seq: number, time: number, msg: Msg): void {
    const checking = this.checking;
    if (checking && this.stage(checking.ring, msg)) {
      // An undecodable message is staged too: without a valid mark it is forged, not undecodable.
      this.staged.push(this.records.length);
      this.records.push(decodeRecord(this.decode, seq, msg, time, msg.data));
      return;
    }
    // Without the raw bytes (the client's internals changed), headers or room: checked here, alone.
    const mark = this.verify && markOf(msg);
    this.records.push(decodeRecord(this.decode, seq, msg, time, msg.data, this.verify, mark));
  }

  /** Stages a message where its bytes are in the ring (copied in if the frame reader did not); false if it cannot. */
  private stage(ring: MarkRing, msg: Msg): boolean {
    const count = this.staged.length;
    if (count - this.checked >= ring.maxEntries) this.checkNow();
    const k = SPAN * count;
    if (k + SPAN > this.spans.length) this.spans = grown(this.spans, 2 * this.spans.length);
    const spans = this.spans;
    let first: number;
    const frame = tappedFrame(msg);
    if (frame && frame.hdr >= 0) {
      spans[k] = ring.address(frame.subjectAt);
      spans[k + 1] = frame.subject.length;
      spans[k + 2] = ring.address(frame.dataAt);
      spans[k + 3] = frame.hdr;
      spans[k + 4] = frame.size;
      first = ring.lastChunk;
    } else {
      const raw = rawDataOf(msg);
      const hdr = rawHeaderLength(msg);
      if (!raw || hdr < 0) return false;
      const subject = subjectBytesOf(msg);
      const at = ring.put(subject, raw);
      if (at < 0) return false;
      spans[k] = ring.address(at);
      spans[k + 1] = subject.length;
      spans[k + 2] = ring.address(at + subject.length);
      spans[k + 3] = hdr;
      spans[k + 4] = raw.length;
      first = ring.lastWrite;
    }
    if (this.first < 0 || first < this.first) {
      this.first = first;
      ring.watch(this);
    }
    return true;
  }

  /**
   * Checks the marks staged since the last check, while the ring holds their bytes. Called by the
   * ring too, from inside the frame reader: it never throws (a failure fails the read at `seal`).
   */
  checkNow(): void {
    const checking = this.checking;
    const from = this.checked;
    const count = this.staged.length;
    this.first = -1;
    if (!checking || count === from) return;
    this.checked = count;
    const { key, ring } = checking;
    const spans = this.spans.subarray(SPAN * from, SPAN * count);
    try {
      const { verdicts, prevs } = ring.check(key, spans, count - from);
      for (let k = 0; k < verdicts.length; k++) {
        const verdict = verdicts[k] as number;
        if (verdict !== STAGED.valid) this.forged.set(from + k, forgedBy(verdict, ring, spans, k));
      }
      if (count > this.prevs.length) this.prevs = grown(this.prevs, 2 * count);
      this.prevs.set(prevs, from);
    } catch (err) {
      this.failure ??= new Error(`the marks could not be checked: ${(err as Error).message}`);
    }
  }

  /** The records so far, once their marks are checked; the next add starts a new batch. */
  seal(): Promise<StoredRecord<E>[]> {
    this.checkNow();
    this.checking?.ring.unwatch(this);
    if (this.failure) return Promise.reject(this.failure);
    const records = this.records;
    const { staged, prevs, forged } = this;
    // Skipped when unwanted: by now a big batch's records are out of cache, and this is a miss each.
    if (this.withPrevs) {
      for (let k = 0; k < staged.length; k++) {
        const r = records[staged[k] as number];
        if (r?.event) r.prev = prevs[k];
      }
    }
    for (const [k, why] of forged) {
      const i = staged[k] as number;
      const r = records[i];
      if (r) records[i] = forgedRecord(r.seq, r.subject, r.time, r.event?.type, why);
    }
    this.records = [];
    this.staged = [];
    this.checked = 0;
    this.forged = new Map();
    return Promise.resolve(records);
  }

  /** The read is over: the ring need not check anything of it before writing over it. */
  close(): void {
    this.checking?.ring.unwatch(this);
  }
}

type Forged = { check: Exclude<(typeof VERDICTS)[number], "valid">; detail: string };

/** Why a staged entry with this verdict is forged, its mark read back from the ring. */
function forgedBy(verdict: number, ring: MarkRing, spans: Uint32Array, k: number): Forged {
  const name = verdict === UNMACABLE ? undefined : VERDICTS[verdict];
  if (!name || name === "valid") return MISMATCH;
  const data = spans[SPAN * k + 2] as number;
  const mark = scanHeaders(ring.bytes(data, spans[SPAN * k + 3] as number), 0, spans[SPAN * k + 3] as number);
  return { check: name, detail: describeMark(name, mark) };
}

/** `array` copied into a new one of `size` elements. */
function grown<T extends Uint32Array | Float64Array>(array: T, size: number): T {
  const more = new (array.constructor as new (n: number) => T)(size);
  more.set(array);
  return more;
}
