import type { AggregateRef } from "../events/envelope.ts";
import { refKey } from "../events/envelope.ts";

export class StoreError extends Error {
  override name = "StoreError";
}

/** Optimistic concurrency: someone appended to the aggregate since we read it. */
export class ConcurrencyError extends StoreError {
  override name = "ConcurrencyError";
  constructor(
    readonly aggregate: AggregateRef,
    readonly expectedSeq: number,
    /** The aggregate's actual last stream sequence, as the server reported it. */
    readonly currentSeq: number,
  ) {
    super(`${refKey(aggregate)}: expected last sequence ${expectedSeq}, stream has ${currentSeq}`);
  }
}

/** No acknowledgement within the timeout, even after retrying with the same Nats-Msg-Id. */
export class AppendTimeoutError extends StoreError {
  override name = "AppendTimeoutError";
}

/** Nothing answered on the subject: the stream does not exist or does not cover it. */
export class NoStreamError extends StoreError {
  override name = "NoStreamError";
}
