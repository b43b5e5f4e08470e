import { decodeEvent } from "../../codec/msgpack.ts";
import type { CorralEvent } from "../../events/catalogue.ts";
import type { AnyEventView } from "../../events/reads.ts";
import type { EventStore } from "../../store/event-store.ts";
import type { EventDecoder, StoredRecord } from "../../store/records.ts";
import { progress } from "../progress.ts";

export interface ScanOptions {
  /** One aggregate's subject, one kind's, or (default) every event. */
  filter?: string;
  fromSeq?: number;
  fromTime?: Date;
  /** The last sequence to read (inclusive). */
  toSeq: number;
  /** `--json` output: no progress line, whatever stderr is. */
  json: boolean;
}

/**
 * Reads a bounded range record by record, with the progress line (progress.ts) on a terminal.
 * Every history command reads through here, so each one shows progress alike.
 */
export function scan(
  store: EventStore,
  opts: ScanOptions,
  onRecord: (r: StoredRecord) => void,
): Promise<number> {
  return scanAs<CorralEvent>(store, opts, decodeEvent, onRecord);
}

/** As scan, each event decoded by `decode` (a fold into the worldview reads only what it folds). */
export async function scanAs<E extends AnyEventView>(
  store: EventStore,
  opts: ScanOptions,
  decode: EventDecoder<E>,
  onRecord: (r: StoredRecord<E>) => void,
): Promise<number> {
  if (opts.toSeq < 1) return 0;
  const shown = progress({ toSeq: opts.toSeq, json: opts.json });
  let n = 0;
  try {
    const range = { filter: opts.filter, toSeq: opts.toSeq };
    const from = opts.fromTime ? { fromTime: opts.fromTime } : { fromSeq: opts.fromSeq ?? 1 };
    for await (const batch of store.read({ ...range, ...from, decode })) {
      for (const r of batch) {
        if (r.seq > opts.toSeq) continue;
        onRecord(r);
      }
      n += batch.length;
      const last = batch.at(-1);
      if (last) shown.add(batch.length, last.seq);
    }
  } finally {
    shown.done();
  }
  return n;
}
