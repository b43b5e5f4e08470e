import type { NatsConnection } from "@nats-io/nats-core";
import { type NatsAuth, redactUrl } from "../nats/auth.ts";
import { connectNats } from "../nats/connect.ts";
import type { EventStore } from "../store/event-store.ts";
import type { Integrity } from "../store/integrity.ts";
import { CliError, EXIT } from "./exit.ts";

/**
 * The CLI promises an answer within 3 s when NATS is down. Start-up takes ~0.5 s through tsx and
 * connectNats adds 250 ms of slack to its timeout, so 1.5 s leaves room on a slow machine.
 */
export const CONNECT_TIMEOUT_MS = 1_500;

export interface SessionOptions {
  url: string;
  /** Long-lived commands (--follow) ride out server restarts; one-shot commands fail fast. */
  reconnect?: boolean;
  /** Credentials known to the caller (`npm start`'s own server); see connect.ts for the others. */
  auth?: NatsAuth;
  /** How to check events (default: the CLI's key, see event-key.ts). */
  integrity?: Integrity;
}

/** Opens a connection and the event store, runs `fn`, and always closes both. */
export async function withStore<T>(opts: SessionOptions, fn: (store: EventStore) => Promise<T>): Promise<T> {
  const nc = await connectNats(opts.url, {
    name: "corral-cli",
    timeoutMs: CONNECT_TIMEOUT_MS,
    reconnect: opts.reconnect ?? false,
    auth: opts.auth,
    role: "reader", // events and the worldview only read the stream
  });
  try {
    const store = await openStore(nc, opts.url, opts.integrity);
    try {
      return await fn(store);
    } finally {
      store.close();
    }
  } finally {
    if (!nc.isClosed()) await nc.close();
  }
}

async function openStore(nc: NatsConnection, url: string, integrity?: Integrity): Promise<EventStore> {
  // Imported here: the pool commands share this module's timeout but not the store (nor zod).
  const { EventStore } = await import("../store/event-store.ts");
  try {
    const { cliIntegrity } = await import("./event-key.ts");
    return await EventStore.open(nc, { integrity: integrity ?? cliIntegrity() });
  } catch (err) {
    const msg = (err as Error).message ?? String(err);
    // A plain nats-server without -js answers, but has no JetStream API: say so plainly.
    if (/jetstream (is )?not enabled|no responders|503/i.test(msg)) {
      throw new CliError(
        `JetStream is not enabled on ${redactUrl(url)} (start nats-server with -js): ${msg}`,
        EXIT.failure,
      );
    }
    throw err;
  }
}
