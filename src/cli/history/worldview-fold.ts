import { CheckpointStore } from "../../projections/checkpoints.ts";
import {
  WORLDVIEW_VERSION,
  type Worldview,
  type WorldviewState,
  worldviewProjection,
} from "../../projections/worldview.ts";
import type { EventStore } from "../../store/event-store.ts";
import type { StoredRecord } from "../../store/records.ts";
import { scan } from "./scan.ts";

/**
 * The worldview folded up to `seq`: from the saved checkpoint when it is at or before `seq` (as
 * `corral worldview --at` does, src/projections/runner.ts `at`), else from the start.
 */
export async function worldviewAt(
  store: EventStore,
  seq: number,
): Promise<{ state: WorldviewState; seq: number }> {
  const cps = await CheckpointStore.open(store.nc, { create: false, integrity: store.integrity }).catch(
    () => undefined,
  );
  const cp = await cps?.get<Worldview>(worldviewProjection.name);
  if (cp && cp.version === WORLDVIEW_VERSION && cp.seq <= seq) {
    try {
      return { state: worldviewProjection.load(cp.state), seq: cp.seq };
    } catch {
      // A malformed checkpoint: fold from the start instead.
    }
  }
  return { state: worldviewProjection.init(), seq: 0 };
}

/** Folds (from, to] into `state`, calling `onRecord` after each record. */
export async function foldInto(
  store: EventStore,
  state: WorldviewState,
  range: { from: number; to: number; json: boolean },
  onRecord?: (r: StoredRecord) => void,
): Promise<void> {
  if (range.to <= range.from) return;
  await scan(store, { fromSeq: range.from + 1, toSeq: range.to, json: range.json }, (r) => {
    if (r.seq <= state.lastSeq) return; // a redelivery
    worldviewProjection.apply(state, r);
    onRecord?.(r);
  });
}
