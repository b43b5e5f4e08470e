/** setTimeout cannot wait longer than this; longer deadlines are re-armed in steps. */
const MAX_DELAY = 2 ** 31 - 1;

/**
 * One timer per key, each firing once at an absolute time. Deadlines live in actor context (so
 * replay never depends on wall time); this only turns them into inputs at the right moment.
 */
export class Scheduler {
  private readonly timers = new Map<string, { at: number; handle: NodeJS.Timeout }>();
  private closed = false;

  constructor(private readonly now: () => number = Date.now) {}

  /** Arms (or moves) the timer for `key`; re-arming with the same time keeps the existing one. */
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
