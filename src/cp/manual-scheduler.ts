import type { Scheduler } from "./scheduler.ts";

/**
 * A scheduler whose time moves only when told to: for tests and simulations that drive the
 * control plane's deadlines (lease expiry, spawn backoff, maintenance ticks, acquire timeouts)
 * deterministically. `advance` fires every timer that comes due, in time order.
 */
export class ManualScheduler implements Scheduler {
  private time: number;
  private readonly timers = new Map<string, { at: number; fire: () => void }>();
  private closed = false;

  constructor(start = 1_700_000_000_000) {
    this.time = start;
  }

  readonly now = (): number => this.time;

  /** A deadline already due fires at once (as soon as the current task yields), like a timer of 0 ms. */
  arm(key: string, at: number, fire: () => void): void {
    if (this.closed) return;
    const timer = { at, fire };
    this.timers.set(key, timer);
    if (at > this.time) return;
    queueMicrotask(() => {
      if (this.timers.get(key) !== timer) return; // disarmed or moved meanwhile
      this.timers.delete(key);
      fire();
    });
  }

  disarm(key: string): void {
    this.timers.delete(key);
  }

  armedAt(key: string): number | undefined {
    return this.timers.get(key)?.at;
  }

  /** Moves time forward by `ms`, firing each timer due on the way at its own time. */
  advance(ms: number): void {
    const until = this.time + ms;
    for (;;) {
      let next: [string, { at: number; fire: () => void }] | undefined;
      for (const entry of this.timers)
        if (entry[1].at <= until && (!next || entry[1].at < next[1].at)) next = entry;
      if (!next) break;
      this.timers.delete(next[0]);
      this.time = Math.max(this.time, next[1].at);
      next[1].fire();
    }
    this.time = until;
  }

  close(): void {
    this.closed = true;
    this.timers.clear();
  }
}
