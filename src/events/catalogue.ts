import type { z } from "zod";
import { agentEvents } from "./agent.ts";
import { commandEvents } from "./command.ts";
import type { EventDef } from "./define.ts";
import { formatIssues } from "./define.ts";
import {
  type AggregateKind,
  type AggregateRef,
  type Envelope,
  isAggregateKind,
  isValidId,
} from "./envelope.ts";
import {
  InvalidEventDataError,
  NewerVersionError,
  NotAnEnvelopeError,
  type StreamPosition,
  UnknownEventTypeError,
} from "./errors.ts";
import { hostEvents } from "./host.ts";
import { poolEvents } from "./pool.ts";
import { sessionEvents } from "./session.ts";

/** Every event type corral writes. Adding a type here is adding it to the public contract. */
export const catalogue = [
  ...commandEvents,
  ...poolEvents,
  ...agentEvents,
  ...sessionEvents,
  ...hostEvents,
] as const;

type Defs = (typeof catalogue)[number];
export type EventType = Defs["type"];

/** The union of every event envelope, discriminated by `type`. */
export type CorralEvent = {
  [D in Defs as D["type"]]: Envelope<D["type"], z.output<D["schema"]>>;
}[EventType];

export type EventOf<T extends EventType> = Extract<CorralEvent, { type: T }>;
/** Every event of one aggregate kind: what that kind's machine and projections take. */
export type EventOfKind<K extends AggregateKind> = EventOf<Extract<Defs, { kind: K }>["type"]>;
export type DataOf<T extends EventType> = EventOf<T>["data"];
/** What a caller may pass as data (schema defaults not yet applied). */
export type DataInputOf<T extends EventType> = z.input<Extract<Defs, { type: T }>["schema"]>;

const byType = new Map<string, EventDef>();
for (const def of catalogue) {
  if (byType.has(def.type)) throw new Error(`event type ${def.type} is defined twice`);
  byType.set(def.type, def as EventDef);
}

/** The event types of one aggregate kind, in catalogue order. */
export function typesOfKind<K extends AggregateKind>(kind: K): EventOfKind<K>["type"][] {
  return catalogue.filter((d) => d.kind === kind).map((d) => d.type) as EventOfKind<K>["type"][];
}

export function eventDef(type: string): EventDef | undefined {
  return byType.get(type);
}

export function isEventType(type: unknown): type is EventType {
  return typeof type === "string" && byType.has(type);
}

/** Validates (and fills defaults of) the data of an event of `type`; names the bad field. */
export function validateData<T extends EventType>(type: T, data: unknown, at?: StreamPosition): DataOf<T> {
  const def = byType.get(type);
  if (!def) throw new UnknownEventTypeError(type, at);
  const parsed = def.schema.safeParse(data);
  if (!parsed.success) throw new InvalidEventDataError(type, formatIssues(parsed.error), at);
  const bad = protoKeyPath(parsed.data, "data");
  if (bad) throw new InvalidEventDataError(type, [`${bad}: the key "__proto__" cannot be stored`], at);
  return parsed.data as DataOf<T>;
}

/**
 * MessagePack decoders refuse a map key "__proto__" (it would rewrite an object's prototype), so
 * an event holding one could be written but never read back. Finds one anywhere in `v`.
 */
function protoKeyPath(v: unknown, path: string): string | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const bad = protoKeyPath(v[i], `${path}.${i}`);
      if (bad) return bad;
    }
    return undefined;
  }
  for (const key of Object.keys(v)) {
    if (key === "__proto__") return `${path}.__proto__`;
    const bad = protoKeyPath((v as Record<string, unknown>)[key], `${path}.${key}`);
    if (bad) return bad;
  }
  return undefined;
}

/** Envelopes built by createEvent from validated data: the store need not validate them again. */
const validated = new WeakSet<object>();

export function isValidated(event: object): boolean {
  return validated.has(event);
}

export interface EventMeta {
  id: string;
  at: number;
  causationId?: string;
  correlationId?: string;
}

