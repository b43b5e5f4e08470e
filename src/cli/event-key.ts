import type { Integrity } from "../store/integrity.ts";
import { findEventKey, KEY_FILE_ENV, keyFileIn } from "../store/key-file.ts";

/**
 * What the CLI checks events with: the writers' key when it can read it (`CORRAL_EVENT_KEY_FILE`,
 * else `.corral/event.key`, where `corral up` and `npm start` keep it), so forged events show as
 * FORGED. Without it the CLI says so once on stderr and reads "unverified": unmarked events are
 * still FORGED, marked ones are shown (flagged `"unverified": true` with --json).
 */
export function cliIntegrity(
  warn: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): Integrity {
  const found = findEventKey();
  if (found) return { key: found.key };
  const where = process.env[KEY_FILE_ENV] || keyFileIn(".corral");
  warn(
    `corral: no event key at ${where} (set ${KEY_FILE_ENV}): events are unverified; unmarked ones show as FORGED`,
  );
  return "unverified";
}
