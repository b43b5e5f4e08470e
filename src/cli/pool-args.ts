import { InvalidArgumentError } from "commander";
import { acquireRequest, renewRequest } from "../api/requests.ts";
import { parseDuration } from "../config/duration.ts";
import { isValidId } from "../events/envelope.ts";
import { isLeaseId } from "../events/lease-id.ts";
import { formatDuration } from "./pool-format.ts";

/**
 * Option and argument parsers of the pool commands. Like args.ts they throw commander's
 * InvalidArgumentError, so a bad value exits with the usage code and names the option.
 */

/** A parser for a duration within the limits the daemon's request schema enforces. */
function durationWithin(limits: { minValue: number | null; maxValue: number | null }) {
  const min = limits.minValue ?? 0;
  const max = limits.maxValue ?? Number.MAX_SAFE_INTEGER;
  return (text: string): number => {
    const ms = parseDuration(text);
    if (ms === undefined) throw new InvalidArgumentError("expected a duration such as 500ms, 30s or 5m.");
    if (ms < min || ms > max) {
      throw new InvalidArgumentError(`expected between ${formatDuration(min)} and ${formatDuration(max)}.`);
    }
    return ms;
  };
}

/** `--timeout`: how long acquire waits for a free agent. */
export const parseAcquireTimeout = durationWithin(acquireRequest.shape.timeoutMs.unwrap());

/** `--ttl`: lease lifetime, for acquire and renew alike. */
export const parseTtl = durationWithin(renewRequest.shape.ttlMs.unwrap());

/** Names become subject tokens (`corral.api.pool.<name>.…`): no dots, wildcards or spaces. */
function idParser(what: string) {
  return (text: string): string => {
    if (!isValidId(text)) {
      throw new InvalidArgumentError(`expected a ${what}: 1-128 characters of A-Z a-z 0-9 _ -.`);
    }
    return text;
  };
}

export const parsePoolName = idParser("pool name");
/** A lease id as acquire printed it: `<agent id>.<uuid>` (it names its agent). */
export function parseLeaseId(text: string): string {
  if (!isLeaseId(text)) {
    throw new InvalidArgumentError("expected a lease id as `corral acquire` printed it: <agent id>.<uuid>.");
  }
  return text;
}
