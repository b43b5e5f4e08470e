import type { DataInputOf, EventType } from "../../src/events/catalogue.ts";
import { createEvent } from "../../src/events/catalogue.ts";
import type { AggregateRef, Envelope } from "../../src/events/envelope.ts";
import { uuidv7 } from "../../src/events/id.ts";
import type { PoolConfig } from "../../src/events/pool.ts";

/** Builds a valid envelope for tests (defaults filled in by the catalogue's schema). */
export function makeEvent<T extends EventType>(
  ref: AggregateRef,
  type: T,
  data: DataInputOf<T>,
  at = Date.now(),
): Envelope {
  return createEvent(ref, type, data, { id: uuidv7(at), at });
}

/** A small, valid pool configuration as stored, with `over` on top. */
export const poolConfig = (over: Partial<PoolConfig> = {}): PoolConfig => ({
  runtime: "process",
  min: 1,
  max: 5,
  warm: 2,
  idleTimeoutMs: 1_000,
  recycle: {},
  maintenanceIntervalMs: 1_000,
  leaseTtlMs: 60_000,
  startTimeoutMs: 10_000,
  template: { command: ["x"], env: {}, mounts: [], limits: {}, stopGraceMs: 1_000 },
  ...over,
});
