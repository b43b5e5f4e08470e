import type { Msg } from "@nats-io/nats-core";
import { MARK_HEADER } from "./event-mark.ts";

const NAME = `${MARK_HEADER}:`;

/** The shape of nats-core's MsgImpl that holds the raw bytes (header block, then payload). */
interface RawMsg {
  _rdata?: Uint8Array;
  _msg?: { hdr?: number };
}

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
  return scanHeaders(raw.data, raw.hdr);
}

/** The raw bytes of a delivered message and the length of its header block, when nats-core has them. */
export function rawOf(msg: Msg): { data: Uint8Array; hdr: number } | undefined {
  const raw = msg as unknown as RawMsg;
  const data = raw._rdata;
  const hdr = raw._msg?.hdr;
  return data instanceof Uint8Array && typeof hdr === "number" ? { data, hdr } : undefined;
}

/** The value of the first `Corral-Mark:` line in a raw `NATS/1.0\r\n…\r\n\r\n` block. */
export function scanHeaders(data: Uint8Array, end: number): string | undefined {
  const from = markValueStart(data, end);
  if (from < 0) return undefined;
  const to = markValueEnd(data, from, end);
  if (to === from) return undefined;
  return String.fromCharCode.apply(null, data.subarray(from, to) as unknown as number[]);
}

/** Where the value of the first `Corral-Mark:` line of a raw header block starts; -1: no such line. */
export function markValueStart(data: Uint8Array, end: number): number {
  // Fast path: the writer sets the mark last, so it is the block's last line (before "\r\n\r\n").
  if (end >= 4 && data[end - 4] === 13) {
    let at = end - 5;
    while (at > 0 && data[at - 1] !== 10 && end - at < 128) at--;
    let j = 0;
    while (j < NAME.length && data[at + j] === NAME.charCodeAt(j)) j++;
    if (j === NAME.length && data[at - 1] === 10 && data[at + j] === 32) return at + j + 1;
  }
  const first = NAME.charCodeAt(0);
  // A line starts after "\n"; the name is matched byte by byte.
  for (let i = 1; i + NAME.length <= end; i++) {
    if (data[i] !== first || data[i - 1] !== 10) continue;
    let j = 1;
    while (j < NAME.length && data[i + j] === NAME.charCodeAt(j)) j++;
    if (j < NAME.length) continue;
    let from = i + NAME.length;
    while (from < end && data[from] === 32) from++;
    return from;
  }
  return -1;
}

/** Where a header value starting at `from` ends: at its line's end, less trailing spaces. */
export function markValueEnd(data: Uint8Array, from: number, end: number): number {
  let to = from;
  while (to < end && data[to] !== 13 && data[to] !== 10) to++;
  while (to > from && data[to - 1] === 32) to--;
  return to;
}
