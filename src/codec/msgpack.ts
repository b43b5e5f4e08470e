import { Decoder, Encoder } from "@msgpack/msgpack";
import {
  type CorralEvent,
  catalogue,
  checkEnvelope,
  checkHead,
  type EnvelopeHead,
  type EventType,
} from "../events/catalogue.ts";
import { AGGREGATE_KINDS, type Envelope } from "../events/envelope.ts";
import { NotAnEnvelopeError, type StreamPosition } from "../events/errors.ts";
import type { AnyEventView, ReadPlan } from "../events/reads.ts";
import { MsgpackCursor } from "./msgpack-cursor.ts";
import { MsgpackWriter } from "./msgpack-writer.ts";

/**
 * The one place bytes become events and back. Standard MessagePack; encoder and decoder are
 * reused because constructing them per message costs more than the encoding itself. Plain values
 * are written by MsgpackWriter, byte for byte as the encoder writes them, faster; the encoder
 * writes the rest.
 */
const encoder = new Encoder({ ignoreUndefined: true });
const writer = new MsgpackWriter();
const decoder = new Decoder();

export function encode(value: unknown): Uint8Array {
  return writer.write(value) ?? encoder.encode(value);
}

/** Raw msgpack decode; throws NotAnEnvelopeError on bytes that are not msgpack. */
export function decode(bytes: Uint8Array, at?: StreamPosition): unknown {
  try {
    return decoder.decode(bytes);
  } catch (err) {
    throw new NotAnEnvelopeError(`not msgpack (${(err as Error).message})`, at);
  }
}

export function encodeEvent(event: Envelope): Uint8Array {
  return encode(event);
}

/** Bytes → validated event; any failure is a typed DecodeError that names the stream position. */
export function decodeEvent(bytes: Uint8Array, at?: StreamPosition): CorralEvent {
  return checkEnvelope(decode(bytes, at), at);
}

/**
 * Bytes → the event as a reader that declared its reads (src/events/reads.ts) gets it: only the
 * fields it reads are decoded and checked, and the envelope's ids are stepped over. Anything out
 * of the ordinary (an older version to upcast, a data schema that is not an object, a body that
 * is not a plain map of string keys, bytes it cannot read, a check that fails) goes through
 * decodeEvent, whose result or typed error is then the answer: every error is decodeEvent's own.
 */
export function decodeEventView(bytes: Uint8Array, plan: ReadPlan, at?: StreamPosition): AnyEventView {
  let view: AnyEventView | undefined;
  try {
    view = readView(bytes, plan);
  } catch {
    // A wrong head, or bytes the cursor (or @msgpack/msgpack on a part it handed over) could not
    // read: decodeEvent says which.
  }
  return view ?? viewOf(decodeEvent(bytes, at), plan);
}

/** A whole event cut down to the view: the same shape whichever way it was decoded. */
function viewOf(e: CorralEvent, plan: ReadPlan): AnyEventView {
  const reads = plan.of(e.type);
  let data: unknown = NO_DATA;
  if (reads === null) data = e.data;
  else if (reads) {
    const all = e.data as Record<string, unknown>;
    const picked: Record<string, unknown> = {};
    for (const name of reads.names) if (Object.hasOwn(all, name)) picked[name] = all[name];
    data = picked;
  }
  return { type: e.type, v: e.v, aggregate: e.aggregate, at: e.at, data };
}

const utf8 = new TextEncoder();
const keysOf = (names: readonly string[]) => names.map((n) => utf8.encode(n));
const ENVELOPE = keysOf(["id", "type", "v", "aggregate", "at", "data", "causationId", "correlationId"]);
const AGGREGATE = keysOf(["kind", "id"]);
/** Known names, matched as bytes: a type or kind read costs no string. */
const TYPE_NAMES = catalogue.map((d) => d.type);
const TYPES = keysOf(TYPE_NAMES);
const KINDS = keysOf(AGGREGATE_KINDS);
/** The type matched last: the next event is likely of the same one. */
let lastType = -1;
/** The data of a type nobody reads: shared, so frozen. */
const NO_DATA = Object.freeze({});
const cursor = new MsgpackCursor((b) => decoder.decode(b));
/** Reused: the head is checked, never kept. */
const head: EnvelopeHead = {
  hasId: false,
  type: undefined,
  v: undefined,
  kind: undefined,
  aggregateId: undefined,
  at: undefined,
  causationId: undefined,
  correlationId: undefined,
};

/** The view, or undefined where decodeEvent must decide. */
function readView(bytes: Uint8Array, plan: ReadPlan): AnyEventView | undefined {
  const c = cursor;
  c.reset(bytes);
  const entries = c.mapHeader();
  if (entries < 0) return undefined;
  head.hasId = false;
  head.type =
    head.v =
    head.kind =
    head.aggregateId =
    head.at =
    head.causationId =
    head.correlationId =
      undefined;
  let dataAt = -1;
  for (let i = 0; i < entries; i++) {
    switch (c.key(ENVELOPE, i)) {
      case 0:
        head.hasId = c.skipString() > 0;
        if (!head.hasId) return undefined;
        break;
      case 1: {
        const t = c.stringIn(TYPES, lastType);
        if (t < 0) return undefined; // unknown: decodeEvent names it
        head.type = TYPE_NAMES[t];
        lastType = t;
        break;
      }
      case 2:
        head.v = c.value();
        break;
      case 3: {
        const fields = c.mapHeader();
        if (fields < 0) return undefined;
        head.kind = head.aggregateId = undefined;
        for (let j = 0; j < fields; j++) {
          const k = c.key(AGGREGATE, j);
          if (k === 0) {
            const kind = c.stringIn(KINDS);
            if (kind < 0) return undefined;
            head.kind = AGGREGATE_KINDS[kind];
          } else if (k === 1) head.aggregateId = c.value();
          else c.skip();
        }
        break;
      }
      case 4:
        head.at = c.value();
        break;
      case 5:
        dataAt = c.pos;
        c.skip();
        break;
      case 6: // only whether it is a string matters (checkHead): a string is stepped over
        head.causationId = c.skipString() >= 0 ? "" : c.value();
        break;
      case 7:
        head.correlationId = c.skipString() >= 0 ? "" : c.value();
        break;
      default:
        c.skip();
    }
  }
  if (!c.done) return undefined;
  const checked = checkHead(head);
  const { def } = checked;
  const reads = plan.of(def.type);
  if (reads === null || checked.v < def.v) return undefined;
  let data: unknown = NO_DATA;
  if (reads) {
    if (dataAt < 0) return undefined;
    c.pos = dataAt;
    const fields = c.mapHeader();
    if (fields < 0) return undefined;
    const picked: Record<string, unknown> = {};
    let next = 0; // fields read come in the writer's order: the next one is tried first
    for (let j = 0; j < fields; j++) {
      const k = c.key(reads.keys, next);
      if (k < 0) {
        c.skip();
        continue;
      }
      picked[reads.names[k] as string] = c.value();
      next = k + 1;
    }
    const parsed = reads.check.safeParse(picked);
    if (!parsed.success) return undefined;
    data = parsed.data;
  }
  return { type: def.type as EventType, v: def.v, aggregate: checked.aggregate, at: checked.at, data };
}
