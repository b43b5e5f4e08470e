import type { NatsConnection } from "@nats-io/nats-core";

export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";

export function natsUrl(env: NodeJS.ProcessEnv = process.env): string {
  return env.NATS_URL?.trim() || DEFAULT_NATS_URL;
}

/** NATS did not answer at `url` within the timeout. The CLI maps it to exit code 3. */
export class NatsUnreachableError extends Error {
  override name = "NatsUnreachableError";
  constructor(
    readonly url: string,
    cause: unknown,
    /** What to do about it, when the thrower knows better than "start one with npm start". */
    readonly advice?: string,
  ) {
    super(`NATS is not reachable at ${url}: ${(cause as Error)?.message ?? cause}`);
  }
}

export interface ConnectOptions {
  name?: string;
  /** Give up on the first connection after this long (the CLI promises an answer within 3 s). */
  timeoutMs?: number;
  /** Long-running processes keep reconnecting; one-shot commands do not. */
  reconnect?: boolean;
}

export async function connectNats(url: string, opts: ConnectOptions = {}): Promise<NatsConnection> {
  const timeoutMs = opts.timeoutMs ?? 2_000;
  let timer: NodeJS.Timeout | undefined;
  try {
    // Loaded here, not at the top: the CLI imports this module for natsUrl and the error class,
    // and `corral --help` must not pay for the NATS client.
    const { connect } = await import("@nats-io/transport-node");
    const attempt = connect({
      servers: url,
      name: opts.name ?? "corral",
      timeout: timeoutMs,
      maxReconnectAttempts: opts.reconnect ? -1 : 0,
      reconnectTimeWait: 500,
    });
    // connect() has its own timeout, but a black-holed address can outlast it: race a hard limit.
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs + 250);
    });
    attempt.catch(() => {}); // the race may settle first; never leave this rejection unhandled
    const nc = await Promise.race([attempt, limit]);
    return nc;
  } catch (err) {
    throw new NatsUnreachableError(url, err);
  } finally {
    clearTimeout(timer);
  }
}

/** True when something speaking NATS answers at `url` quickly. */
export async function natsAnswers(url: string, timeoutMs = 1_000): Promise<boolean> {
  try {
    const nc = await connectNats(url, { timeoutMs, name: "corral-probe" });
    await nc.close();
    return true;
  } catch {
    return false;
  }
}
