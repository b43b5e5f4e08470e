import type { DataInputOf, EventType } from "../../src/events/catalogue.ts";
import { createEvent } from "../../src/events/catalogue.ts";
import type { AggregateRef, Envelope } from "../../src/events/envelope.ts";
import { uuidv7 } from "../../src/events/id.ts";

/** Builds a valid envelope for tests (defaults filled in by the catalogue's schema). */
export function makeEvent<T extends EventType>(
  ref: AggregateRef,
  type: T,
  data: DataInputOf<T>,
  at = Date.now(),
): Envelope {
  return createEvent(ref, type, data, { id: uuidv7(at), at });
}
