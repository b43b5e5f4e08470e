import { PortAllocationCancelledError, PortConflictError, PortsExhaustedError } from "./errors.ts";
import { bindProbe, type PortProbe } from "./probe.ts";
import { formatRange, type PortRange } from "./range.ts";

/** One allocate() call in flight. Its ports are "probing" until the probe says free, then "confirmed". */
interface Attempt {
  readonly owner: string;
  readonly ports: Map<number, "probing" | "confirmed">;
  /** Ports this attempt found held by other programs; never probed again by it. */
  readonly busy: Set<number>;
  cancelled: boolean;
}

export interface PortAllocatorOptions {
  /** Injection point for tests that need determinism; defaults to a real bind probe. */
  probe?: PortProbe;
}

/**
 * Host ports for agents. One per machine, shared by every pool on it, so pools with overlapping
 * ranges never hand out the same port.
 *
 * Concurrency: allocate() reserves its candidates synchronously before its first await, so
 * concurrent calls in this process never pick the same port; probes of different ports run in
 * parallel. The latest allocate / release / restore for an owner wins: an allocation still in
 * flight for that owner is cancelled and rejects with PortAllocationCancelledError.
 *
 * Exhaustion: a call that finds no free port waits while another call in its range is still
 * probing (that call may fail and give ports back), then fails with PortsExhaustedError and
 * frees whatever it had found. Lowest-first is greedy: a narrow range can lose its shared ports
 * to a wider one that reached them first.
 */
export class PortAllocator {
  readonly #probe: PortProbe;
  /** Committed: port → owner. */
  readonly #held = new Map<number, string>();
  /** owner → its committed ports, ascending. */
  readonly #owned = new Map<string, number[]>();
  /** Reserved by an allocation in flight: port → attempt. */
  readonly #reserved = new Map<number, Attempt>();
  readonly #attempts = new Map<string, Attempt>();
  /** One probe per port at a time, or two probes would see each other's bind as "held". */
  readonly #probing = new Map<number, Promise<boolean>>();
  #changed: { promise: Promise<void>; resolve: () => void } | undefined;

  constructor(options: PortAllocatorOptions = {}) {
    this.#probe = options.probe ?? bindProbe;
  }

