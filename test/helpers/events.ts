import type { DataInputOf, EventType } from "../../src/events/catalogue.ts";
import { eventDef, validateData } from "../../src/events/catalogue.ts";
import type { AggregateRef, Envelope } from "../../src/events/envelope.ts";
import { uuidv7 } from "../../src/events/id.ts";

/** Builds a valid envelope for tests (defaults filled in by the catalogue's schema). */
export function makeEvent<T extends EventType>(
  ref: AggregateRef,
  type: T,
  data: DataInputOf<T>,
  at = Date.now(),
): Envelope {
  const def = eventDef(type);
  if (!def) throw new Error(`unknown ${type}`);
  return { id: uuidv7(at), type, v: def.v, aggregate: ref, at, data: validateData(type, data) };
}
