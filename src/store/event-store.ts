import type { JetStreamClient, JetStreamManager, OrderedConsumerOptions } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { decodeEvent, encodeEvent } from "../codec/msgpack.ts";
import { checkEnvelope, isValidated } from "../events/catalogue.ts";
import { type AggregateRef, checkRef, type Envelope, refKey } from "../events/envelope.ts";
import type { AnyEventView } from "../events/reads.ts";
import { DeliverPolicy, jetstream, jetstreamManager } from "../vendor/nats.ts";
import { ConcurrencyError } from "./errors.ts";
import { type EventKey, MARK_HEADER } from "./event-mark.ts";
import { type Integrity, integrityOf, type Verifier, verifierOf } from "./integrity.ts";
import { MarkRing } from "./mark-ring.ts";
import { PipelinedPublisher, type PublisherOptions, WrongLastSequence } from "./publisher.ts";
import { type DropHook, type RangeOptions, type RangeStats, readRange, readRaw } from "./reader.ts";
import { type EventDecoder, type StoredRecord, toRecord } from "./records.ts";
import { DEFAULT_STREAM, type EnsureResult, ensureStream, type StreamOptions } from "./stream.ts";
import { ALL_EVENTS, eventSubject } from "./subjects.ts";

export interface EventStoreOptions {
  stream?: Partial<StreamOptions>;
  publisher?: PublisherOptions;
  /** Marks and their checks (integrity.ts); default: what is bound to the connection, else "off". */
  integrity?: Integrity;
}

export interface AppendResult {
  /** Stream sequence of each appended event, in order. */
  seqs: number[];
  /** The aggregate's last sequence after the append: pass it as expectedSeq next time. */
  lastSeq: number;
  /** How many were already stored (a retry of an append whose ack was lost). */
  duplicates: number;
}

export interface FollowOptions {
  filter?: string;
  /** Start here (inclusive); default: only events appended from now on. */
  fromSeq?: number;
  fromTime?: Date;
}

/**
 * The JetStream event store: one stream, one subject per aggregate, optimistic concurrency per
 * aggregate via Nats-Expected-Last-Subject-Sequence, idempotent appends via Nats-Msg-Id.
 */
export class EventStore {
  readonly stream: string;
  readonly js: JetStreamClient;
  private readonly publisher: PipelinedPublisher;
  /** Marks appends; undefined: this store writes unmarked events. */
  private readonly key: EventKey | undefined;
  /** Checks reads; undefined: integrity "off". */
  readonly verify: Verifier | undefined;

  private constructor(
    readonly nc: NatsConnection,
    readonly jsm: JetStreamManager,
    readonly streamOptions: StreamOptions,
    readonly ensured: EnsureResult,
    readonly integrity: Integrity,
    publisherOptions?: PublisherOptions,
  ) {
    this.stream = streamOptions.name;
    this.key = typeof integrity === "object" ? integrity.key : undefined;
    this.verify = verifierOf(integrity);
    this.js = jetstream(nc);
    this.publisher = new PipelinedPublisher(nc, publisherOptions);
  }

  /**
   * Which stream this is (its name and creation time): state saved on its behalf carries it, and
   * state carrying another is not this stream's (src/store/stream.ts, `created`).
   */
  get identity(): string {
    return `${this.stream}@${this.ensured.created}`;
  }

  /** Connects the store to its stream, creating or updating the stream as needed. */
  static async open(nc: NatsConnection, opts: EventStoreOptions = {}): Promise<EventStore> {
    const streamOptions = { ...DEFAULT_STREAM, ...opts.stream };
    const jsm = await jetstreamManager(nc);
    const ensured = await ensureStream(jsm, streamOptions);
    const integrity = opts.integrity ?? integrityOf(nc) ?? "off";
    return new EventStore(nc, jsm, streamOptions, ensured, integrity, opts.publisher);
  }

  /**
   * Appends events to one aggregate. `expectedSeq` is the stream sequence of the aggregate's last
   * event as the caller knows it (0: the aggregate must not exist yet). Events are stored in
   * order; each one's Nats-Msg-Id is its event id, so repeating an append whose ack was lost
   * stores nothing twice and returns the original sequences.
   */
  async append(ref: AggregateRef, events: readonly Envelope[], expectedSeq: number): Promise<AppendResult> {
    checkRef(ref);
    if (!Number.isInteger(expectedSeq) || expectedSeq < 0) {
      throw new TypeError(`expectedSeq must be a non-negative integer, got ${expectedSeq}`);
    }
    const subject = eventSubject(ref);
    const seqs: number[] = [];
    let expected = expectedSeq;
    let duplicates = 0;
    for (const event of events) {
      if (event.aggregate.kind !== ref.kind || event.aggregate.id !== ref.id) {
        throw new TypeError(`event ${event.id} belongs to ${refKey(event.aggregate)}, not ${refKey(ref)}`);
      }
      if (!isValidated(event)) checkEnvelope(event); // never store what a reader could not decode
      try {
        const body = encodeEvent(event);
        // The mark names the sequence this append must follow: a copy stored elsewhere is caught.
        // The publisher makes it, with the marks of the other appends sent in the same turn.
        const ack = await this.publisher.publish(subject, body, event.id, expected, this.key);
        if (ack.duplicate) duplicates++;
        seqs.push(ack.seq);
        expected = ack.seq;
      } catch (err) {
        if (err instanceof WrongLastSequence) throw new ConcurrencyError(ref, expected, err.currentSeq);
        throw err;
      }
    }
    return { seqs, lastSeq: expected, duplicates };
  }

