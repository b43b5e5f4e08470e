import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { type Msg, nanos, nuid, type Subscription } from "@nats-io/nats-core";
import type { EventStore } from "../../store/event-store.ts";
import { ALL_EVENTS } from "../../store/subjects.ts";

/** One stream message as delivered, not decoded: its bytes are the caller's to look at first. */
export interface RawMessage {
  seq: number;
  subject: string;
  /** Stored at (ms). */
  time: number;
  msg: Msg;
}

export interface RawRange {
  filter?: string;
  fromSeq?: number;
  fromTime?: Date;
  /** The last sequence to read (inclusive). */
  toSeq: number;
  /** Called after each batch of messages (progress.ts). */
  onBatch?(count: number, lastSeq: number): void;
}

const BATCH = 2_000;
const STALL_MS = 5_000;

/**
 * Every message of a range, in order and undecoded, handed to `onMessage` as it arrives: for a
 * reader that looks at the bytes before deciding what to decode (trace's prefilter, raw-filter.ts).
 * The transport is the store's fast reader's (src/store/reader.ts): an ephemeral pull consumer
 * without acks, two batches asked ahead; a gap in the delivery sequence, or a stall, starts it again
 * after the last message delivered in order. Resolves with how many messages were read.
 */
export function readRaw(
  store: EventStore,
  range: RawRange,
  onMessage: (m: RawMessage) => void,
): Promise<number> {
  return new RawReader(store, range, onMessage).run();
}

class RawReader {
  private consumer = "";
  private inbox = "";
  private sub: Subscription | undefined;
  private generation = 0;
  private lastSeq = 0;
  private nextDseq = 1;
  private requested = 0;
  private received = 0;
  private inBatch = 0;
  private count = 0;
  private lastProgress = Date.now();
  private toSeq = 0;
  private settle: ((err?: Error) => void) | undefined;

  constructor(
    private readonly store: EventStore,
    private readonly range: RawRange,
    private readonly onMessage: (m: RawMessage) => void,
  ) {}

  async run(): Promise<number> {
    const filter = this.range.filter ?? ALL_EVENTS;
    const last = await this.store.jsm.streams.getMessage(this.store.stream, { last_by_subj: filter });
    this.toSeq = Math.min(this.range.toSeq, last?.seq ?? 0);
    if (this.toSeq < 1 || (this.range.fromSeq ?? 1) > this.toSeq) return 0;
    // A consumer starting after the last message would deliver nothing, never saying it is done.
    if (this.range.fromTime && (await this.timeOf(this.toSeq)) < this.range.fromTime.getTime()) return 0;
    const ended = new Promise<void>((resolve, reject) => {
      this.settle = (err) => (err ? reject(err) : resolve());
    });
    const watchdog = setInterval(() => {
      if (Date.now() - this.lastProgress > STALL_MS) this.restart();
    }, STALL_MS / 4);
    watchdog.unref();
    try {
      const { fromTime, fromSeq } = this.range;
      // Together: a read that fails while the consumer is still being made rejects here too.
      await Promise.all([this.start(fromTime ? { time: fromTime } : { seq: fromSeq ?? 1 }), ended]);
      return this.count;
    } finally {
      clearInterval(watchdog);
      this.settle = undefined;
      this.stop();
    }
  }

  private async timeOf(seq: number): Promise<number> {
    const m = await this.store.jsm.streams.getMessage(this.store.stream, { seq });
    return m?.time.getTime() ?? 0;
  }

