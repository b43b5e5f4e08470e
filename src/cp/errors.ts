import type { AggregateRef } from "../events/envelope.ts";
import { refKey } from "../events/envelope.ts";

/** The machine does not accept this input in its current state; nothing was stored. */
export class RejectedInputError extends Error {
  override name = "RejectedInputError";
  constructor(
    readonly aggregate: AggregateRef,
    readonly type: string,
    readonly state: unknown,
  ) {
    super(`${refKey(aggregate)} in state ${JSON.stringify(state)} does not accept ${type}`);
  }
}

/** The input is malformed (unknown type, wrong aggregate kind, bad data); nothing was stored. */
export class InvalidInputError extends Error {
  override name = "InvalidInputError";
}
