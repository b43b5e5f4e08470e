import type { z } from "zod";
import type { AggregateKind } from "./envelope.ts";

/** One event type of the catalogue: its name, schema version, aggregate kind and data schema. */
export interface EventDef<
  T extends string = string,
  K extends AggregateKind = AggregateKind,
  S extends z.ZodType = z.ZodType,
> {
  type: T;
  v: number;
  kind: K;
  schema: S;
  /** One line for the README / inspector. */
  doc: string;
  /** Upcasters from an older `v` to the next one, keyed by the older version. */
  upcast?: Record<number, (data: unknown) => unknown>;
}

export function defineEvent<const T extends string, const K extends AggregateKind, S extends z.ZodType>(
  def: EventDef<T, K, S>,
): EventDef<T, K, S> {
  return def;
}

/** Formats zod issues as `path: message`, naming the field that was wrong. */
export function formatIssues(error: z.ZodError, prefix = "data"): string[] {
  return error.issues.map((i) => {
    const path = [prefix, ...i.path.map(String)].join(".");
    return `${path}: ${i.message}`;
  });
}
