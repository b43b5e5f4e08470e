import type { EventStore } from "../store/event-store.ts";
import { CheckpointStore } from "./checkpoints.ts";
import type { ProjectionLogger } from "./projection.ts";
import { ProjectionRunner } from "./runner.ts";
import { type Worldview, worldviewProjection } from "./worldview.ts";

export * from "./agents.ts";
export * from "./checkpoints.ts";
export * from "./commands.ts";
export * from "./format.ts";
export * from "./leases.ts";
export * from "./pools.ts";
export * from "./ports.ts";
export * from "./projection.ts";
export * from "./runner.ts";
export * from "./slice.ts";
export * from "./worldview.ts";

/**
 * The worldview now (or as of stream sequence `at`), for one-shot readers such as the CLI:
 * resumes from the saved checkpoint when one is usable (never one past `at`), folds the rest,
 * and writes nothing back. `seq` is the last stream sequence folded in.
 */
export async function loadWorldview(
  store: EventStore,
  opts: { at?: number; useCheckpoint?: boolean; logger?: ProjectionLogger } = {},
): Promise<{ seq: number; state: Worldview; skipped: Record<string, number> }> {
  const checkpoints =
    opts.useCheckpoint === false
      ? undefined
      : await CheckpointStore.open(store.nc, {
          create: false,
          logger: opts.logger,
          integrity: store.integrity,
        }).catch(() => undefined);
  const runner = new ProjectionRunner(store, worldviewProjection, {
    checkpoints,
    readOnly: true,
    logger: opts.logger,
  });
  let state: Worldview;
  if (opts.at === undefined) {
    await runner.catchUp();
    state = runner.view();
  } else {
    state = (await runner.at(opts.at)).state;
  }
  return { seq: state.lastSeq, state, skipped: { ...state.skipped } };
}
