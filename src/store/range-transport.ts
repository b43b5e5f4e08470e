import type { JetStreamManager } from "@nats-io/jetstream";
import type { Msg, NatsConnection, Subscription } from "@nats-io/nats-core";
import { replyBytesOf } from "../nats/raw-msg.ts";
import { AckPolicy, DeliverPolicy, nanos, nuid } from "../vendor/nats.ts";
import { ALL_EVENTS } from "./subjects.ts";

export interface RangeStats {
  messages: number;
  /** Times the reader threw away a consumer and resumed after its last contiguous message. */
  resets: number;
  /** Delivery-sequence gaps seen (messages the transport lost); each one caused a reset. */
  gaps: number;
}

/** Test seam: pretend the transport dropped this delivery, to prove gaps are caught. */
export type DropHook = (deliverySeq: number, streamSeq: number) => boolean;

export interface TransportRange {
  /** Subject filter; one subject or one wildcard (nats-server 2.9 has no multi-filter consumers). */
  filter: string;
  fromSeq?: number;
  fromTime?: Date;
  /** The last sequence to deliver (inclusive), at most the last one on the filter. */
  toSeq: number;
  /** Messages per pull request; two requests are kept ahead of what the reader has taken. */
  batch: number;
  /** No message for this long while more are expected: start again after the last one delivered. */
  stallMs: number;
}

/** A range's transport as its reader sees it (src/store/reader.ts). */
export interface RangeReader {
  /**
   * One message, delivered in stream order, each sequence once. Its subject is `msg.subject`,
   * decoded on first use: a reader that skips most messages (trace) never pays for theirs.
   */
  message(seq: number, time: number, msg: Msg): void;
  /** The range is delivered (`err` undefined) or cannot be. */
  end(err?: Error): void;
}

/**
 * The fast reader's transport: an ephemeral pull consumer without acks, batched pull requests on
 * one plain inbox subscription, and the delivery metadata parsed straight from the reply subject.
 * Core NATS delivery may drop messages, so every delivery sequence is checked to be contiguous; a
 * gap (or a stall) restarts the consumer right after the last message delivered in order. Pulls
 * stay at most two batches ahead of what the reader has `taken`, so a slow reader holds nothing
 * more than that in memory.
 */
export class RangeTransport {
  private generation = 0;
  private consumer = "";
  private inbox = "";
  private sub: Subscription | undefined;
  /** Last stream seq delivered in order. */
  private lastSeq = 0;
  /** Delivery seq expected next from the current consumer. */
  private nextDseq = 1;
  /** Messages asked for from the current consumer, and taken by the reader since it began. */
  private requested = 0;
  private took = 0;
  private lastProgress = Date.now();
  private done = false;
  private restarting = false;
  private readonly watchdog: NodeJS.Timeout;

  constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly stream: string,
    private readonly range: TransportRange,
    private readonly reader: RangeReader,
    private readonly stats: RangeStats = { messages: 0, resets: 0, gaps: 0 },
    private readonly dropHook?: DropHook,
  ) {
    this.watchdog = setInterval(
      () => {
        if (!this.done && !this.restarting && Date.now() - this.lastProgress > range.stallMs) this.restart();
      },
      Math.max(100, Math.floor(range.stallMs / 4)),
    );
    this.watchdog.unref();
  }

  /** Starts delivering; `reader.end` says when the range is done. */
  async open(): Promise<void> {
    const { fromTime, fromSeq, toSeq } = this.range;
    // A consumer starting after the last message would deliver nothing, never saying it is done.
    if (
      toSeq < 1 ||
      (fromSeq ?? 1) > toSeq ||
      (fromTime && (await this.timeOf(toSeq)) < fromTime.getTime())
    ) {
      this.finish();
      return;
    }
    try {
      await this.start(this.resumeFrom());
    } catch (err) {
      this.finish(err as Error);
    }
  }

  /** The reader took `n` more messages: ask for more if the pulls are not two batches ahead. */
  taken(n: number): void {
    this.took += n;
    this.lastProgress = Date.now(); // a slow reader is not a stalled server
    this.pull();
  }

  close(): void {
    this.done = true;
    clearInterval(this.watchdog);
    this.stop();
  }

  private async timeOf(seq: number): Promise<number> {
    const m = await this.jsm.streams.getMessage(this.stream, { seq });
    return m?.time.getTime() ?? 0;
  }

  /** Right after the last message delivered in order; before any, where the range begins. */
  private resumeFrom(): { seq?: number; time?: Date } {
    if (this.lastSeq > 0) return { seq: this.lastSeq + 1 };
    return this.range.fromTime ? { time: this.range.fromTime } : { seq: this.range.fromSeq ?? 1 };
  }

  private async start(from: { seq?: number; time?: Date }): Promise<void> {
    const gen = ++this.generation;
    const inbox = `_INBOX.${nuid.next()}`;
    this.inbox = inbox;
    this.sub = this.nc.subscribe(inbox, { callback: (_e, m) => this.receive(gen, m) });
    const info = await this.jsm.consumers.add(this.stream, {
      ack_policy: AckPolicy.None,
      // The stream holds corral.evt.> only (stream.ts): unfiltered is the same consumer, but with
      // a filter nats-server 2.9 counts its pending messages subject by subject at creation, ~0.2 s
      // from the middle of a 500,000-event stream (1 ms unfiltered): every `--at` and `diff` paid it.
      ...(this.range.filter === ALL_EVENTS ? {} : { filter_subject: this.range.filter }),
      mem_storage: true,
      num_replicas: 1,
      inactive_threshold: nanos(30_000),
      ...(from.time
        ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: from.time.toISOString() }
        : from.seq && from.seq > 1
          ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from.seq }
          : { deliver_policy: DeliverPolicy.All }),
    });
    if (gen !== this.generation) return;
    this.consumer = info.name;
    this.nextDseq = 1;
    this.requested = 0;
    this.took = 0;
    this.lastProgress = Date.now(); // a slow start is not a stall
    this.pull();
  }

  private pull(): void {
    const { batch } = this.range;
    while (!this.done && this.consumer && this.requested - this.took < 2 * batch) {
      this.requested += batch;
      const req = JSON.stringify({ batch, expires: nanos(30_000) });
      this.nc.publish(`$JS.API.CONSUMER.MSG.NEXT.${this.stream}.${this.consumer}`, req, {
        reply: this.inbox,
      });
    }
  }

  private receive(gen: number, msg: Msg): void {
    if (gen !== this.generation || this.done) return;
    // Data messages carry a $JS.ACK reply; only status messages need their headers parsed
    // (parsing every data message's headers costs ~7% of a rebuild). Read as bytes: decoding
    // each reply to a string cost ~4%.
    const reply = replyBytesOf(msg);
    if (!isAck(reply)) {
      this.status(msg);
      return;
    }
    parseAck(reply);
    const { sseq, dseq, time } = ack;
    if (this.dropHook?.(dseq, sseq)) return;
    if (dseq !== this.nextDseq) {
      this.stats.gaps++;
      this.restart();
      return;
    }
    this.nextDseq++;
    this.lastProgress = Date.now();
    if (sseq > this.range.toSeq) {
      this.finish();
      return;
    }
    this.lastSeq = sseq;
    this.stats.messages++;
    try {
      this.reader.message(sseq, time, msg);
    } catch (err) {
      this.finish(err as Error);
      return;
    }
    if (sseq === this.range.toSeq) this.finish();
  }

  /** A pull request's status: expired (ask again) or the consumer gone (start again). */
  private status(msg: Msg): void {
    const code = msg.headers?.code ?? 0;
    if (code === 408 || code === 404) {
      // A pull request expired: forget what it did not deliver and ask again.
      const left = Number(msg.headers?.get("Nats-Pending-Messages") || 0);
      this.requested -= left > 0 ? left : 0;
      this.pull();
    } else if (code === 409) {
      this.restart(); // consumer deleted or leadership changed
    }
  }

  private restart(): void {
    if (this.restarting || this.done) return;
    this.restarting = true;
    this.stats.resets++;
    // Drop everything after the last in-order message; it will be delivered again.
    this.stop();
    this.start(this.resumeFrom())
      .catch((err: unknown) => this.finish(err as Error))
      .finally(() => {
        this.restarting = false;
      });
  }

  private finish(err?: Error): void {
    if (this.done) return;
    this.close();
    this.reader.end(err);
  }

  private stop(): void {
    this.generation++;
    this.sub?.unsubscribe();
    this.sub = undefined;
    if (this.consumer) {
      const name = this.consumer;
      this.consumer = "";
      this.jsm.consumers.delete(this.stream, name).catch(() => {}); // inactive_threshold reaps it otherwise
    }
  }
}

/** The last ack subject's delivery metadata (see parseAck); module state: no object per message. */
const ack = { sseq: 0, dseq: 0, time: 0 };

const ACK_PREFIX = new TextEncoder().encode("$JS.ACK.");

function isAck(reply: Uint8Array): boolean {
  if (reply.length <= ACK_PREFIX.length) return false;
  for (let i = 0; i < ACK_PREFIX.length; i++) if (reply[i] !== ACK_PREFIX[i]) return false;
  return true;
}

/**
 * Delivery metadata from a JetStream ack subject (its bytes) into `ack`, scanned backwards without
 * splitting it (this runs once per message, allocating nothing):
 * `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>`; the v2 form adds domain
 * and account hash up front and a random token at the end, which is skipped because it is not a
 * number.
 */
function parseAck(reply: Uint8Array): void {
  // A subject too short to hold them leaves NaN: no delivery sequence matches it (a gap, re-read).
  ack.sseq = Number.NaN;
  ack.dseq = Number.NaN;
  ack.time = Number.NaN;
  let found = 0; // numeric fields seen, from the end: pending, ts (ns), dseq, sseq
  let value = 0;
  let scale = 1;
  let numeric = true;
  for (let i = reply.length - 1; i >= 0 && found < 4; i--) {
    const c = reply[i] as number;
    if (c === 46 /* . */) {
      if (numeric && scale > 1) {
        if (found === 1) ack.time = value / 1e6;
        else if (found === 2) ack.dseq = value;
        else if (found === 3) ack.sseq = value;
        found++;
      }
      value = 0;
      scale = 1;
      numeric = true;
    } else if (c >= 48 && c <= 57) {
      value += (c - 48) * scale;
      scale *= 10;
    } else {
      numeric = false;
    }
  }
}
