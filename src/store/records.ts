import type { Msg } from "@nats-io/nats-core";
import { decodeEvent } from "../codec/msgpack.ts";
import type { CorralEvent } from "../events/catalogue.ts";
import { DecodeError, ForgedEventError, type StreamPosition } from "../events/errors.ts";
import type { AnyEventView } from "../events/reads.ts";
import type { Verdict, Verifier } from "./integrity.ts";
import { deliveredSubject } from "./subjects.ts";

/**
 * One stream message as a reader sees it: the decoded event, or the typed reason it is unreadable
 * (a forged one among them). `unverified`: read by a store without the key, so its mark (present)
 * could not be checked. `E`: a whole event, or the view of one that a projection reads (reads.ts).
 */
export type StoredRecord<E extends AnyEventView = CorralEvent> =
  | {
      seq: number;
      subject: string;
      time: number;
      event: E;
      error?: undefined;
      unverified?: true;
      /** Verified: the sequence of the subject's message before this one, as its writer marked it. */
      prev?: number;
    }
  | {
      seq: number;
      subject: string;
      time: number;
      event?: undefined;
      error: DecodeError;
      unverified?: undefined;
      prev?: undefined;
    };

/** Bytes → an event, or the view of one; throws a DecodeError. */
export type EventDecoder<E extends AnyEventView> = (bytes: Uint8Array, at: StreamPosition) => E;

/** The record of one message, its event decoded whole. */
export function toRecord(
  seq: number,
  subject: string,
  time: number,
  data: Uint8Array,
  verify?: Verifier,
  mark?: string,
): StoredRecord {
  return decodeRecord(decodeEvent, seq, subject, time, data, verify, mark);
}

/** Reused: a decoder reads it only to name the position in an error it throws (errors.ts copies it). */
const position: StreamPosition = {};

/**
 * The record of one message, its event decoded by `decode`. `from`: its subject, or the delivered
 * message to take it from (deliveredSubject: not decoded when the event's aggregate spells it).
 */
export function decodeRecord<E extends AnyEventView>(
  decode: EventDecoder<E>,
  seq: number,
  from: string | Msg,
  time: number,
  data: Uint8Array,
  verify?: Verifier,
  mark?: string,
): StoredRecord<E> {
  let event: E;
  try {
    position.seq = seq;
    position.subject = typeof from === "string" ? from : undefined;
    event = decode(data, position);
  } catch (err) {
    const subject = typeof from === "string" ? from : from.subject;
    // Undecodable and not marked by a writer: forged, like any other message no writer wrote.
    const verdict = verify?.(subject, data, mark);
    if (verdict !== undefined && typeof verdict !== "number" && verdict !== "unverified") {
      return forgedRecord(seq, subject, time, undefined, verdict);
    }
    if (!(err instanceof DecodeError)) {
      return { seq, subject, time, error: new DecodeError("not-envelope", String(err), { seq, subject }) };
    }
    err.subject = subject;
    return { seq, subject, time, error: err };
  }
  const subject = typeof from === "string" ? from : deliveredSubject(from, event.aggregate);
  if (!verify) return { seq, subject, time, event };
  const verdict = verify(subject, data, mark);
  if (typeof verdict === "number") return { seq, subject, time, event, prev: verdict };
  if (verdict === "unverified") return { seq, subject, time, event, unverified: true };
  return forgedRecord(seq, subject, time, event.type, verdict);
}

/** The record of a message whose mark is not valid; `type`: what its body claims, if it could be read. */
export function forgedRecord<E extends AnyEventView = CorralEvent>(
  seq: number,
  subject: string,
  time: number,
  type: string | undefined,
  verdict: Exclude<Verdict, number | "unverified">,
): StoredRecord<E> {
  // `type` is for display and `tail -t` only.
  const error = new ForgedEventError(verdict.check, verdict.detail, type, { seq, subject });
  return { seq, subject, time, error };
}
