import { z } from "../vendor/zod.ts";
import { type DataOf, type EventOf, type EventType, eventDef } from "./catalogue.ts";
import type { EventDef } from "./define.ts";
import type { AggregateRef } from "./envelope.ts";

/**
 * What a reader of the stream reads of each event type's data. A reader that declares it (the
 * worldview's slices, src/projections/slice.ts) gets events decoded and validated only that far
 * (src/codec/msgpack.ts, decodeEventView): what it never looks at is neither built nor checked.
 */
export type Reads<T extends EventType = EventType> = {
  readonly [K in T]?: readonly (keyof DataOf<K> & string)[];
};

/** An event as such a reader gets it: the envelope less its ids, and of `data` the fields `F`. */
export type EventView<K extends EventType, F extends string = never> = Pick<
  EventOf<K>,
  "type" | "v" | "aggregate" | "at"
> & { data: Pick<DataOf<K>, F & keyof DataOf<K>> };

/** The events of types `T` as a reader that declared `R` gets them, discriminated by `type`. */
export type ReadView<T extends EventType, R extends Reads<T>> = {
  [K in T]: EventView<K, R[K] extends readonly (infer F extends string)[] ? F : never>;
}[T];

/** Any event decoded by decodeEventView; a full CorralEvent is one too. */
export interface AnyEventView {
  type: EventType;
  v: number;
  aggregate: AggregateRef;
  at: number;
  data: unknown;
}

/** One event type's part of a plan: the fields to decode and the check of just those fields. */
export interface TypeReads {
  def: EventDef;
  /** The field names in the schema's order, and the same as UTF-8 bytes to match map keys against. */
  names: readonly string[];
  keys: readonly Uint8Array[];
  check: z.ZodType;
}

const utf8 = new TextEncoder();

/**
 * Several readers' reads merged and compiled: per event type, what decodeEventView decodes and
 * checks. A type that no reader reads decodes to its envelope and empty data; a type whose data
 * schema is not an object is decoded and checked whole.
 */
export class ReadPlan {
  private readonly types = new Map<string, TypeReads | null>();

  constructor(...readers: Reads[]) {
    const fields = new Map<string, Set<string>>();
    for (const reads of readers) {
      for (const [type, names] of Object.entries(reads) as [string, readonly string[]][]) {
        const set = fields.get(type) ?? new Set<string>();
        for (const n of names) set.add(n);
        fields.set(type, set);
      }
    }
    for (const [type, names] of fields) {
      const def = eventDef(type);
      if (!def) throw new Error(`reads of unknown event type ${type}`);
      if (!(def.schema instanceof z.ZodObject)) {
        this.types.set(type, null);
        continue;
      }
      const shape = def.schema.shape as Record<string, unknown>;
      for (const n of names) if (!Object.hasOwn(shape, n)) throw new Error(`${type} has no field ${n}`);
      // In the schema's order, which is the order a writer's data has them in.
      const list = Object.keys(shape).filter((n) => names.has(n));
      const check = def.schema.pick(Object.fromEntries(list.map((n) => [n, true])) as Record<string, true>);
      this.types.set(type, { def, names: list, keys: list.map((n) => utf8.encode(n)), check });
    }
  }

  /** The type's reads; undefined when nothing reads its data, null when it is decoded whole. */
  of(type: string): TypeReads | null | undefined {
    return this.types.get(type);
  }
}
