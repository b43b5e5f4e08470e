import { formatWorldview, loadWorldview } from "../projections/index.ts";
import type { EventStore } from "../store/event-store.ts";
import type { Out } from "./output.ts";

/** `corral worldview [--at seq]`: the read model folded from the stream (up to `at`, if given). */
export async function worldview(
  store: EventStore,
  opts: { at?: number; json: boolean },
  out: Out,
): Promise<void> {
  const { seq, state, skipped } = await loadWorldview(store, opts.at === undefined ? {} : { at: opts.at });
  if (opts.json) {
    out.write(`${JSON.stringify({ seq, state, skipped })}\n`);
    return;
  }
  // The formatted view already names the last sequence folded in and what was skipped.
  const text = formatWorldview(state);
  out.write(text.endsWith("\n") ? text : `${text}\n`);
}
