import type { Msg } from "@nats-io/nats-core";
import { rawOf } from "../nats/raw-msg.ts";
import { MARK_HEADER, markValueEnd, markValueStart } from "./mark-bytes.ts";

/**
 * The Corral-Mark header of a delivered message. A rebuild reads every message, and nats.js parses
 * a whole header block into a map on first access (reader.ts skips that for data messages), so the
 * one header is found in the raw block with a plain scan (no native calls: at this size they cost
 * more than the bytes); when the client's internals are not shaped as expected, its own parser
 * answers.
 */
export function markOf(msg: Msg): string | undefined {
  const raw = rawOf(msg);
  if (!raw) return msg.headers?.get(MARK_HEADER) || undefined;
  return scanHeaders(raw.data, 0, raw.hdr);
}

/** The value of the first `Corral-Mark:` line in the raw `NATS/1.0\r\n…\r\n\r\n` block `data[begin, end)`. */
export function scanHeaders(data: Uint8Array, begin: number, end: number): string | undefined {
  const from = markValueStart(data, begin, end);
  if (from < 0) return undefined;
  const to = markValueEnd(data, from, end);
  if (to === from) return undefined;
  return String.fromCharCode.apply(null, data.subarray(from, to) as unknown as number[]);
}
