import type { JetStreamManager } from "@nats-io/jetstream";
import type { Msg, NatsConnection } from "@nats-io/nats-core";
import type { AnyEventView } from "../events/reads.ts";
import type { Verifier } from "./integrity.ts";
import { type DropHook, type RangeStats, RangeTransport } from "./range-transport.ts";
import { type MarkChecking, RecordBatches } from "./record-batches.ts";
import type { EventDecoder, StoredRecord } from "./records.ts";
import { ALL_EVENTS } from "./subjects.ts";

export type { DropHook, RangeStats } from "./range-transport.ts";

export interface RangeOptions {
  /** Subject filter; one subject or one wildcard (nats-server 2.9 has no multi-filter consumers). */
  filter?: string;
  /** First stream sequence to read (inclusive). */
  fromSeq?: number;
  /** Or: first message stored at or after this time. */
  fromTime?: Date;
  /** Last stream sequence to read (inclusive); default: the last one on the filter as the read starts. */
  toSeq?: number;
  /** Messages per pull request; two requests are kept in flight. */
  batch?: number;
  /** No message for this long while more are expected: start again from the last one seen. */
  stallMs?: number;
  /** Checks each message's mark (the store passes its own; see integrity.ts). */
  verify?: Verifier;
  /** With a key: the read's marks are checked a batch at a time (record-batches.ts). */
  checking?: MarkChecking;
  /**
   * false: verified records need not carry `prev` (a projection never compares it with where an
   * event lies; the actor host and replay do). Saves a pass over every record of a batch.
   */
  prevs?: boolean;
}

/**
 * Reads a range of the stream fast (the transport: range-transport.ts) and yields its records in
 * arrays, each handed on only once every mark in it is checked (record-batches.ts), to keep
 * per-message overhead low. `decode` makes each message's event: whole, or a projection's view.
 */
export async function* readRange<E extends AnyEventView>(
  nc: NatsConnection,
  jsm: JetStreamManager,
  stream: string,
  decode: EventDecoder<E>,
  opts: RangeOptions = {},
  stats: RangeStats = { messages: 0, resets: 0, gaps: 0 },
  dropHook?: DropHook,
): AsyncGenerator<StoredRecord<E>[]> {
  const batch = opts.batch ?? 2_000;
  // Filled as messages arrive; sealed (its marks checked) before it is handed on, in order.
  const batches = new RecordBatches(decode, opts.verify, opts.checking, opts.prevs !== false);
  const sealed: Promise<StoredRecord<E>[]>[] = [];
  let wake: (() => void) | undefined;
  let failure: Error | undefined;
  let done = false;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const transport = await openTransport(
    nc,
    jsm,
    stream,
    opts,
    {
      message(seq, time, msg) {
        batches.add(seq, time, msg);
        if (batches.size >= batch) {
          sealed.push(batches.seal());
          notify();
        }
      },
      end(err) {
        failure = err;
        done = true;
        notify();
      },
    },
    stats,
    dropHook,
  );
  try {
    while (true) {
      // A partial batch is handed on at once: a caller waits for it.
      if (sealed.length === 0 && batches.size > 0) sealed.push(batches.seal());
      const next = sealed.shift();
      if (next) {
        const out = await next;
        transport.taken(out.length);
        yield out;
        continue;
      }
      if (failure) throw failure;
      if (done) return;
      await new Promise<void>((r) => {
        wake = r;
      });
    }
  } finally {
    transport.close();
    batches.close();
  }
}

/** Where a raw read is, for progress: messages since the last call, and the last sequence. */
export type RawProgress = (count: number, lastSeq: number) => void;

/**
 * Every message of a range, in order and undecoded, handed to `onMessage` as it arrives: for a
 * reader that looks at the bytes before deciding what to decode (trace's prefilter,
 * src/cli/history/raw-filter.ts). Same transport as `readRange`. Resolves with how many messages
 * were read.
 */
export async function readRaw(
  nc: NatsConnection,
  jsm: JetStreamManager,
  stream: string,
  opts: Omit<RangeOptions, "verify" | "checking"> & { onBatch?: RawProgress },
  onMessage: (seq: number, time: number, msg: Msg) => void,
): Promise<number> {
  const batch = opts.batch ?? 2_000;
  let count = 0;
  let inBatch = 0;
  let lastSeq = 0;
  let transport: RangeTransport | undefined;
  const ended = new Promise<void>((resolve, reject) => {
    void openTransport(nc, jsm, stream, opts, {
      message(seq, time, msg) {
        onMessage(seq, time, msg);
        count++;
        lastSeq = seq;
        if (++inBatch === batch) {
          opts.onBatch?.(inBatch, lastSeq);
          inBatch = 0;
        }
        transport?.taken(1);
      },
      end(err) {
        if (inBatch > 0) opts.onBatch?.(inBatch, lastSeq);
        if (err) reject(err);
        else resolve();
      },
    }).then((t) => {
      transport = t;
    }, reject);
  });
  try {
    await ended;
    return count;
  } finally {
    transport?.close();
  }
}

/**
 * A transport for the range: it ends at the last message matching the filter as the read starts
 * (or at `toSeq`, if that comes first). Not at a consumer's pending count of 0: nats-server 2.9
 * miscounts it after concurrent appends, too high (a read that never ended) or too low (one that
 * ended early).
 */
async function openTransport(
  nc: NatsConnection,
  jsm: JetStreamManager,
  stream: string,
  opts: RangeOptions,
  reader: ConstructorParameters<typeof RangeTransport>[4],
  stats?: RangeStats,
  dropHook?: DropHook,
): Promise<RangeTransport> {
  const filter = opts.filter ?? ALL_EVENTS;
  const last = await lastMatching(jsm, stream, filter);
  const range = {
    filter,
    ...(opts.fromSeq === undefined ? {} : { fromSeq: opts.fromSeq }),
    ...(opts.fromTime === undefined ? {} : { fromTime: opts.fromTime }),
    toSeq: Math.min(opts.toSeq ?? last, last),
    batch: opts.batch ?? 2_000,
    stallMs: opts.stallMs ?? 5_000,
  };
  const transport = new RangeTransport(nc, jsm, stream, range, reader, stats, dropHook);
  await transport.open();
  return transport;
}

/** Stream sequence of the last message on `filter` (0 when there is none). */
async function lastMatching(jsm: JetStreamManager, stream: string, filter: string): Promise<number> {
  const m = await jsm.streams.getMessage(stream, { last_by_subj: filter });
  return m?.seq ?? 0;
}
