// The byte-level parts of an event mark (ARCHITECTURE.md, "Event marks"): finding the mark in a
// message's raw header block, parsing it, and laying out the input its MAC is taken over. Plain
// JavaScript so that src/store/event-mark.ts and the mark worker (mark-worker.mjs, started without
// a TypeScript loader) share one copy. Types: mark-bytes.d.mts.
import { hash } from "node:crypto";

export const MARK_HEADER = "Corral-Mark";
/** SHA-256's block: the key fills the first one of every MAC input. */
export const KEY_BLOCK = 64;
/** A MAC in base64url: 32 bytes, unpadded. */
export const MAC_CHARS = 43;
/** Bytes between subject and body in a MAC input: u64 prev, u32 body length. */
export const MIDDLE = 12;
/**
 * `v2.<8 hex>.<prev>.<32 bytes in unpadded base64url>`, canonical only: one spelling per mark
 * (Node's decoder would also take `+/`, padding, or other low bits in the last character). Checked
 * by `parseMarkBytes` in one pass: a regular expression cost as much as a third of the MAC.
 */
export const PREFIX = "v2.";
export const ID_CHARS = 8;
const MAX_PREV_DIGITS = 16;
/** Character code → 1 for a lowercase hex digit, 2 for base64url, 4 for a last MAC character (low bits 0). */
const CLASS = new Uint8Array(128);
for (const [chars, bit] of [
  ["0123456789abcdef", 1],
  ["ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", 2],
  ["AEIMQUYcgkosw048", 4],
]) {
  for (const c of chars) CLASS[c.charCodeAt(0)] |= bit;
}
const classOf = (c) => (c === undefined || c > 127 ? 0 : CLASS[c]);
const NAME = `${MARK_HEADER}:`;

