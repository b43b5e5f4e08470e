import type { CorralEvent } from "../events/catalogue.ts";
import type { AnyEventView } from "../events/reads.ts";
import type { EventStore } from "../store/event-store.ts";
import type { StoredRecord } from "../store/records.ts";
import type { CheckpointStore, PutResult } from "./checkpoints.ts";
import { type OnSkip, type Projection, type ProjectionLogger, silent } from "./projection.ts";
import { type SnapshotPolicy, SnapshotSchedule } from "./snapshot-schedule.ts";
import type { SnapshotStore } from "./snapshots.ts";

export interface RunnerOptions {
  /** Where checkpoints live; without one the runner always folds from the start. */
  checkpoints?: CheckpointStore;
  /** Read checkpoints, never write them (for one-shot readers such as the CLI). */
  readOnly?: boolean;
  /** Checkpoint after about this many records (at batch boundaries); 0: only when caught up. */
  checkpointEvery?: number;
  /**
   * While catching up, at most one checkpoint this often (default 1,000 ms, by `now`): a worldview
   * checkpoint is ~150 KB to encode and store, and one every 10,000 records took a third of a
   * rebuild's time. The one at the end of a catch-up is always written.
   */
  checkpointMinIntervalMs?: number;
  /**
   * Snapshots at intervals, for time travel: `at` and `resume` start from the nearest one when it
   * is newer than the checkpoint; unless read-only, the runner takes them as `snapshotPolicy` says.
   */
  snapshots?: SnapshotStore;
  snapshotPolicy?: Partial<SnapshotPolicy>;
  /** The clock the snapshot policy's and the checkpoints' intervals are measured by. */
  now?: () => number;
  /** Messages per pull request of the catch-up reader. */
  batch?: number;
  logger?: ProjectionLogger;
}

export interface CatchUpResult {
  /** Sequence the catch-up started after. */
  from: number;
  /** Sequence the state now includes. */
  seq: number;
  records: number;
  checkpoint: CheckpointResult;
}

/**
 * "unchanged": the last checkpoint already holds this position; "none": no store, or read-only;
 * "deferred": fewer than `checkpointEvery` records since the last one, and not asked for always.
 */
export type CheckpointResult = PutResult | "unchanged" | "none" | "deferred";

/**
 * Drives a projection over the event store: resumes from its checkpoint, catches up with the
 * fast range reader, follows live with an ordered consumer, and checkpoints as it goes. Poison
 * records are folded in as skips (counted by the projection, logged here with their sequence);
 * nothing in the stream can stop it.
 */
export class ProjectionRunner<S, V, E extends AnyEventView = CorralEvent> {
  private s: S;
  private pos = 0;
  private resumed = false;
  private checkpointedAt = -1;
  /** Records folded since the last checkpoint attempt. */
  private uncheckpointed = 0;
  private readonly log: ProjectionLogger;
  private readonly every: number;
  private readonly schedule: SnapshotSchedule | undefined;
  /** The checkpoint being written while folding goes on (checkpointIfDue). */
  private writing: Promise<void> | undefined;
  /** When the last checkpoint was attempted (by `now`). */
  private checkpointTried = Number.NEGATIVE_INFINITY;
  private readonly now: () => number;
  private readonly minInterval: number;

  constructor(
    readonly store: EventStore,
    readonly projection: Projection<S, V, E>,
    private readonly opts: RunnerOptions = {},
  ) {
    this.s = projection.init();
    this.log = opts.logger ?? silent;
    this.every = opts.checkpointEvery ?? 10_000;
    this.now = opts.now ?? Date.now;
    this.minInterval = opts.checkpointMinIntervalMs ?? 1_000;
    this.schedule =
      opts.snapshots && !opts.readOnly ? new SnapshotSchedule(opts.snapshotPolicy, opts.now) : undefined;
  }

  /** Stream sequence the state includes (0: nothing folded yet). */
  get seq(): number {
    return this.pos;
  }

  /** The working state; it changes as records arrive. Use `view()` for a plain copy. */
  get state(): S {
    return this.s;
  }

  view(): V {
    return this.projection.save(this.s);
  }

