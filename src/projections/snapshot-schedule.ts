/** When a projection runner takes its next snapshot (src/projections/snapshots.ts). */
export interface SnapshotPolicy {
  /** Records folded since the last snapshot before the next one is due. */
  everyEvents: number;
  /** Never two snapshots closer together than this (ms). */
  minIntervalMs: number;
  /**
   * Most of the runner's time snapshots may take: after one whose encoding held the fold up for
   * c ms, the next starts no sooner than c / share ms later (a large worldview: less often).
   */
  share: number;
}

/**
 * `corral worldview --at` and `diff` fold from the nearest snapshot before their moment, ~30 µs an
 * event in a fresh process. At 250 ms and 10 %, a burst (or the catch-up after one) left up to
 * 24,000 events between snapshots: over a second to fold. At these, 1M events written at ~25,000
 * a second left 10,000-11,900 between them, and the daemon's rebuild took no longer (15.1 s
 * against 15.8 s; `npm run bench -- scale-events`).
 */
export const DEFAULT_SNAPSHOT_POLICY: SnapshotPolicy = {
  everyEvents: 10_000,
  minIntervalMs: 100,
  share: 0.25,
};

/**
 * The bookkeeping behind the policy: the last snapshot's sequence and time, and at most one
 * write in flight (a snapshot that comes due while one is written waits for the next batch).
 */
export class SnapshotSchedule {
  private lastSeq = 0;
  private notBefore = Number.NEGATIVE_INFINITY;
  private writing: Promise<unknown> | undefined;
  readonly policy: SnapshotPolicy;

  constructor(
    policy: Partial<SnapshotPolicy> = {},
    private readonly now: () => number = Date.now,
  ) {
    this.policy = { ...DEFAULT_SNAPSHOT_POLICY, ...policy };
  }

  /** The newest snapshot already kept (at start: so a restart does not take one at once). */
  kept(seq: number): void {
    this.lastSeq = Math.max(this.lastSeq, seq);
  }

  due(seq: number): boolean {
    return (
      this.writing === undefined &&
      seq - this.lastSeq >= this.policy.everyEvents &&
      this.now() >= this.notBefore
    );
  }

  /** Takes one: `prepare` runs now (its time is the cost), the write it returns runs on its own. */
  take(seq: number, prepare: () => () => Promise<unknown>): void {
    const t0 = this.now();
    const write = prepare();
    const cost = this.now() - t0;
    this.lastSeq = seq;
    this.notBefore = t0 + Math.max(this.policy.minIntervalMs, cost / this.policy.share);
    this.writing = write().finally(() => {
      this.writing = undefined;
    });
  }

  /** Resolves once no write is in flight. */
  async settled(): Promise<void> {
    await this.writing?.catch(() => {});
  }
}
