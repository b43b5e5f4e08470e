import type { EventStore } from "../../store/event-store.ts";
import { parseSince } from "../args.ts";
import { CliError, EXIT } from "../exit.ts";

/** A point in the stream as typed: a sequence, a time, or the stream's end ("now"). */
export type Moment = { seq: number } | { time: Date } | { now: true };

/**
 * `1234` (right after that stream sequence; 0 is before the first event), `now`, `5m` (that long
 * ago: 90s, 5m, 2h, 1d) or an ISO time. A bad one is a usage error naming the text.
 */
export function parseMoment(text: string, what: string, now: () => number = Date.now): Moment {
  const t = text.trim();
  if (t === "now") return { now: true };
  if (/^\d+$/.test(t) && Number.isSafeInteger(Number(t))) return { seq: Number(t) };
  try {
    const since = parseSince(t, now);
    return "fromTime" in since ? { time: since.fromTime } : { seq: since.fromSeq };
  } catch (err) {
    throw new CliError(`${what} ${JSON.stringify(text)} is invalid: ${(err as Error).message}`, EXIT.usage);
  }
}

/** The last stream sequence at or before the moment (0: before the first event). */
export async function resolveMoment(store: EventStore, m: Moment, last: number): Promise<number> {
  if ("now" in m) return last;
  if ("seq" in m) return Math.min(m.seq, last);
  return (await firstAtOrAfter(store, m.time, last)) - 1;
}

/** The first sequence stored at or after `time`; `last + 1` when there is none. */
async function firstAtOrAfter(store: EventStore, time: Date, last: number): Promise<number> {
  // Checked here too: nats-server reads a start time past year 2262 as "from the beginning".
  if (last === 0 || time.getTime() > Date.now()) return last + 1;
  for await (const batch of store.read({ fromTime: time, toSeq: last, batch: 1 })) {
    const first = batch.find((r) => r.time >= time.getTime());
    if (first) return first.seq;
  }
  return last + 1;
}
