/** setTimeout cannot wait longer than this; longer deadlines are re-armed in steps. */
const MAX_DELAY = 2 ** 31 - 1;

/**
 * The one place where deadlines become inputs: one timer per key, each firing once at an absolute
 * time, and the clock they are measured by. Deadlines live in actor context or are derived from
 * it (so replay never depends on wall time); the actor host and the pool supervisors ask the
 * scheduler to call them back when one passes. Tests and simulations drive a ManualScheduler
 * (manual-scheduler.ts) instead, so races are replayed deterministically, not by sleeping.
 */
export interface Scheduler {
  now(): number;
  /** Arms (or moves) the timer for `key`; re-arming with the same time keeps the existing one. */
  arm(key: string, at: number, fire: () => void): void;
  disarm(key: string): void;
  armedAt(key: string): number | undefined;
  /** Disarms everything; later `arm` calls do nothing. */
  close(): void;
}

/** The real scheduler: Node timers against a clock (default: the wall clock). */
export class TimerScheduler implements Scheduler {
  private readonly timers = new Map<string, { at: number; handle: NodeJS.Timeout }>();
  private closed = false;
  readonly now: () => number;

  constructor(now: () => number = Date.now) {
    this.now = now;
  }

  arm(key: string, at: number, fire: () => void): void {
    if (this.closed) return;
    const existing = this.timers.get(key);
    if (existing?.at === at) return;
    if (existing) clearTimeout(existing.handle);
    const delay = Math.max(0, Math.min(MAX_DELAY, at - this.now()));
    const handle = setTimeout(() => {
      if (this.timers.get(key)?.handle !== handle) return;
      this.timers.delete(key);
      if (at > this.now()) this.arm(key, at, fire);
      else fire();
    }, delay);
    handle.unref();
    this.timers.set(key, { at, handle });
  }

  disarm(key: string): void {
    const t = this.timers.get(key);
    if (!t) return;
    clearTimeout(t.handle);
    this.timers.delete(key);
  }

  armedAt(key: string): number | undefined {
    return this.timers.get(key)?.at;
  }

  get size(): number {
    return this.timers.size;
  }

  close(): void {
    this.closed = true;
    for (const t of this.timers.values()) clearTimeout(t.handle);
    this.timers.clear();
  }
}