/** Builds an envelope from raw data, validating it (defaults filled in) against the catalogue. */
export function createEvent<T extends EventType>(
  ref: AggregateRef,
  type: T,
  data: unknown,
  meta: EventMeta,
): EventOf<T> {
  const def = byType.get(type);
  if (!def) throw new UnknownEventTypeError(type);
  if (def.kind !== ref.kind)
    throw new InvalidEventDataError(type, [`is a ${def.kind} event, not ${ref.kind}`]);
  const env: Envelope = {
    id: meta.id,
    type,
    v: def.v,
    aggregate: { kind: ref.kind, id: ref.id },
    at: meta.at,
    data: validateData(type, data),
  };
  if (meta.causationId) env.causationId = meta.causationId;
  if (meta.correlationId) env.correlationId = meta.correlationId;
  validated.add(env);
  return env as EventOf<T>;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/**
 * An envelope's fields other than `data`, as a reader found them; of the id only whether it is a
 * non-empty string (a reader that never shows it need not decode it: src/codec/msgpack.ts), and
 * of the aggregate its kind and id (undefined when it is not a map).
 */
export interface EnvelopeHead {
  hasId: boolean;
  type: unknown;
  v: unknown;
  kind: unknown;
  aggregateId: unknown;
  at: unknown;
  causationId: unknown;
  correlationId: unknown;
}

/** A head that passed checkHead, typed, with its catalogue entry. */
export interface CheckedHead {
  def: EventDef;
  v: number;
  aggregate: AggregateRef;
  at: number;
  causationId: string | undefined;
  correlationId: string | undefined;
}

/** The head, checked; throws the typed DecodeError naming what is wrong. */
export function checkHead(h: EnvelopeHead, at?: StreamPosition): CheckedHead {
  const { type, v, kind, aggregateId } = h;
  if (!h.hasId) throw new NotAnEnvelopeError("missing id", at);
  if (typeof type !== "string") throw new NotAnEnvelopeError("missing type", at);
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) throw new NotAnEnvelopeError("bad v", at);
  if (typeof h.at !== "number" || !Number.isFinite(h.at)) throw new NotAnEnvelopeError("bad at", at);
  if (!isAggregateKind(kind) || !isValidId(aggregateId)) throw new NotAnEnvelopeError("bad aggregate", at);
  if (h.causationId !== undefined && typeof h.causationId !== "string") {
    throw new NotAnEnvelopeError("bad causationId", at);
  }
  if (h.correlationId !== undefined && typeof h.correlationId !== "string") {
    throw new NotAnEnvelopeError("bad correlationId", at);
  }
  const def = byType.get(type);
  if (!def) throw new UnknownEventTypeError(type, at);
  if (v > def.v) throw new NewerVersionError(type, v, def.v, at);
  if (def.kind !== kind) throw new NotAnEnvelopeError(`${type} belongs to ${def.kind}, not ${kind}`, at);
  const { causationId, correlationId } = h;
  return { def, v, aggregate: { kind, id: aggregateId }, at: h.at, causationId, correlationId };
}

/**
 * Checks that a decoded value is one of our envelopes, upcasts older versions, validates data.
 * Throws a typed DecodeError (with the stream position) instead of letting bad input through.
 */
export function checkEnvelope(raw: unknown, at?: StreamPosition): CorralEvent {
  if (!isPlainObject(raw)) throw new NotAnEnvelopeError("body is not a map", at);
  const { id, type, v, aggregate, at: time, causationId, correlationId } = raw;
  const hasId = typeof id === "string" && id.length > 0;
  const ref = isPlainObject(aggregate) ? aggregate : {};
  const head = checkHead(
    { hasId, type, v, kind: ref.kind, aggregateId: ref.id, at: time, causationId, correlationId },
    at,
  );
  const { def } = head;
  const parsed = def.schema.safeParse(upcast(head, raw.data, at));
  if (!parsed.success) throw new InvalidEventDataError(def.type, formatIssues(parsed.error), at);
  const env: Envelope = {
    id: id as string, // hasId
    type: def.type,
    v: def.v,
    aggregate: head.aggregate,
    at: head.at,
    data: parsed.data,
  };
  if (head.causationId !== undefined) env.causationId = head.causationId;
  if (head.correlationId !== undefined) env.correlationId = head.correlationId;
  return env as CorralEvent;
}

/** `data` of the head's version brought up to the catalogue's, one upcaster at a time. */
export function upcast(head: CheckedHead, data: unknown, at?: StreamPosition): unknown {
  const { def } = head;
  for (let from = head.v; from < def.v; from++) {
    const up = def.upcast?.[from];
    if (!up) throw new InvalidEventDataError(def.type, [`no upcaster from v${from}`], at);
    data = up(data);
  }
  return data;
}
