/**
 * Runs tasks one at a time per key, in arrival order; different keys run concurrently. This is
 * what makes each aggregate a sequential writer without a lock around the whole actor host, and
 * each runtime instance a sequential target of create / start / stop.
 */
export class KeyedQueue {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, task: () => Promise<T> | T): Promise<T> {
    const prev = this.tails.get(key);
    // With nothing queued the task starts at once (synchronously up to its first await).
    const next = prev ? prev.then(task, task) : (async () => task())();
    const tail = next.catch(() => {});
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return next;
  }

  get size(): number {
    return this.tails.size;
  }
}
