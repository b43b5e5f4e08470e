import type { NatsAuth } from "./auth.ts";

/**
 * The credentials given as `corral --nats-…` flags. main.ts sets them once before a command runs;
 * every connection of that command (connect.ts) then uses them over the environment's.
 */
let fromFlags: NatsAuth = {};

export function useCommandLineAuth(auth: NatsAuth): void {
  fromFlags = auth;
}

export function commandLineAuth(): NatsAuth {
  return fromFlags;
}
