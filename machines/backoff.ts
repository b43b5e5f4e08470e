/**
 * The waits of one dial cycle: exponential backoff with full jitter (each wait drawn uniformly
 * from [0, min(cap, start·2^i))), until the waits together would pass `giveUpMs`. The draws come
 * from a small seeded generator, and the seed is on SessionConnecting: a replay knows every wait
 * the dialer made, without randomness inside a machine.
 */

export interface BackoffOptions {
  /** Ceiling of the first wait (ms). */
  startMs: number;
  /** No wait's ceiling grows past this (ms). */
  capMs: number;
  /** The cycle gives up once its waits would add up to more than this (ms). */
  giveUpMs: number;
}

export const DIAL_BACKOFF: BackoffOptions = { startMs: 500, capMs: 10_000, giveUpMs: 60_000 };

/** mulberry32: a 32-bit seeded generator, uniform in [0, 1); enough for jitter, not for secrets. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The waits (ms, whole) between the attempts of one cycle: attempts = waits.length + 1. */
export function backoffSchedule(seed: number, opts: BackoffOptions = DIAL_BACKOFF): number[] {
  const { startMs, capMs, giveUpMs } = opts;
  if (!(startMs > 0 && capMs >= startMs && giveUpMs >= 0)) {
    throw new RangeError(`backoff needs 0 < startMs <= capMs and giveUpMs >= 0, got ${JSON.stringify(opts)}`);
  }
  const random = mulberry32(seed);
  const waits: number[] = [];
  let total = 0;
  for (let i = 0; ; i++) {
    const ceiling = Math.min(capMs, startMs * 2 ** Math.min(i, 52));
    // At least 1 ms: a run of zero draws must still bring the cycle to its end.
    const wait = Math.max(1, Math.floor(random() * ceiling));
    if (total + wait > giveUpMs) return waits;
    total += wait;
    waits.push(wait);
  }
}
