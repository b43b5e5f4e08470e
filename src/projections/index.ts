import type { EventStore } from "../store/event-store.ts";
import { CheckpointStore } from "./checkpoints.ts";
import type { ProjectionLogger } from "./projection.ts";
import { ProjectionRunner } from "./runner.ts";
import { SnapshotStore } from "./snapshots.ts";
import { type Worldview, type WorldviewRunner, worldviewProjection } from "./worldview.ts";

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
export * from "./snapshot-schedule.ts";
export * from "./snapshots.ts";
export * from "./worldview.ts";

/**
 * A read-only worldview runner that starts from the daemon's checkpoint or its nearest snapshot
 * (none when their bucket cannot be opened: it folds from the start).
 */
export async function savedWorldviewRunner(
  store: EventStore,
  logger?: ProjectionLogger,
): Promise<WorldviewRunner> {
  const opts = { create: false, logger, integrity: store.integrity, stream: store.identity };
  const [checkpoints, snapshots] = await Promise.all([
    CheckpointStore.open(store.nc, opts).catch(() => undefined),
    SnapshotStore.open(store.nc, opts).catch(() => undefined),
  ]);
  return new ProjectionRunner(store, worldviewProjection, { checkpoints, snapshots, readOnly: true, logger });
}

/**
 * The worldview now (or as of stream sequence `at`), for one-shot readers such as the CLI:
 * resumes from the saved checkpoint or snapshot nearest before `at` (never one past it), folds the rest,
 * and writes nothing back. `seq` is the last stream sequence folded in.
 */
export async function loadWorldview(
  store: EventStore,
  opts: { at?: number; useCheckpoint?: boolean; logger?: ProjectionLogger } = {},
): Promise<{ seq: number; state: Worldview; skipped: Record<string, number> }> {
  const runner =
    opts.useCheckpoint === false
      ? new ProjectionRunner(store, worldviewProjection, { readOnly: true, logger: opts.logger })
      : await savedWorldviewRunner(store, opts.logger);
  let state: Worldview;
  if (opts.at === undefined) {
    await runner.catchUp();
    state = runner.view();
  } else {
    state = (await runner.at(opts.at)).state;
  }
  return { seq: state.lastSeq, state, skipped: { ...state.skipped } };
}
