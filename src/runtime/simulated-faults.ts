import { mulberry32 } from "../../machines/backoff.ts";

/**
 * Latency and failures the simulated runtime (simulated.ts) injects, drawn from a seeded PRNG so a
 * run repeats: each operation has its own stream, so the n-th `create` draws the same whatever
 * the other operations did meanwhile (the order of calls across agents is up to the event loop).
 */

export const SIMULATED_OPS = ["create", "start", "stop", "remove", "inspect"] as const;
export type SimulatedOp = (typeof SIMULATED_OPS)[number];

/** Milliseconds: fixed, or uniform in [min, max]. */
export type Latency = number | readonly [min: number, max: number];

export interface SimulatedFaults {
  /** How long each operation takes (default: no wait at all). */
  latency?: Partial<Record<SimulatedOp, Latency>>;
  /** The share of each operation's calls that fail, 0..1 (default 0). */
  failureRate?: Partial<Record<SimulatedOp, number>>;
  /** Seeds every draw: the same seed gives the same latencies and failures (default 1). */
  seed?: number;
}

/** What one call does: wait this long, then fail or not. */
export interface Draw {
  delayMs: number;
  fails: boolean;
}

function checkFaults(faults: SimulatedFaults): void {
  for (const [op, rate] of Object.entries(faults.failureRate ?? {})) {
    if (!(rate >= 0 && rate <= 1)) throw new RangeError(`failureRate.${op}: ${rate} is not within 0..1`);
  }
  for (const [op, l] of Object.entries(faults.latency ?? {})) {
    const [min, max] = typeof l === "number" ? [l, l] : l;
    if (!(min >= 0 && max >= min))
      throw new RangeError(
        `latency.${op}: ${JSON.stringify(l)} is not ms >= 0 or [min, max] with min <= max`,
      );
  }
}

/** One PRNG stream per operation, each seeded from the run's seed and the operation. */
export function faultDrawer(faults: SimulatedFaults): (op: SimulatedOp) => Draw {
  checkFaults(faults);
  const seed = faults.seed ?? 1;
  const streams = new Map(SIMULATED_OPS.map((op, i) => [op, mulberry32(seed * 31 + i * 0x9e3779b9)]));
  return (op) => {
    const rate = faults.failureRate?.[op] ?? 0;
    const latency = faults.latency?.[op] ?? 0;
    const next = streams.get(op) as () => number;
    // Two draws per call whatever is configured, so changing one setting does not shift the other.
    const u = next();
    const f = next();
    const [min, max] = typeof latency === "number" ? [latency, latency] : latency;
    return { delayMs: min + (max - min) * u, fails: f < rate };
  };
}