  /** Loads the checkpoint, once; returns the sequence folding resumes after. */
  async resume(): Promise<number> {
    if (this.resumed) return this.pos;
    this.resumed = true;
    await this.noteKeptSnapshots();
    const loaded = await this.loadSaved(Number.POSITIVE_INFINITY);
    if (loaded) {
      this.s = loaded.state;
      this.pos = loaded.seq;
      this.checkpointedAt = loaded.seq;
    }
    return this.pos;
  }

  /**
   * Folds everything after the current position (up to `toSeq`), then checkpoints — always, or
   * with `checkpoint: "due"` only once `checkpointEvery` records have come since the last one
   * (for callers that catch up often, such as a daemon answering status requests).
   */
  async catchUp(toSeq?: number, opts: { checkpoint?: "always" | "due" } = {}): Promise<CatchUpResult> {
    await this.resume();
    const from = this.pos;
    let records = 0;
    for await (const batch of this.read(from + 1, toSeq)) {
      this.pos = this.applyBatch(this.s, batch, this.pos);
      records += batch.length;
      this.uncheckpointed += batch.length;
      this.offerSnapshot();
      this.checkpointIfDue();
    }
    const due = opts.checkpoint !== "due" || (this.every > 0 && this.uncheckpointed >= this.every);
    return { from, seq: this.pos, records, checkpoint: due ? await this.checkpoint() : "deferred" };
  }

  /** Throws the state away and folds the whole stream again (the checkpoint is overwritten). */
  async rebuild(): Promise<CatchUpResult> {
    this.resumed = true;
    this.s = this.projection.init();
    this.pos = 0;
    this.checkpointedAt = -1;
    this.uncheckpointed = 0;
    return this.catchUp();
  }

  /**
   * The projection as of stream sequence `seq`, folded apart from the runner's own state: from
   * zero, or from a checkpoint at or before `seq` (never one past it).
   */
  async at(seq: number, opts: { useCheckpoint?: boolean } = {}): Promise<{ seq: number; state: V }> {
    let { state, seq: pos } = opts.useCheckpoint === false ? this.initial() : await this.startAt(seq);
    if (seq > pos) {
      for await (const batch of this.read(pos + 1, seq)) {
        pos = this.applyBatch(state, batch, pos);
      }
    }
    return { seq: pos, state: this.projection.save(state) };
  }

  /**
   * A working state to fold on from towards `seq`: the newest checkpoint or snapshot at or
   * before it, else the initial state (seq 0). Apart from the runner's own state.
   */
  async startAt(seq: number): Promise<{ seq: number; state: S }> {
    return (await this.loadSaved(seq)) ?? this.initial();
  }

  /** The newest checkpoint or snapshot at or before `seq` and after `after`, if one loads. */
  savedBetween(after: number, seq: number): Promise<{ seq: number; state: S } | undefined> {
    return this.loadSaved(seq, after);
  }

  private initial(): { seq: number; state: S } {
    return { seq: 0, state: this.projection.init() };
  }

  /** Resolves once the checkpoint and snapshot being written, if any, are stored (or failed). */
  async settled(): Promise<void> {
    await this.writing;
    await this.schedule?.settled();
  }

  /**
   * Catches up, then applies each new record as it is stored and calls `onRecord` after it.
   * Checkpoints every `checkpointEvery` records and once more when `signal` stops it.
   */
  async follow(onRecord: (record: StoredRecord, runner: this) => void, signal?: AbortSignal): Promise<void> {
    await this.catchUp();
    try {
      for await (const r of this.store.follow({ fromSeq: this.pos + 1 }, signal)) {
        if (r.seq <= this.pos) continue;
        this.pos = this.applyBatch(this.s, [r], this.pos);
        onRecord(r, this);
        this.offerSnapshot();
        this.uncheckpointed++;
        this.checkpointIfDue();
      }
    } finally {
      await this.checkpoint();
      await this.settled();
    }
  }

  /**
   * Saves {seq, version, state}, unless read-only or nothing changed since the last one; after a
   * write still in flight, so the newest state is the one that stays.
   */
  async checkpoint(): Promise<CheckpointResult> {
    await this.writing;
    return this.writeCheckpoint();
  }

