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

/** Errors a client of the pool API can get; `code` is the stable, machine-readable part. */
export class PoolError extends Error {
  override name = "PoolError";
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export class PoolClosedError extends PoolError {
  override name = "PoolClosedError";
  constructor(pool: string) {
    super("pool_closed", `pool is closed: ${pool}`);
  }
}

export class AcquireTimeoutError extends PoolError {
  override name = "AcquireTimeoutError";
  constructor(pool: string, timeoutMs: number) {
    super("timeout", `no agent of pool ${pool} became free within ${timeoutMs} ms`);
  }
}

export class AcquireCancelledError extends PoolError {
  override name = "AcquireCancelledError";
  constructor(pool: string) {
    super("cancelled", `acquire on pool ${pool} was cancelled`);
  }
}

export class UnknownPoolError extends PoolError {
  override name = "UnknownPoolError";
  constructor(pool: string, known: string[]) {
    super("unknown_pool", `no pool named ${JSON.stringify(pool)} (pools: ${known.join(", ") || "none"})`);
  }
}

export class LeaseNotActiveError extends PoolError {
  override name = "LeaseNotActiveError";
  constructor(leaseId: string, state: string) {
    super(
      state === "new" ? "lease_not_found" : "lease_not_active",
      state === "new" ? `no lease ${leaseId}` : `lease ${leaseId} is ${state}, not granted`,
    );
  }
}

/** The caller did not present the token the lease was granted with (lease-token.ts). */
export class LeaseTokenInvalidError extends PoolError {
  override name = "LeaseTokenInvalidError";
  constructor(leaseId: string) {
    super(
      "lease_token_invalid",
      `wrong lease token for lease ${leaseId}: use the token its acquire returned`,
    );
  }
}
