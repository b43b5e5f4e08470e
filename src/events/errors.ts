/**
 * Typed errors for events that cannot be read. Each carries the stream sequence and subject when
 * known, so a reader can log exactly which message it skipped.
 */
export type DecodeReason = "not-envelope" | "unknown-type" | "newer-version" | "invalid-data" | "forged";

export interface StreamPosition {
  seq?: number;
  subject?: string;
}

export class DecodeError extends Error {
  override name = "DecodeError";
  readonly reason: DecodeReason;
  seq?: number;
  subject?: string;

  constructor(reason: DecodeReason, message: string, at: StreamPosition = {}) {
    super(at.seq === undefined ? message : `${message} (stream seq ${at.seq})`);
    this.reason = reason;
    this.seq = at.seq;
    this.subject = at.subject;
  }
}

/** The bytes are not a msgpack corral envelope at all. */
export class NotAnEnvelopeError extends DecodeError {
  override name = "NotAnEnvelopeError";
  constructor(detail: string, at?: StreamPosition) {
    super("not-envelope", `not a corral event envelope: ${detail}`, at);
  }
}

export class UnknownEventTypeError extends DecodeError {
  override name = "UnknownEventTypeError";
  constructor(
    readonly type: string,
    at?: StreamPosition,
  ) {
    super("unknown-type", `unknown event type ${JSON.stringify(type)}`, at);
  }
}

/** Written by a newer corral than this one: never guess at its meaning. */
export class NewerVersionError extends DecodeError {
  override name = "NewerVersionError";
  constructor(
    readonly type: string,
    readonly v: number,
    readonly known: number,
    at?: StreamPosition,
  ) {
    super("newer-version", `${type} v${v} is newer than this build understands (v${known})`, at);
  }
}

export class InvalidEventDataError extends DecodeError {
  override name = "InvalidEventDataError";
  constructor(
    readonly type: string,
    readonly issues: string[],
    at?: StreamPosition,
  ) {
    super("invalid-data", `${type} data is invalid: ${issues.join("; ")}`, at);
  }
}

/**
 * No valid writer mark (src/store/event-mark.ts): whatever it says, no corral writer wrote it, so
 * nothing folds it. `type` is what the body claims to be, when it could be read, for display only.
 */
export class ForgedEventError extends DecodeError {
  override name = "ForgedEventError";
  constructor(
    readonly check: string,
    detail: string,
    readonly type?: string,
    at?: StreamPosition,
  ) {
    super("forged", type ? `${type}: ${detail}` : detail, at);
  }
}