  /**
   * `count` ports for `owner` from `range`, lowest free first. Ports the owner already holds are
   * released first: re-creating an agent must not leak its old ports (the pool would shrink).
   */
  async allocate(owner: string, range: PortRange, count: number): Promise<number[]> {
    checkRange(range);
    if (!Number.isInteger(count) || count < 0)
      throw new RangeError(`count must be an integer >= 0: ${count}`);
    this.release(owner);
    const attempt: Attempt = { owner, ports: new Map(), busy: new Set(), cancelled: false };
    this.#attempts.set(owner, attempt);
    let committed = false;
    try {
      for (;;) {
        if (attempt.cancelled) throw new PortAllocationCancelledError(owner);
        const missing = count - countConfirmed(attempt);
        if (missing === 0) break;
        const batch = this.#reserveLowest(attempt, range, missing);
        if (batch.length === 0) {
          // Another allocation's probe may still fail and free a port: wait for it, don't give up early.
          if (this.#othersProbing(attempt, range)) await this.#nextChange();
          else throw this.#exhausted(attempt, range, count);
          continue;
        }
        const free = await Promise.all(batch.map((p) => this.#probeOnce(p)));
        batch.forEach((port, i) => {
          if (this.#reserved.get(port) !== attempt) return; // cancelled, or taken by restore()
          if (free[i]) attempt.ports.set(port, "confirmed");
          else {
            attempt.busy.add(port);
            this.#unreserve(port, attempt);
          }
        });
      }
      const ports = [...attempt.ports.keys()].sort((a, b) => a - b);
      for (const p of ports) {
        this.#reserved.delete(p);
        this.#held.set(p, owner);
      }
      if (ports.length > 0) this.#owned.set(owner, ports);
      committed = true;
      return [...ports];
    } finally {
      if (!committed) for (const p of attempt.ports.keys()) this.#unreserve(p, attempt);
      if (this.#attempts.get(owner) === attempt) this.#attempts.delete(owner);
      this.#notify();
    }
  }

  /** Frees the owner's ports (and cancels its allocation in flight). Unknown owner → []. */
  release(owner: string): number[] {
    this.#cancel(owner);
    const ports = this.#owned.get(owner) ?? [];
    for (const p of ports) this.#held.delete(p);
    this.#owned.delete(owner);
    if (ports.length > 0) this.#notify();
    return [...ports];
  }

  /**
   * Replay: the event stream says `owner` holds exactly `ports`, so mark them held without probing
   * (replacing what the owner held before, as allocate would). A port another owner holds is a
   * contradiction in the stream → PortConflictError, and nothing changes.
   */
  restore(owner: string, ports: readonly number[]): void {
    for (const p of ports) {
      if (!Number.isInteger(p) || p < 1 || p > 65_535) throw new RangeError(`not a port: ${p}`);
    }
    const conflicts = new Map<number, string>();
    for (const p of ports) {
      const by = this.#held.get(p);
      if (by !== undefined && by !== owner) conflicts.set(p, by);
    }
    if (conflicts.size > 0) throw new PortConflictError(owner, conflicts);
    this.release(owner);
    const sorted = [...new Set(ports)].sort((a, b) => a - b);
    for (const p of sorted) {
      // A recorded fact beats an allocation still probing: that one moves on to another port.
      const attempt = this.#reserved.get(p);
      if (attempt) this.#unreserve(p, attempt);
      this.#held.set(p, owner);
    }
    if (sorted.length > 0) this.#owned.set(owner, sorted);
  }

  owner(port: number): string | undefined {
    return this.#held.get(port);
  }

  portsOf(owner: string): number[] {
    return [...(this.#owned.get(owner) ?? [])];
  }

  /** Committed ports → owner, ascending by port (a copy). */
  held(): Map<number, string> {
    return new Map([...this.#held].sort(([a], [b]) => a - b));
  }

  /** Synchronously reserves up to `n` of the lowest ports that are free as far as this process knows. */
  #reserveLowest(attempt: Attempt, range: PortRange, n: number): number[] {
    const batch: number[] = [];
    for (let p = range.low; p <= range.high && batch.length < n; p++) {
      if (this.#held.has(p) || this.#reserved.has(p) || attempt.busy.has(p)) continue;
      this.#reserved.set(p, attempt);
      attempt.ports.set(p, "probing");
      batch.push(p);
    }
    return batch;
  }

  #unreserve(port: number, attempt: Attempt): void {
    attempt.ports.delete(port);
    if (this.#reserved.get(port) === attempt) this.#reserved.delete(port);
  }

  #cancel(owner: string): void {
    const attempt = this.#attempts.get(owner);
    if (!attempt) return;
    attempt.cancelled = true;
    this.#attempts.delete(owner);
    // Free its reservations now so the caller that superseded it can take the same ports.
    for (const p of [...attempt.ports.keys()]) this.#unreserve(p, attempt);
    this.#notify();
  }

  #othersProbing(attempt: Attempt, range: PortRange): boolean {
    for (const [p, other] of this.#reserved) {
      if (other !== attempt && p >= range.low && p <= range.high && other.ports.get(p) === "probing")
        return true;
    }
    return false;
  }

  #probeOnce(port: number): Promise<boolean> {
    let pending = this.#probing.get(port);
    if (!pending) {
      pending = this.#probe(port).finally(() => this.#probing.delete(port));
      this.#probing.set(port, pending);
    }
    return pending;
  }

  #nextChange(): Promise<void> {
    if (!this.#changed) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => {
        resolve = r;
      });
      this.#changed = { promise, resolve };
    }
    return this.#changed.promise;
  }

  #notify(): void {
    const changed = this.#changed;
    this.#changed = undefined;
    changed?.resolve();
  }

  #exhausted(attempt: Attempt, range: PortRange, needed: number): PortsExhaustedError {
    let owners = 0;
    for (let p = range.low; p <= range.high; p++) {
      const r = this.#reserved.get(p);
      if ((r !== undefined && r !== attempt) || this.#held.has(p)) owners++;
    }
    return new PortsExhaustedError(
      attempt.owner,
      { low: range.low, high: range.high },
      needed,
      countConfirmed(attempt),
      owners,
      attempt.busy.size,
    );
  }
}

function countConfirmed(attempt: Attempt): number {
  let n = 0;
  for (const state of attempt.ports.values()) if (state === "confirmed") n++;
  return n;
}

function checkRange(r: PortRange): void {
  const ok = Number.isInteger(r.low) && Number.isInteger(r.high) && r.low >= 1 && r.high <= 65_535;
  if (!ok || r.low > r.high) throw new RangeError(`not a port range: ${formatRange(r)}`);
}
