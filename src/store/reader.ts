import { AckPolicy, DeliverPolicy, type JetStreamManager } from "@nats-io/jetstream";
import { type Msg, type NatsConnection, nanos, nuid, type Subscription } from "@nats-io/nats-core";
import type { Verifier } from "./integrity.ts";
import { type OffThread, RecordBatches } from "./record-batches.ts";
import type { StoredRecord } from "./records.ts";
import { ALL_EVENTS } from "./subjects.ts";

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
  /** With a key: a long read's marks are hashed off the main thread (record-batches.ts). */
  offThread?: OffThread;
}

export interface RangeStats {
  messages: number;
  /** Times the reader threw away a consumer and resumed after its last contiguous message. */
  resets: number;
  /** Delivery-sequence gaps seen (messages the transport lost); each one caused a reset. */
  gaps: number;
}

/** Test seam: pretend the transport dropped this delivery, to prove gaps are caught. */
export type DropHook = (deliverySeq: number, streamSeq: number) => boolean;

/**
 * Reads a range of the stream fast: an ephemeral pull consumer without acks, batched pull
 * requests on one plain inbox subscription, and the delivery metadata parsed straight from the
 * reply subject. Core NATS delivery may drop messages, so every delivery sequence is checked to
 * be contiguous; a gap (or a stall) restarts the consumer right after the last message that was
 * delivered in order. Yields arrays of records to keep per-message overhead low.
 */
