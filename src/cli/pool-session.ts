import { ApiError, CorralClient } from "../api/client.ts";
import { connectNats } from "../nats/connect.ts";
import { colourEnabled, type Palette, palette } from "./colour.ts";
import { CliError, EXIT } from "./exit.ts";
import { type Out, stdout } from "./output.ts";
import { CONNECT_TIMEOUT_MS } from "./session.ts";

export interface ClientSessionOptions {
  url: string;
  /** Long-lived commands (--watch) ride out server restarts; one-shot commands fail fast. */
  reconnect?: boolean;
}

/**
 * Connects, runs `fn` with a pool API client, and always closes the connection. An API error
 * becomes `error (<code>): <message>` with exit code 1; an unreachable NATS stays a
 * NatsUnreachableError (exit 3), mapped by main.ts.
 */
export async function withClient<T>(
  opts: ClientSessionOptions,
  fn: (client: CorralClient) => Promise<T>,
): Promise<T> {
  const nc = await connectNats(opts.url, {
    name: "corral-cli",
    timeoutMs: CONNECT_TIMEOUT_MS,
    reconnect: opts.reconnect ?? false,
    role: "client",
  });
  try {
    return await fn(new CorralClient(nc));
  } catch (err) {
    if (err instanceof ApiError) throw apiCliError(err);
    throw err;
  } finally {
    if (!nc.isClosed()) await nc.close();
  }
}

export function apiErrorText(err: ApiError): string {
  return `error (${err.code}): ${err.message}`;
}

export function apiCliError(err: ApiError): CliError {
  return new CliError(apiErrorText(err), EXIT.failure);
}

/** Colour for what goes to `out`: only the real stdout can be a terminal. */
export function paletteFor(out: Out): Palette {
  return palette(colourEnabled({ isTTY: out === stdout && process.stdout.isTTY === true }));
}

export function jsonOut(out: Out, value: unknown): void {
  out.write(`${JSON.stringify(value)}\n`);
}

const SIGNAL_NUMBER = { SIGINT: 2, SIGTERM: 15 } as const;
export type StopSignal = keyof typeof SIGNAL_NUMBER;

/** The shell's convention for "ended by a signal": 128 + its number (Ctrl-C → 130). */
export function signalExitCode(signal: StopSignal): number {
  return 128 + SIGNAL_NUMBER[signal];
}

/**
 * Calls `onSignal` on the first Ctrl-C (or SIGTERM) after this call; the returned function
 * removes the handlers. A second signal while the first is being handled exits at once, the
 * way a user pressing Ctrl-C twice expects.
 */
export function onInterrupt(onSignal: (signal: StopSignal) => void): () => void {
  let seen = false;
  const handlers = (Object.keys(SIGNAL_NUMBER) as StopSignal[]).map((signal) => {
    const handler = () => {
      if (seen) process.exit(signalExitCode(signal));
      seen = true;
      onSignal(signal);
    };
    process.on(signal, handler);
    return [signal, handler] as const;
  });
  return () => {
    for (const [signal, handler] of handlers) process.off(signal, handler);
  };
}