  private async start(from: { seq?: number; time?: Date }): Promise<void> {
    const gen = ++this.generation;
    const inbox = `_INBOX.${nuid.next()}`;
    this.inbox = inbox;
    this.sub = this.store.nc.subscribe(inbox, { callback: (_e, m) => this.receive(gen, m) });
    const info = await this.store.jsm.consumers.add(this.store.stream, {
      ack_policy: AckPolicy.None,
      // Unfiltered for all of corral.evt.> (all the stream holds), as src/store/reader.ts does:
      // a filter makes nats-server 2.9 count pending messages subject by subject at creation.
      ...(this.range.filter === undefined || this.range.filter === ALL_EVENTS
        ? {}
        : { filter_subject: this.range.filter }),
      mem_storage: true,
      num_replicas: 1,
      inactive_threshold: nanos(30_000),
      ...(from.time
        ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: from.time.toISOString() }
        : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from.seq ?? 1 }),
    });
    if (gen !== this.generation) return;
    this.consumer = info.name;
    this.nextDseq = 1;
    this.requested = 0;
    this.received = 0;
    this.lastProgress = Date.now(); // a slow start is not a stall: else the watchdog restarts again
    this.pull();
  }

  /** Keeps two batches asked for ahead of what arrived. */
  private pull(): void {
    while (this.requested - this.received < 2 * BATCH) {
      this.requested += BATCH;
      const req = JSON.stringify({ batch: BATCH, expires: nanos(30_000) });
      this.store.nc.publish(`$JS.API.CONSUMER.MSG.NEXT.${this.store.stream}.${this.consumer}`, req, {
        reply: this.inbox,
      });
    }
  }

  private receive(gen: number, msg: Msg): void {
    if (gen !== this.generation || !this.settle) return;
    if (!msg.reply?.startsWith("$JS.ACK.")) {
      this.status(msg);
      return;
    }
    deliveryOf(msg.reply);
    if (at.dseq !== this.nextDseq) {
      this.restart(); // the transport lost a message
      return;
    }
    this.nextDseq++;
    this.received++;
    this.lastProgress = Date.now();
    if (at.sseq > this.toSeq) {
      this.finish();
      return;
    }
    this.lastSeq = at.sseq;
    this.count++;
    this.inBatch++;
    try {
      this.onMessage({ seq: at.sseq, subject: msg.subject, time: at.time, msg });
    } catch (err) {
      this.finish(err as Error);
      return;
    }
    if (at.sseq === this.toSeq) this.finish();
    else if (this.received % BATCH === 0) {
      this.range.onBatch?.(this.inBatch, this.lastSeq);
      this.inBatch = 0;
      this.pull();
    }
  }

  /** A pull request's status: expired (ask again) or the consumer gone (start again). */
  private status(msg: Msg): void {
    const code = msg.headers?.code ?? 0;
    if (code === 408 || code === 404) {
      const left = Number(msg.headers?.get("Nats-Pending-Messages") || 0);
      this.requested -= left > 0 ? left : 0;
      this.pull();
    } else if (code === 409) this.restart();
  }

  private restarting = false;
  private restart(): void {
    if (this.restarting || !this.settle) return;
    this.restarting = true;
    this.stop();
    const { fromTime, fromSeq } = this.range;
    const from =
      this.lastSeq > 0 ? { seq: this.lastSeq + 1 } : fromTime ? { time: fromTime } : { seq: fromSeq ?? 1 };
    this.start(from)
      .catch((err: unknown) => this.finish(err as Error))
      .finally(() => {
        this.restarting = false;
      });
  }

  private finish(err?: Error): void {
    if (this.inBatch > 0) this.range.onBatch?.(this.inBatch, this.lastSeq);
    this.inBatch = 0;
    this.settle?.(err);
    this.settle = undefined;
  }

  private stop(): void {
    this.generation++;
    this.sub?.unsubscribe();
    this.sub = undefined;
    if (this.consumer) {
      const name = this.consumer;
      this.consumer = "";
      this.store.jsm.consumers.delete(this.store.stream, name).catch(() => {}); // else inactive_threshold
    }
  }
}

/** The last message's delivery metadata (deliveryOf); module state: no object per message. */
const at = { sseq: 0, dseq: 0, time: 0 };

/**
 * Stream and delivery sequence and time from an ack subject into `at`, scanned from the end:
 * `$JS.ACK.[<domain>.<account>.]<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>[.<token>]`
 * (the v2 form's trailing token is not a number, so it is skipped). A subject too short leaves NaN,
 * which matches no delivery sequence: read again.
 */
function deliveryOf(reply: string): void {
  at.sseq = Number.NaN;
  at.dseq = Number.NaN;
  at.time = Number.NaN;
  let found = 0; // numbers seen from the end: pending, ts (ns), dseq, sseq
  let end = reply.length;
  for (let i = reply.length - 1; i >= -1 && found < 4; i--) {
    if (i >= 0 && reply.charCodeAt(i) !== 46 /* . */) continue;
    const token = reply.slice(i + 1, end);
    end = i;
    if (!/^\d+$/.test(token)) continue;
    if (found === 1) at.time = Number(token) / 1e6;
    else if (found === 2) at.dseq = Number(token);
    else if (found === 3) at.sseq = Number(token);
    found++;
  }
}