  /** The stream sequence of the aggregate's last event, 0 if it has none. */
  async lastSeqOf(ref: AggregateRef): Promise<number> {
    const m = await this.jsm.streams.getMessage(this.stream, { last_by_subj: eventSubject(checkRef(ref)) });
    return m?.seq ?? 0;
  }

  /** The stream's last sequence (0 when empty). */
  async lastSeq(): Promise<number> {
    return (await this.jsm.streams.info(this.stream)).state.last_seq;
  }

  /** One message by stream sequence, decoded (or with its decode error); null if there is none. */
  async get(seq: number): Promise<StoredRecord | null> {
    const m = await this.jsm.streams.getMessage(this.stream, { seq });
    if (!m) return null;
    const mark = this.verify ? m.header?.get(MARK_HEADER) || undefined : undefined;
    return toRecord(m.seq, m.subject, m.time.getTime(), m.data, this.verify, mark);
  }

  /** Events of one aggregate after `afterSeq` (its snapshot's sequence), in order. */
  async readAggregate(ref: AggregateRef, afterSeq = 0): Promise<StoredRecord[]> {
    const last = await this.lastSeqOf(ref);
    if (last <= afterSeq) return [];
    const out: StoredRecord[] = [];
    for await (const batch of this.read({ filter: eventSubject(ref), fromSeq: afterSeq + 1, toSeq: last })) {
      for (const r of batch) out.push(r);
    }
    return out;
  }

  /** Reads a bounded range in batches (see readRange); ends when caught up or at `toSeq`. */
  read(opts?: RangeOptions, stats?: RangeStats, dropHook?: DropHook): AsyncGenerator<StoredRecord[]>;
  /** The same, each event decoded by `decode` (a projection's view of it: src/events/reads.ts). */
  read<E extends AnyEventView>(
    opts: RangeOptions & { decode: EventDecoder<E> },
    stats?: RangeStats,
    dropHook?: DropHook,
  ): AsyncGenerator<StoredRecord<E>[]>;
  read(
    { decode = decodeEvent, ...opts }: RangeOptions & { decode?: EventDecoder<AnyEventView> } = {},
    stats?: RangeStats,
    dropHook?: DropHook,
  ): AsyncGenerator<StoredRecord<AnyEventView>[]> {
    const checking = this.key && { key: this.key, ring: MarkRing.of(this.nc) };
    return readRange(
      this.nc,
      this.jsm,
      this.stream,
      decode,
      { verify: this.verify, checking, ...opts },
      stats,
      dropHook,
    );
  }

  /**
   * Every message of a range undecoded, as it arrives (see readRaw): for a reader that decides
   * from the bytes what to decode; what it decodes it checks with `toRecord(…, this.verify, …)`.
   */
  readRaw(opts: Parameters<typeof readRaw>[3], onMessage: Parameters<typeof readRaw>[4]): Promise<number> {
    return readRaw(this.nc, this.jsm, this.stream, opts, onMessage);
  }

  /** Follows the stream live (an ordered consumer: it survives reconnects and never skips). */
  async *follow(opts: FollowOptions = {}, signal?: AbortSignal): AsyncGenerator<StoredRecord> {
    const o: Partial<OrderedConsumerOptions> = { filter_subjects: opts.filter ?? ALL_EVENTS };
    if (opts.fromTime) {
      o.deliver_policy = DeliverPolicy.StartTime;
      o.opt_start_time = opts.fromTime.toISOString();
    } else if (opts.fromSeq !== undefined) {
      o.deliver_policy = DeliverPolicy.StartSequence;
      o.opt_start_seq = Math.max(1, opts.fromSeq);
    } else {
      o.deliver_policy = DeliverPolicy.New;
    }
    const consumer = await this.js.consumers.get(this.stream, o);
    const messages = await consumer.consume();
    const stop = () => messages.stop();
    if (signal?.aborted) stop();
    signal?.addEventListener("abort", stop, { once: true });
    try {
      for await (const m of messages) {
        const mark = this.verify ? m.headers?.get(MARK_HEADER) || undefined : undefined;
        yield toRecord(m.seq, m.subject, m.info.timestampNanos / 1e6, m.data, this.verify, mark);
      }
    } finally {
      signal?.removeEventListener("abort", stop);
      stop();
    }
  }

  close(): void {
    this.publisher.close();
  }
}
