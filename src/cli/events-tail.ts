import type { EventStore } from "../store/event-store.ts";
import type { StoredRecord } from "../store/records.ts";
import type { Since } from "./args.ts";
import type { Printer } from "./output.ts";

export const DEFAULT_LAST = 20;

export interface TailOptions {
  /** Subject filter (one aggregate or one kind); default: every event. */
  subject?: string;
  /** Only these event types (matched client-side: the type is inside the msgpack body). */
  types?: readonly string[];
  since?: Since;
  /** Without `since`: how many of the newest events to show. With it: a cap (the newest N). */
  last?: number;
  follow?: boolean;
}

/** The event type of a record, also for an undecodable one whose type name was readable. */
function typeOf(r: StoredRecord): string | undefined {
  if (r.event) return r.event.type;
  const t = (r.error as { type?: unknown }).type;
  return typeof t === "string" ? t : undefined;
}

function typeMatcher(types: readonly string[] | undefined): (r: StoredRecord) => boolean {
  if (!types || types.length === 0) return () => true;
  const wanted = new Set(types);
  return (r) => {
    const t = typeOf(r);
    return t !== undefined && wanted.has(t);
  };
}

/** Keeps the newest `n` of what it is given. */
class Ring {
  private items: StoredRecord[] = [];
  constructor(private readonly n: number) {}
  push(r: StoredRecord): void {
    if (this.n === 0) return;
    this.items.push(r);
    // Trim in bulk rather than shift() per record: O(1) amortised.
    if (this.items.length >= 2 * this.n) this.items = this.items.slice(-this.n);
  }
  values(): StoredRecord[] {
    return this.items.slice(-this.n);
  }
}

/**
 * The newest `n` matching records at or before `last`, without reading the whole stream: read
 * windows backwards from the end, each four times larger than the one before, until `n` matched
 * or the start of the stream is reached. Unfiltered, the first window (exactly `n`) suffices;
 * with a subject filter the server skips non-matching messages inside each window.
 */
export async function lastMatching(
  store: EventStore,
  opts: { subject?: string; match: (r: StoredRecord) => boolean; n: number; first: number; last: number },
): Promise<StoredRecord[]> {
  const { n, first } = opts;
  if (n === 0 || opts.last < first) return [];
  let found: StoredRecord[] = [];
  let hi = opts.last;
  let size = n;
  while (hi >= first && found.length < n) {
    const lo = Math.max(first, hi - size + 1);
    const window: StoredRecord[] = [];
    // A small batch bounds what the reader fetches past `hi` when the filter matches nothing there.
    const batch = Math.min(2_000, size);
    for await (const records of store.read({ filter: opts.subject, fromSeq: lo, toSeq: hi, batch })) {
      for (const r of records) if (r.seq <= hi && opts.match(r)) window.push(r);
    }
    found = window.concat(found);
    hi = lo - 1;
    size *= 4;
  }
  return found.slice(-n);
}

/**
 * `corral events tail`: a bounded part (the last N, or everything since a point), then — with
 * `follow` — every new matching event until `signal` aborts. The stream's last sequence is read
 * once up front; the bounded read stops there and following starts right after it, so no event
 * is printed twice or missed between the two.
 */
export async function tail(
  store: EventStore,
  opts: TailOptions,
  printer: Printer,
  signal?: AbortSignal,
): Promise<void> {
  const match = typeMatcher(opts.types);
  const { state } = await store.jsm.streams.info(store.stream);
  const last = state.last_seq;
  const first = Math.max(1, state.first_seq);

  // Checked client-side too: nats-server reads a start time past year 2262 (int64 nanoseconds
  // overflow) as "from the beginning".
  const notBefore = opts.since && "fromTime" in opts.since ? opts.since.fromTime.getTime() : 0;
  if (opts.since) {
    const from =
      "fromSeq" in opts.since ? { fromSeq: opts.since.fromSeq } : { fromTime: opts.since.fromTime };
    const ring = opts.last === undefined ? undefined : new Ring(opts.last);
    if (last > 0 && notBefore <= Date.now()) {
      for await (const records of store.read({ filter: opts.subject, ...from, toSeq: last })) {
        for (const r of records) {
          if (r.seq > last || r.time < notBefore || !match(r)) continue;
          if (ring) ring.push(r);
          else printer.print(r);
        }
        if (signal?.aborted) return;
      }
    }
    for (const r of ring?.values() ?? []) printer.print(r);
  } else {
    const n = opts.last ?? DEFAULT_LAST;
    for (const r of await lastMatching(store, { subject: opts.subject, match, n, first, last })) {
      printer.print(r);
    }
  }

  if (!opts.follow || signal?.aborted) return;
  // A --since that lies in the future: follow from then, not from now.
  const fromSeq = opts.since && "fromSeq" in opts.since ? Math.max(last + 1, opts.since.fromSeq) : last + 1;
  for await (const r of store.follow({ filter: opts.subject, fromSeq }, signal)) {
    if (r.time >= notBefore && match(r)) printer.print(r);
  }
}
