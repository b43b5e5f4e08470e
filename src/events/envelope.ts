/**
 * The envelope every corral event travels in. It is the public contract: the msgpack body of each
 * message on `corral.evt.<kind>.<id>` is exactly this object.
 */
export const AGGREGATE_KINDS = ["pool", "agent", "session", "command", "host"] as const;
export type AggregateKind = (typeof AGGREGATE_KINDS)[number];

export interface AggregateRef {
  kind: AggregateKind;
  id: string;
}

export interface Envelope<T extends string = string, D = unknown> {
  /** Unique, time-sortable (UUIDv7). Also the `Nats-Msg-Id`, so a retried append is deduplicated. */
  id: string;
  type: T;
  /** Schema version of `data` for this `type`. */
  v: number;
  aggregate: AggregateRef;
  /** Milliseconds since the epoch, set by whoever created the event (machines never read a clock). */
  at: number;
  causationId?: string;
  correlationId?: string;
  data: D;
}

/** Ids become NATS subject tokens and KV keys: no dots, wildcards or whitespace. */
const ID_RE = /^[A-Za-z0-9_-]{1,128}$/;

export function isAggregateKind(kind: unknown): kind is AggregateKind {
  return typeof kind === "string" && (AGGREGATE_KINDS as readonly string[]).includes(kind);
}

export function isValidId(id: unknown): id is string {
  return typeof id === "string" && ID_RE.test(id);
}

/** Throws a clear error naming what is wrong with an aggregate reference. */
export function checkRef(ref: AggregateRef): AggregateRef {
  if (!isAggregateKind(ref.kind)) {
    throw new TypeError(
      `aggregate kind ${JSON.stringify(ref.kind)} is not one of ${AGGREGATE_KINDS.join(", ")}`,
    );
  }
  if (!isValidId(ref.id)) {
    throw new TypeError(
      `aggregate id ${JSON.stringify(ref.id)} is invalid: use 1-128 characters of A-Z a-z 0-9 _ -`,
    );
  }
  return ref;
}

export function refKey(ref: AggregateRef): string {
  return `${ref.kind}/${ref.id}`;
}

/** Parses "kind/id" as typed on the command line. */
export function parseRef(text: string): AggregateRef {
  const slash = text.indexOf("/");
  if (slash < 0) throw new TypeError(`expected kind/id, got ${JSON.stringify(text)}`);
  return checkRef({ kind: text.slice(0, slash) as AggregateKind, id: text.slice(slash + 1) });
}