  /**
   * A checkpoint every `checkpointEvery` records, at most every `checkpointMinIntervalMs`, written
   * while folding goes on (its state is copied first). One write at a time; while one is in flight
   * the next waits for a later batch.
   */
  private checkpointIfDue(): void {
    if (this.every <= 0 || this.uncheckpointed < this.every || this.writing) return;
    if (this.now() - this.checkpointTried < this.minInterval) return;
    // Only this sets `writing`, and never while one is in flight: the write that ends clears its own.
    this.writing = this.writeCheckpoint()
      .then(
        () => {},
        (err: unknown) =>
          this.log.warn(
            { projection: this.projection.name, err: (err as Error)?.message },
            "checkpoint failed",
          ),
      )
      .finally(() => {
        this.writing = undefined;
      });
  }

  private async writeCheckpoint(): Promise<CheckpointResult> {
    const cps = this.opts.checkpoints;
    if (!cps || this.opts.readOnly) return "none";
    if (this.pos === this.checkpointedAt) return "unchanged";
    const seq = this.pos;
    // The state is copied now (save), so folding on while the write is in flight changes nothing
    // in it. Counted from this attempt even when it is not written (too big, say).
    this.uncheckpointed = 0;
    this.checkpointTried = this.now();
    const result = await cps.put(this.projection.name, {
      seq,
      version: this.projection.version,
      state: this.projection.save(this.s),
    });
    if (result === "written" && seq > this.checkpointedAt) this.checkpointedAt = seq;
    return result;
  }

  /** A range, decoded as the projection reads it. */
  private read(fromSeq: number, toSeq: number | undefined): AsyncGenerator<StoredRecord<E>[]> {
    const decode = this.projection.decode;
    return this.store.read({ fromSeq, toSeq, batch: this.opts.batch, decode, prevs: false });
  }

  private applyBatch(state: S, batch: readonly (StoredRecord<E> | StoredRecord)[], pos: number): number {
    const p = this.projection;
    let last = pos;
    for (const r of batch) {
      if (r.seq <= last) continue; // a redelivery: the state already includes it
      p.apply(state, r, this.onSkip);
      last = r.seq;
    }
    return last;
  }

  private readonly onSkip: OnSkip = (r, reason, err) =>
    this.log.warn(
      {
        projection: this.projection.name,
        seq: r.seq,
        subject: r.subject,
        reason,
        err: (err as Error)?.message,
      },
      "skipped stream record",
    );

  /** A snapshot when the policy says one is due; its write runs while folding goes on. */
  private offerSnapshot(): void {
    const store = this.opts.snapshots;
    if (!store || !this.schedule?.due(this.pos)) return;
    const { name, version } = this.projection;
    const seq = this.pos;
    this.schedule.take(seq, () => store.prepare(name, { seq, version, state: this.projection.save(this.s) }));
  }

  private async noteKeptSnapshots(): Promise<void> {
    if (!this.schedule || !this.opts.snapshots) return;
    const { entries } = await this.opts.snapshots.list(this.projection.name);
    for (const e of entries) if (e.version === this.projection.version) this.schedule.kept(e.seq);
  }

  /** The newest of the checkpoint and the snapshots at or before `maxSeq` that loads. */
  private async loadSaved(maxSeq: number, after = -1): Promise<{ seq: number; state: S } | undefined> {
    const { name, version } = this.projection;
    // The snapshot index is asked for alongside the checkpoint: one round trip, not two.
    const listed = this.opts.snapshots?.list(name);
    const cp = await this.opts.checkpoints?.get<V>(name);
    let usable = cp && cp.seq <= maxSeq && cp.seq > after ? cp : undefined;
    if (usable && usable.version !== version) {
      this.log.warn(
        { projection: name, found: usable.version, version },
        "ignoring checkpoint of another version",
      );
      usable = undefined;
    }
    // A snapshot only when it is newer: reading one costs more than the checkpoint just read.
    const snap = await this.opts.snapshots?.nearest<V>(name, version, maxSeq, usable?.seq ?? after, listed);
    for (const saved of [snap, usable]) {
      if (!saved) continue;
      try {
        return { seq: saved.seq, state: this.projection.load(saved.state) };
      } catch (err) {
        this.log.warn(
          { projection: name, seq: saved.seq, err: (err as Error).message },
          "ignoring malformed saved state",
        );
      }
    }
    return undefined;
  }
}