export async function* readRange(
  nc: NatsConnection,
  jsm: JetStreamManager,
  stream: string,
  opts: RangeOptions = {},
  stats: RangeStats = { messages: 0, resets: 0, gaps: 0 },
  dropHook?: DropHook,
): AsyncGenerator<StoredRecord[]> {
  const filter = opts.filter ?? ALL_EVENTS;
  const batch = opts.batch ?? 2_000;
  const stallMs = opts.stallMs ?? 5_000;
  const verify = opts.verify;
  // The read ends at the last message matching the filter as it starts (or at `toSeq`, if that
  // comes first). Not at a consumer's pending count of 0: nats-server 2.9 miscounts it after
  // concurrent appends, too high (a read that never ended) or too low (one that ended early).
  const last = await lastMatching(jsm, stream, filter);
  const toSeq = Math.min(opts.toSeq ?? last, last);
  if (toSeq === 0 || (opts.fromSeq !== undefined && opts.fromSeq > toSeq)) return;

  // Filled as messages arrive; sealed (its marks checked) before it is handed on, in order.
  const batches = new RecordBatches(verify, opts.offThread);
  const sealed: Promise<StoredRecord[]>[] = [];
  let wake: (() => void) | undefined;
  let failure: Error | undefined;
  let done = false;
  let lastSeq = 0; // last stream seq delivered in order
  let nextDseq = 1; // delivery seq we expect next from the current consumer
  let requested = 0; // messages asked for from the current consumer
  let yielded = 0; // messages handed to our caller from the current consumer
  let lastProgress = Date.now();
  let consumer = "";
  let inbox = "";
  let sub: Subscription | undefined;
  let generation = 0;

  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const finish = () => {
    done = true;
    notify();
  };
  const pull = () => {
    // Keep at most two batches between the server and our caller.
    while (!done && requested - yielded < 2 * batch) {
      requested += batch;
      const req = JSON.stringify({ batch, expires: nanos(30_000) });
      nc.publish(`$JS.API.CONSUMER.MSG.NEXT.${stream}.${consumer}`, req, { reply: inbox });
    }
  };

  const onMsg = (gen: number, msg: Msg) => {
    if (gen !== generation || done) return;
    // Data messages carry a $JS.ACK reply; only status messages need their headers parsed
    // (parsing every data message's headers costs ~7% of a rebuild).
    if (!msg.reply?.startsWith("$JS.ACK.")) {
      const code = msg.headers?.code ?? 0;
      if (code === 408 || code === 404) {
        // A pull request expired: forget what it did not deliver and ask again.
        const left = Number(msg.headers?.get("Nats-Pending-Messages") || 0);
        requested -= left > 0 ? left : 0;
        pull();
      } else if (code === 409) {
        void restart(); // consumer deleted or leadership changed
      }
      return;
    }
    parseAck(msg.reply);
    const { sseq, dseq, time } = ack;
    if (dropHook?.(dseq, sseq)) return;
    if (dseq !== nextDseq) {
      stats.gaps++;
      void restart();
      return;
    }
    nextDseq++;
    lastProgress = Date.now();
    if (sseq > toSeq) {
      finish();
      return;
    }
    lastSeq = sseq;
    stats.messages++;
    batches.add(sseq, msg.subject, time, msg);
    if (sseq === toSeq) finish();
    else if (batches.size >= batch) {
      sealed.push(batches.seal());
      notify();
    }
  };

  const start = async (from: { seq?: number; time?: Date }) => {
    const gen = ++generation;
    inbox = `_INBOX.${nuid.next()}`;
    sub = nc.subscribe(inbox, { callback: (_e, m) => onMsg(gen, m) });
    const cfg = {
      ack_policy: AckPolicy.None,
      // The stream holds corral.evt.> only (stream.ts): unfiltered is the same consumer, but with
      // a filter nats-server 2.9 counts its pending messages subject by subject at creation, ~0.2 s
      // from the middle of a 500,000-event stream (1 ms unfiltered): every `--at` and `diff` paid it.
      ...(filter === ALL_EVENTS ? {} : { filter_subject: filter }),
      mem_storage: true,
      num_replicas: 1,
      inactive_threshold: nanos(30_000),
      ...(from.time
        ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: from.time.toISOString() }
        : from.seq && from.seq > 1
          ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from.seq }
          : { deliver_policy: DeliverPolicy.All }),
    };
    const info = await jsm.consumers.add(stream, cfg);
    if (gen !== generation) return;
    consumer = info.name;
    nextDseq = 1;
    requested = 0;
    yielded = 0;
    lastProgress = Date.now();
    pull();
  };

  const stop = () => {
    sub?.unsubscribe();
    sub = undefined;
    if (consumer) {
      const name = consumer;
      consumer = "";
      jsm.consumers.delete(stream, name).catch(() => {}); // inactive_threshold reaps it otherwise
    }
  };

  let restarting = false;
  const restart = async () => {
    if (restarting || done) return;
    restarting = true;
    stats.resets++;
    // Drop everything after the last in-order message; it will be delivered again.
    stop();
    generation++;
    try {
      await start({ seq: lastSeq + 1 });
    } catch (err) {
      failure = err as Error;
      finish();
    } finally {
      restarting = false;
    }
  };

  const watchdog = setInterval(
    () => {
      if (!done && !restarting && Date.now() - lastProgress > stallMs) void restart();
    },
    Math.max(100, Math.floor(stallMs / 4)),
  );
  watchdog.unref();

  try {
    await start(opts.fromTime ? { time: opts.fromTime } : { seq: opts.fromSeq ?? 1 });
    while (true) {
      // A partial batch is handed on at once (a caller waits for it), unless the worker would
      // take it: a round trip per few messages would cost more than checking them here.
      if (sealed.length === 0 && batches.size > 0 && (done || !batches.staging)) sealed.push(batches.seal());
      const next = sealed.shift();
      if (next) {
        const out = await next;
        yielded += out.length;
        lastProgress = Date.now(); // a slow caller is not a stalled server
        if (!done) pull();
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
    done = true;
    clearInterval(watchdog);
    stop();
  }
}

/** Stream sequence of the last message on `filter` (0 when there is none). */
async function lastMatching(jsm: JetStreamManager, stream: string, filter: string): Promise<number> {
  const m = await jsm.streams.getMessage(stream, { last_by_subj: filter });
  return m?.seq ?? 0;
}

/** The last ack subject's delivery metadata (see parseAck); module state: no object per message. */
const ack = { sseq: 0, dseq: 0, time: 0 };

/**
 * Delivery metadata from a JetStream ack subject into `ack`, scanned backwards without splitting
 * it (this runs once per message, allocating nothing):
 * `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>`; the v2 form adds domain
 * and account hash up front and a random token at the end, which is skipped because it is not a
 * number.
 */
function parseAck(reply: string): void {
  // A subject too short to hold them leaves NaN: no delivery sequence matches it (a gap, re-read).
  ack.sseq = Number.NaN;
  ack.dseq = Number.NaN;
  ack.time = Number.NaN;
  let found = 0; // numeric fields seen, from the end: pending, ts (ns), dseq, sseq
  let value = 0;
  let scale = 1;
  let numeric = true;
  for (let i = reply.length - 1; i >= 0 && found < 4; i--) {
    const c = reply.charCodeAt(i);
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
