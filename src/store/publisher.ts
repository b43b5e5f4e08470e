import type { Msg, MsgHdrs, NatsConnection, Subscription } from "@nats-io/nats-core";
import { headers, nuid } from "../vendor/nats.ts";
import { AppendTimeoutError, NoStreamError, StoreError } from "./errors.ts";
import { cannotMark, type EventKey, MARK_HEADER, type MarkInput } from "./event-mark.ts";

export interface PubAck {
  stream: string;
  seq: number;
  duplicate: boolean;
}

/** The server said "wrong last sequence": carries the subject's current last sequence. */
export class WrongLastSequence extends StoreError {
  override name = "WrongLastSequence";
  constructor(readonly currentSeq: number) {
    super(`wrong last sequence: ${currentSeq}`);
  }
}

interface Pending {
  subject: string;
  data: Uint8Array;
  msgId: string;
  expected: number | undefined;
  /** Set once the publish is sent (a mark to make first waits for the turn's burst: `markQueued`). */
  hdrs: MsgHdrs | undefined;
  /** The key to mark it with at send time. */
  markWith: EventKey | undefined;
  deadline: number;
  triesLeft: number;
  resolve: (ack: PubAck) => void;
  reject: (err: Error) => void;
}

export interface PublisherOptions {
  /** How long to wait for a JetStream ack before publishing again with the same Nats-Msg-Id. */
  ackTimeoutMs: number;
  /** Re-publishes after a lost ack; the msg id makes them idempotent within the duplicate window. */
  retries: number;
}

const JS_WRONG_LAST_SEQUENCE = 10071;
/** Printable ASCII only: such a value needs no escaping or encoding in a header line. */
const PLAIN = /^[\x20-\x7e]*$/;

/**
 * An append's headers. nats.js builds a header block through a map, a validation per value and a
 * string per line (~3 µs, as much as the rest of a publish); the block is written here in one
 * string, in the client's own layout. The client only ever calls `encode()` on headers it
 * publishes (nats-core's protocol.js); a value that is not plain ASCII takes the client's path.
 */
function headerBlock(msgId: string, expected: number | undefined, mark: string | undefined): MsgHdrs {
  if (!PLAIN.test(msgId) || (mark !== undefined && !PLAIN.test(mark))) {
    const h = headers();
    h.set("Nats-Msg-Id", msgId);
    if (expected !== undefined) h.set("Nats-Expected-Last-Subject-Sequence", String(expected));
    if (mark !== undefined) h.set(MARK_HEADER, mark);
    return h;
  }
  let block = `NATS/1.0\r\nNats-Msg-Id: ${msgId.trim()}`;
  if (expected !== undefined) block += `\r\nNats-Expected-Last-Subject-Sequence: ${expected}`;
  if (mark !== undefined) block += `\r\n${MARK_HEADER}: ${mark}`;
  const bytes = Buffer.from(`${block}\r\n\r\n`, "latin1");
  return Object.assign(headers(), { encode: () => bytes });
}
const utf8 = new TextDecoder();

/**
 * Publishes to JetStream without one request (and one timer) per message: every publish carries a
 * reply subject under one wildcard inbox, and a single subscription matches acks to publishes by
 * token. Many appends can be in flight at once, so throughput is bounded by the server, not by
 * round trips. Timeouts are swept on a coarse interval instead of per-message timers.
 */
export class PipelinedPublisher {
  private readonly prefix = `_INBOX.${nuid.next()}.`;
  private readonly pending = new Map<string, Pending>();
  private readonly sub: Subscription;
  private readonly sweeper: NodeJS.Timeout;
  private next = 0;
  private closed = false;
  /** Publishes of this turn of the event loop, sent together (see `send`). */
  private queue: string[] = [];

  constructor(
    private readonly nc: NatsConnection,
    private readonly opts: PublisherOptions = { ackTimeoutMs: 5_000, retries: 2 },
  ) {
    this.sub = nc.subscribe(`${this.prefix}*`, { callback: (_err, msg) => this.onReply(msg) });
    this.sweeper = setInterval(() => this.sweep(), Math.min(250, opts.ackTimeoutMs / 4));
    this.sweeper.unref();
  }

  get inFlight(): number {
    return this.pending.size;
  }

  publish(
    subject: string,
    data: Uint8Array,
    msgId: string,
    expectedLastSubjectSeq?: number,
    /**
     * Its Corral-Mark (src/store/event-mark.ts): as written, or the writer's key to mark it with,
     * after `expectedLastSubjectSeq` (0 without), together with the other publishes of this turn.
     */
    mark?: string | EventKey,
  ): Promise<PubAck> {
    if (this.closed) return Promise.reject(new StoreError("publisher is closed"));
    const markWith = typeof mark === "object" ? mark : undefined;
    const hdrs = typeof mark === "object" ? undefined : headerBlock(msgId, expectedLastSubjectSeq, mark);
    const token = (this.next++).toString(36);
    return new Promise<PubAck>((resolve, reject) => {
      this.pending.set(token, {
        subject,
        data,
        msgId,
        expected: expectedLastSubjectSeq,
        hdrs,
        markWith,
        deadline: Date.now() + this.opts.ackTimeoutMs,
        triesLeft: this.opts.retries,
        resolve,
        reject,
      });
      this.send(token);
    });
  }

