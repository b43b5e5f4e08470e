import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { CheckpointStore } from "../projections/checkpoints.ts";
import { ProjectionRunner } from "../projections/runner.ts";
import type { SnapshotPolicy } from "../projections/snapshot-schedule.ts";
import { SnapshotStore } from "../projections/snapshots.ts";
import { type Worldview, type WorldviewRunner, worldviewProjection } from "../projections/worldview.ts";
import type { EventStore } from "../store/event-store.ts";

/**
 * The daemon's worldview (what `.status` reports), caught up with the stream when asked and
 * every few seconds — not pushed every event: only status reads it, and a live follower took
 * ~8 % off the acquire throughput (bench/acquire.ts). Catch-ups are shared: callers that come
 * while one runs wait for the next, so each answer includes everything stored before it asked.
 * It keeps snapshots at intervals for time travel (`corral worldview --at`, `corral diff`).
 */
export class DaemonWorldview {
  private running: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  private readonly timer: NodeJS.Timeout;

  private constructor(
    private readonly runner: WorldviewRunner,
    private readonly log: Logger,
    everyMs: number,
  ) {
    this.timer = setInterval(() => {
      this.fresh().catch((err: unknown) => this.log.warn({ err }, "worldview catch-up failed"));
    }, everyMs);
    this.timer.unref();
  }

  static async open(
    nc: NatsConnection,
    store: EventStore,
    log: Logger,
    everyMs = 2_000,
    snapshotPolicy?: Partial<SnapshotPolicy>,
  ): Promise<DaemonWorldview> {
    const bound = { logger: log, stream: store.identity };
    const checkpoints = await CheckpointStore.open(nc, bound);
    const snapshots = await SnapshotStore.open(nc, bound);
    const runner = new ProjectionRunner(store, worldviewProjection, {
      checkpoints,
      snapshots,
      snapshotPolicy,
      logger: log,
    });
    const w = new DaemonWorldview(runner, log, everyMs);
    await w.fresh();
    return w;
  }

  /** The worldview including every event stored before this call. */
  async now(): Promise<Worldview> {
    await this.fresh();
    return this.runner.view();
  }

  /** The stream sequence folded so far, without catching up (the metrics measure the lag). */
  get seq(): number {
    return this.runner.seq;
  }

  /** Stops the timer, lets a snapshot being written finish and writes a last checkpoint. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.running?.catch(() => {});
    await this.runner.settled();
    await this.runner
      .checkpoint()
      .catch((err: unknown) => this.log.warn({ err }, "worldview checkpoint failed"));
  }

  private fresh(): Promise<void> {
    if (!this.running) {
      this.running = this.runner
        .catchUp(undefined, { checkpoint: "due" })
        .then(() => {})
        .finally(() => {
          this.running = undefined;
        });
      return this.running;
    }
    // One is under way and may have started before our caller's events: run one more after it.
    this.queued ??= this.running
      .catch(() => {})
      .then(() => {
        this.queued = undefined;
        return this.fresh();
      });
    return this.queued;
  }
}