/** Where the value of the first `Corral-Mark:` line of the raw header block `data[begin, end)` starts; -1: none. */
export function markValueStart(data, begin, end) {
  // Fast path: the writer sets the mark last, so it is the block's last line (before "\r\n\r\n").
  if (end - begin >= 4 && data[end - 4] === 13) {
    let at = end - 5;
    while (at > begin && data[at - 1] !== 10 && end - at < 128) at--;
    let j = 0;
    while (j < NAME.length && data[at + j] === NAME.charCodeAt(j)) j++;
    if (j === NAME.length && at > begin && data[at - 1] === 10 && data[at + j] === 32) return at + j + 1;
  }
  const first = NAME.charCodeAt(0);
  // A line starts after "\n"; the name is matched byte by byte.
  for (let i = begin + 1; i + NAME.length <= end; i++) {
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

/**
 * Where the mark's value starts when the header block's last line, ending at `to` (before the
 * block's closing "\r\n\r\n"), is `Corral-Mark: <value>` as a corral writer lays it out; -1 when it
 * is not. Found from the end by the value's shape: the MAC's length, then back over the prev's
 * digits to the fixed-length `v2.<key id>.` — no scan of the whole block.
 */
export function lastLineMark(data, begin, to) {
  if (data[to] !== 13 || data[to + 1] !== 10) return -1;
  let at = to - MAC_CHARS - 1; // the "." before the MAC
  if (at <= begin || data[at] !== 46) return -1;
  let digits = 0;
  while (digits <= MAX_PREV_DIGITS && at - 1 > begin && data[at - 1] >= 48 && data[at - 1] <= 57) {
    at--;
    digits++;
  }
  const from = at - 1 - ID_CHARS - PREFIX.length; // before the "." ending the key id
  const name = from - 1 - NAME.length;
  if (name - 1 < begin || data[from - 1] !== 32 || data[name - 1] !== 10) return -1;
  for (let j = 0; j < NAME.length; j++) if (data[name + j] !== NAME.charCodeAt(j)) return -1;
  return from;
}

/** Where a header value starting at `from` ends: at its line's end, less trailing spaces. */
export function markValueEnd(data, from, end) {
  let to = from;
  while (to < end && data[to] !== 13 && data[to] !== 10) to++;
  while (to > from && data[to - 1] === 32) to--;
  return to;
}

/** The `prev` of the canonical mark in `data[from, to)` (ASCII), or -1 when it is not one. */
export function parseMarkBytes(data, from, to) {
  if (to - from < PREFIX.length + ID_CHARS + 3 + MAC_CHARS) return -1;
  for (let i = 0; i < PREFIX.length; i++) if (data[from + i] !== PREFIX.charCodeAt(i)) return -1;
  let at = from + PREFIX.length;
  for (const end = at + ID_CHARS; at < end; at++) if (!(classOf(data[at]) & 1)) return -1;
  if (data[at++] !== 46 /* . */) return -1;
  const digitsAt = at;
  let prev = 0;
  for (let c = data[at] ?? 0; at < to && c >= 48 && c <= 57; c = data[++at] ?? 0) prev = prev * 10 + (c - 48);
  const digits = at - digitsAt;
  if (digits === 0 || digits > MAX_PREV_DIGITS || (digits > 1 && data[digitsAt] === 48)) return -1;
  if (data[at++] !== 46 || to - at !== MAC_CHARS) return -1;
  for (; at < to - 1; at++) if (!(classOf(data[at]) & 2)) return -1;
  return classOf(data[at]) & 4 ? prev : -1;
}

/** Whether the mark at `data[from…]` names the key with this id (8 lowercase hex characters). */
export function namesKey(data, from, id) {
  for (let i = 0; i < ID_CHARS; i++) if (data[from + PREFIX.length + i] !== id.charCodeAt(i)) return false;
  return true;
}

/** Writes `u64 prev ‖ u32 length` (big-endian) at `at`; returns the end. */
export function writeMiddle(s, at, prev, length) {
  const hi = Math.floor(prev / 0x1_0000_0000);
  const lo = prev >>> 0;
  s[at++] = hi >>> 24;
  s[at++] = (hi >>> 16) & 0xff;
  s[at++] = (hi >>> 8) & 0xff;
  s[at++] = hi & 0xff;
  s[at++] = lo >>> 24;
  s[at++] = (lo >>> 16) & 0xff;
  s[at++] = (lo >>> 8) & 0xff;
  s[at++] = lo & 0xff;
  s[at++] = length >>> 24;
  s[at++] = (length >>> 16) & 0xff;
  s[at++] = (length >>> 8) & 0xff;
  s[at++] = length & 0xff;
  return at;
}

/** Verdicts of `checkStaged`, one byte per entry. */
export const STAGED = { valid: 0, missing: 1, malformed: 2, "other-key": 3, mismatch: 4 };

/**
 * Checks a batch staged by src/store/mark-batch.ts, on whichever thread runs it. Entry i is
 * `subject ‖ header block ‖ body` in `view`, with `spans[4i…4i+3]` = its start, header start, body
 * start and end. The MAC input (key block, u16 |subject|, subject, u64 prev, u32 |body|, body) is
 * laid out in `scratch`, whose first KEY_BLOCK bytes hold the key. Writes each verdict to
 * `verdicts` and each valid mark's prev to `prevs`; returns `scratch`, grown if it had to be.
 */
export function checkStaged(view, spans, count, keyId, scratch, verdicts, prevs) {
  for (let i = 0; i < count; i++) {
    const start = spans[4 * i];
    const hdrAt = spans[4 * i + 1];
    const bodyAt = spans[4 * i + 2];
    const end = spans[4 * i + 3];
    let to = bodyAt - 4;
    let from = lastLineMark(view, hdrAt, to);
    let prev = from < 0 ? -1 : parseMarkBytes(view, from, to);
    if (prev < 0) {
      // Not the writer's layout (the mark its block's last line): look for it anywhere.
      from = markValueStart(view, hdrAt, bodyAt);
      to = from < 0 ? from : markValueEnd(view, from, bodyAt);
      if (to <= from) {
        verdicts[i] = STAGED.missing;
        continue;
      }
      prev = parseMarkBytes(view, from, to);
    }
    if (prev < 0) {
      verdicts[i] = STAGED.malformed;
      continue;
    }
    if (!namesKey(view, from, keyId)) {
      verdicts[i] = STAGED["other-key"];
      continue;
    }
    const subjectLength = hdrAt - start;
    const n = KEY_BLOCK + 2 + subjectLength + MIDDLE + (end - bodyAt);
    if (n > scratch.length) {
      const grown = new Uint8Array(Math.max(n, 2 * scratch.length));
      grown.set(scratch.subarray(0, KEY_BLOCK));
      scratch = grown;
    }
    let at = KEY_BLOCK;
    scratch[at++] = subjectLength >>> 8;
    scratch[at++] = subjectLength & 0xff;
    for (let j = start; j < hdrAt; j++) scratch[at++] = view[j];
    at = writeMiddle(scratch, at, prev, end - bodyAt);
    scratch.set(view.subarray(bodyAt, end), at);
    const mac = hash("sha256", scratch.subarray(0, at + end - bodyAt), "base64url");
    // Compared in constant time (no early exit), on the base64url text: no decoding needed.
    let diff = mac.length ^ MAC_CHARS;
    for (let j = 0; j < MAC_CHARS; j++) diff |= view[to - MAC_CHARS + j] ^ mac.charCodeAt(j);
    verdicts[i] = diff === 0 ? STAGED.valid : STAGED.mismatch;
    prevs[i] = prev;
  }
  return scratch;
}