  /**
   * Queues a publish for the end of this turn of the event loop. nats.js flushes its outbound
   * buffer on a microtask, so publishes made by promise continuations at different depths (each
   * ack resolves an append, whose next publish comes a few hops later) went out as one socket
   * write each: a third of an append's time. Sent together they are one write.
   */
  private send(token: string): void {
    if (this.queue.length === 0) setImmediate(this.drain);
    this.queue.push(token);
  }

  private readonly drain = (): void => {
    const queue = this.queue;
    this.queue = [];
    if (this.closed) return; // close() has rejected them
    this.markQueued(queue);
    for (const token of queue) {
      const p = this.pending.get(token);
      if (!p?.hdrs) continue;
      try {
        this.nc.publish(p.subject, p.data, { reply: this.prefix + token, headers: p.hdrs });
      } catch (err) {
        // Too large for the server, connection closed: that append fails, the others go on.
        this.pending.delete(token);
        p.reject(err instanceof Error ? err : new StoreError(String(err)));
      }
    }
  };

  /**
   * Marks the queued publishes that carry a key, all of a key's at once: a burst of appends costs
   * two MAC calls, not one per append (src/store/mark-mac.ts). One that cannot be marked fails alone.
   */
  private markQueued(queue: readonly string[]): void {
    const byKey = new Map<EventKey, { token: string; p: Pending }[]>();
    for (const token of queue) {
      const p = this.pending.get(token);
      if (!p?.markWith || p.hdrs) continue;
      const group = byKey.get(p.markWith);
      if (group) group.push({ token, p });
      else byKey.set(p.markWith, [{ token, p }]);
    }
    for (const [key, group] of byKey) {
      const inputs: MarkInput[] = group.map(({ p }) => ({
        subject: p.subject,
        prev: p.expected ?? 0,
        body: p.data,
      }));
      const marks = key.markAll(inputs);
      group.forEach(({ token, p }, i) => {
        const mark = marks[i];
        if (mark !== undefined) {
          p.hdrs = headerBlock(p.msgId, p.expected, mark);
          return;
        }
        this.pending.delete(token);
        p.reject(cannotMark(inputs[i] as MarkInput));
      });
    }
  }

  private onReply(msg: Msg): void {
    const token = msg.subject.slice(this.prefix.length);
    const p = this.pending.get(token);
    if (!p) return; // a late ack for a publish we already retried and settled
    this.pending.delete(token);
    if (msg.headers?.code === 503) {
      p.reject(new NoStreamError(`no JetStream stream accepts ${p.subject} (no responders)`));
      return;
    }
    let ack: {
      stream?: string;
      seq?: number;
      duplicate?: boolean;
      error?: { code: number; err_code: number; description: string };
    };
    try {
      ack = JSON.parse(utf8.decode(msg.data));
    } catch {
      p.reject(new StoreError(`unreadable JetStream ack on ${p.subject}`));
      return;
    }
    if (ack.error) {
      if (ack.error.err_code === JS_WRONG_LAST_SEQUENCE) {
        const m = /(\d+)\s*$/.exec(ack.error.description);
        p.reject(new WrongLastSequence(m ? Number(m[1]) : -1));
      } else {
        p.reject(new StoreError(`JetStream refused ${p.subject}: ${ack.error.description}`));
      }
      return;
    }
    p.resolve({ stream: ack.stream ?? "", seq: ack.seq ?? 0, duplicate: ack.duplicate === true });
  }

  private sweep(): void {
    const now = Date.now();
    for (const [token, p] of this.pending) {
      if (p.deadline > now) continue;
      if (!p.hdrs) continue; // not sent yet
      if (p.triesLeft > 0 && !this.nc.isClosed()) {
        // Same bytes, same Nats-Msg-Id: if the first one was stored, the server answers "duplicate".
        p.triesLeft--;
        p.deadline = now + this.opts.ackTimeoutMs;
        this.nc.publish(p.subject, p.data, { reply: this.prefix + token, headers: p.hdrs });
      } else {
        this.pending.delete(token);
        p.reject(
          new AppendTimeoutError(
            `no JetStream ack for ${p.subject} after ${this.opts.retries + 1} attempts of ${this.opts.ackTimeoutMs} ms`,
          ),
        );
      }
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    this.sub.unsubscribe();
    for (const p of this.pending.values())
      p.reject(new StoreError("publisher closed before the ack arrived"));
    this.pending.clear();
  }
}
