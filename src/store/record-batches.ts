import type { Msg } from "@nats-io/nats-core";
import type { AnyEventView } from "../events/reads.ts";
import { rawOf, subjectBytesOf } from "../nats/raw-msg.ts";
import { describeMark, type EventKey } from "./event-mark.ts";
import type { Verifier } from "./integrity.ts";
import { type Checked, type MarkBatch, type MarkChecker, VERDICTS } from "./mark-batch.ts";
import { markOf } from "./mark-header.ts";
import { decodeRecord, type EventDecoder, forgedRecord, type StoredRecord } from "./records.ts";

/** Messages of a read checked on the main thread (batch by batch) before its checks move to the worker. */
export const INLINE_FIRST = 4_000;

const MISMATCH = { check: "mismatch", detail: describeMark("mismatch", undefined) } as const;

/** A writer key and its checker: a read's marks are checked a batch at a time (mark-batch.ts). */
export interface OffThread {
  key: EventKey;
  checker: MarkChecker;
}

/**
 * The records of one read, collected into batches, each handed on only once every mark in it has
 * been checked, all of a batch's marks at once (two MAC calls: src/store/mark-mac.mjs). The first
 * messages of a read are checked on this thread (a small read never waits for a worker); after
 * that, with a key, the checking of a batch moves to a worker (mark-batch.ts) while the main thread
 * decodes the next one.
 */
export class RecordBatches<E extends AnyEventView> {
  private records: StoredRecord<E>[] = [];
  /** Indexes in `records` whose marks are staged in `marks`, in staging order. */
  private staged: number[] = [];
  private marks: MarkBatch | undefined;
  private seen = 0;

  constructor(
    private readonly decode: EventDecoder<E>,
    private readonly verify: Verifier | undefined,
    private readonly offThread?: OffThread,
  ) {}

  get size(): number {
    return this.records.length;
  }

  /** Marks of this batch go to the worker: worth sealing only once full (or at the end). */
  get staging(): boolean {
    return this.marks !== undefined && this.seen > INLINE_FIRST;
  }

  /** The record of a delivered message, its mark staged to be checked with the batch's others. */
  add(seq: number, time: number, msg: Msg): void {
    const data = msg.data;
    const off = this.offThread;
    this.seen++;
    const raw = off ? rawOf(msg) : undefined;
    // Without the raw bytes (the client's internals changed) or headers, checked here, alone.
    if (!off || !raw || raw.hdr < 0) {
      const mark = this.verify && markOf(msg);
      this.records.push(decodeRecord(this.decode, seq, msg, time, data, this.verify, mark));
      return;
    }
    const record = decodeRecord(this.decode, seq, msg, time, data);
    if (record.error) {
      this.records.push(record); // undecodable stays undecodable, marked or not
      return;
    }
    // The mark is found, parsed and checked with the batch's, in the message's raw bytes as they came.
    this.marks ??= off.checker.batch();
    if (!this.marks.add(subjectBytesOf(msg), raw.data, raw.hdr)) {
      this.records.push(forgedRecord(seq, record.subject, time, record.event, MISMATCH));
      return;
    }
    this.staged.push(this.records.length);
    this.records.push(record);
  }

  /** The records so far, once their marks are checked; the next add starts a new batch. */
  seal(): Promise<StoredRecord<E>[]> {
    const records = this.records;
    const staged = this.staged;
    const marks = this.marks;
    this.records = [];
    this.staged = [];
    this.marks = undefined;
    if (!marks || !this.offThread) return Promise.resolve(records);
    const { checker } = this.offThread;
    if (this.seen <= INLINE_FIRST)
      return Promise.resolve(withVerdicts(records, staged, checker.checkNow(marks)));
    return checker.check(marks).then((checked) => withVerdicts(records, staged, checked));
  }
}

/** `records` with each staged one's verdict applied: its prev when valid, forged otherwise. */
function withVerdicts<E extends AnyEventView>(
  records: StoredRecord<E>[],
  staged: readonly number[],
  { verdicts, prevs, marks }: Checked,
): StoredRecord<E>[] {
  for (let k = 0; k < staged.length; k++) {
    const i = staged[k] as number;
    const r = records[i];
    if (!r?.event) continue;
    const check = VERDICTS[verdicts[k] as number] ?? "mismatch";
    if (check === "valid") {
      r.prev = prevs[k];
      continue;
    }
    const detail = describeMark(check, marks.get(k));
    records[i] = forgedRecord(r.seq, r.subject, r.time, r.event, { check, detail });
  }
  return records;
}
