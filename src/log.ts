import pino, { type Logger } from "pino";
import pretty from "pino-pretty";

export type { Logger };

export interface LogOptions {
  name?: string;
  level?: string;
  /** Defaults to stderr, so command output on stdout stays clean for pipes. */
  fd?: 1 | 2;
}

/** pino logger: human-readable in a terminal, JSON lines otherwise. Level from CORRAL_LOG_LEVEL. */
export function createLogger(opts: LogOptions = {}): Logger {
  const fd = opts.fd ?? 2;
  const level = opts.level ?? process.env.CORRAL_LOG_LEVEL ?? "info";
  const tty = fd === 1 ? process.stdout.isTTY : process.stderr.isTTY;
  const base = { name: opts.name ?? "corral", level };
  if (tty) {
    const colorize = !process.env.NO_COLOR;
    // On screen an error is its type and message, never a stack (CORRAL_DEBUG=1 shows them); JSON
    // logs, written for files and tools, keep them.
    const serializers: Record<string, (v: unknown) => unknown> = process.env.CORRAL_DEBUG
      ? {}
      : { err: (err) => (err instanceof Error ? `${err.name}: ${err.message}` : err) };
    return pino(
      { ...base, serializers },
      pretty({ destination: fd, sync: true, colorize, ignore: "pid,hostname" }),
    );
  }
  return pino(base, pino.destination({ fd, sync: false }));
}

/** A logger that drops everything (library default when the caller passes none). */
export const silentLogger: Logger = pino({ level: "silent" });
