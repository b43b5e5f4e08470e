import { savedWorldviewRunner } from "../../projections/index.ts";
import { type WorldviewState, worldviewProjection } from "../../projections/worldview.ts";
import type { EventStore } from "../../store/event-store.ts";
import { scanAs } from "./scan.ts";

/**
 * A worldview to fold on from towards `seq`: the daemon's checkpoint or snapshot nearest at or
 * before `seq` (as `corral worldview --at` starts, src/projections/runner.ts `startAt`), else the
 * initial one (seq 0). Fold the rest with `foldInto`.
 */
export async function worldviewAt(
  store: EventStore,
  seq: number,
): Promise<{ state: WorldviewState; seq: number }> {
  return (await savedWorldviewRunner(store)).startAt(seq);
}

/** Folds (from, to] into `state`, reading the events as the worldview does (only what it folds). */
export async function foldInto(
  store: EventStore,
  state: WorldviewState,
  range: { from: number; to: number; json: boolean },
): Promise<void> {
  if (range.to <= range.from) return;
  const opts = { fromSeq: range.from + 1, toSeq: range.to, json: range.json };
  await scanAs(store, opts, worldviewProjection.decode, (r) => {
    if (r.seq <= state.lastSeq) return; // a redelivery
    worldviewProjection.apply(state, r);
  });
}
