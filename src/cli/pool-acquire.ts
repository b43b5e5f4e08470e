import { randomUUID } from "node:crypto";
import { hostname, userInfo } from "node:os";
import type { CorralClient } from "../api/client.ts";
import type { AcquireReply } from "../api/protocol.ts";
import { keepLeaseToken } from "./lease-tokens.ts";
import type { Out } from "./output.ts";
import { formatLease } from "./pool-format.ts";
import { jsonOut, onInterrupt, paletteFor, type StopSignal } from "./pool-session.ts";

export interface AcquireCliOptions {
  timeoutMs?: number;
  ttlMs?: number;
  holder?: string;
  json: boolean;
}

/**
 * After cancelling, how long to wait for the acquire's own reply. A grant can cross the cancel on
 * the wire; waiting for it lets us give the agent back instead of leaving it leased until its TTL.
 */
const LATE_GRANT_WAIT_MS = 2_000;

/** `user@host`, so `corral status` shows whose lease it is when --holder is not given. */
export function defaultHolder(): string {
  try {
    return `${userInfo().username}@${hostname()}`;
  } catch {
    return hostname(); // no passwd entry for this uid (some containers)
  }
}

/**
 * `corral acquire <pool>`: waits for a lease and prints it. Ctrl-C while waiting cancels the
 * acquire on the daemon (by its random request id) and resolves to the signal, so the caller can
 * exit with 128 + signal once the connection is closed.
 */
export async function acquire(
  client: CorralClient,
  pool: string,
  opts: AcquireCliOptions,
  out: Out,
  err: Out,
): Promise<StopSignal | undefined> {
  const requestId = randomUUID();
  const pending = client.acquire(pool, {
    timeoutMs: opts.timeoutMs,
    ttlMs: opts.ttlMs,
    holder: opts.holder ?? defaultHolder(),
    requestId,
  });
  let stop: (signal: StopSignal) => void = () => {};
  const interrupted = new Promise<{ signal: StopSignal }>((resolve) => {
    stop = (signal) => resolve({ signal });
  });
  const removeHandlers = onInterrupt((signal) => stop(signal));
  try {
    const first = await Promise.race([pending.then((lease) => ({ lease })), interrupted]);
    if ("lease" in first) {
      let keptIn: string | undefined;
      try {
        keptIn = keepLeaseToken(first.lease);
      } catch (e) {
        err.write(`corral: could not keep the lease token (${(e as Error).message}); note it from here\n`);
      }
      if (opts.json) jsonOut(out, first.lease);
      else out.write(formatLease(first.lease, paletteFor(out), Date.now(), keptIn));
      return undefined;
    }
    await cancelWaiting(client, pool, requestId, pending, err);
    return first.signal;
  } finally {
    removeHandlers();
  }
}

async function cancelWaiting(
  client: CorralClient,
  pool: string,
  requestId: string,
  pending: Promise<AcquireReply>,
  err: Out,
): Promise<void> {
  const cancelled = await client.cancel(pool, requestId).then(
    () => true,
    (e: Error) => {
      err.write(`corral: could not cancel the acquire: ${e.message}\n`);
      return false;
    },
  );
  let timer: NodeJS.Timeout | undefined;
  const late = await Promise.race([
    pending.catch(() => undefined), // the usual outcome: the daemon answers "cancelled"
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), LATE_GRANT_WAIT_MS);
    }),
  ]);
  clearTimeout(timer);
  if (late) {
    await client.release(late, late.pool).then(
      () =>
        err.write(`corral: lease ${late.leaseId} was granted as the acquire was cancelled; released it\n`),
      (e: Error) =>
        err.write(`corral: lease ${late.leaseId} was granted as the acquire was cancelled: ${e.message}\n`),
    );
  }
  if (cancelled) err.write(`corral: acquire on pool ${pool} cancelled\n`);
}
