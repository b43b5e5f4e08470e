// The byte-level parts of an event mark (ARCHITECTURE.md, "Event marks"): finding the mark in a
// message's raw header block, parsing it, and laying out the input its MAC is taken over. Shared by
// src/store/event-mark.ts and the checks of what a read's ring leaves (src/store/mark-batch.ts).
import { hash } from "node:crypto";
import { type HashInput, hasher, type V4Key, v4Key } from "./mark-hash.ts";
import { MarkMac, TAG_BYTES } from "./mark-mac.ts";

/** Bytes a mark is read from (indexing past the end reads undefined, as the checks expect). */
type Bytes = Uint8Array;

export const MARK_HEADER = "Corral-Mark" as const;
/** SHA-256's block: the key fills the first one of every v2 MAC input. */
export const KEY_BLOCK = 64 as const;
/** A v2 MAC in base64url: 32 bytes, unpadded. */
export const V2_MAC_CHARS = 43 as const;
/** A v3 or v4 tag in base64url: 16 bytes, unpadded. */
export const V3_MAC_CHARS = 22 as const;
/** Bytes between subject and body in a MAC input: u64 prev, u32 body length. */
export const MIDDLE = 12 as const;
/**
 * `v<2|3|4>.<8 hex>.<prev>.<MAC in unpadded base64url>`, canonical only: one spelling per mark
 * (Node's decoder would also take `+/`, padding, or other low bits in the last character). Checked
 * by `parseMarkBytes` in one pass: a regular expression cost as much as a third of a SHA-256 MAC.
 * Writers make v4 marks (mark-hash.ts, mark-mac.ts); v3 and v2 marks (event-mark.ts) are still read.
 */
export const PREFIX = "v4." as const;
export const ID_CHARS = 8 as const;
const PREFIX_CHARS = 3;
const MAX_PREV_DIGITS = 16;
/**
 * Character code → 1 for a lowercase hex digit, 2 for base64url, 4 for a v2 MAC's last character
 * (its low 2 bits 0), 8 for a v3 or v4 tag's last character (its low 4 bits 0).
 */
const CLASS = new Uint8Array(128);
const BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const B64 = Uint8Array.from(BASE64URL, (c) => c.charCodeAt(0));
for (const [chars, bit] of [
  ["0123456789abcdef", 1],
  [BASE64URL, 2],
  ["AEIMQUYcgkosw048", 4],
  ["AQgw", 8],
] as const) {
  for (const c of chars) CLASS[c.charCodeAt(0)] = (CLASS[c.charCodeAt(0)] as number) | bit;
}
const isDigit = (c: number | undefined): boolean => c !== undefined && c >= 48 && c <= 57;
const classOf = (c: number | undefined): number => (c === undefined || c > 127 ? 0 : (CLASS[c] as number));
const NAME = `${MARK_HEADER}:`;
/** The version digit's character code of a mark starting at `from` ("v2." → 50, "v3." → 51, "v4." → 52). */
export const markVersion = (data: Bytes, from: number): number | undefined => data[from + 1];
const V2 = 50;
const V3 = 51;
const V4 = 52;
const macChars = (version: number | undefined): number => (version === V2 ? V2_MAC_CHARS : V3_MAC_CHARS);

/** Where the value of the first `Corral-Mark:` line of the raw header block `data[begin, end)` starts; -1: none. */
export function markValueStart(data: Bytes, begin: number, end: number): number {
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
 * is not. Found from the end by the value's shape: the MAC's length (a v3 or v4 tag's, else a v2
 * MAC's: neither holds a "."), then back over the prev's digits to the fixed-length
 * `vN.<key id>.` — no scan of the whole block.
 */
export function lastLineMark(data: Bytes, begin: number, to: number): number {
  if (data[to] !== 13 || data[to + 1] !== 10) return -1;
  let at = to - V3_MAC_CHARS - 1; // the "." before the MAC (a v3 or v4 tag)
  if (data[at] !== 46) at = to - V2_MAC_CHARS - 1;
  if (at <= begin || data[at] !== 46) return -1;
  let digits = 0;
  while (digits <= MAX_PREV_DIGITS && at - 1 > begin && isDigit(data[at - 1])) {
    at--;
    digits++;
  }
  const from = at - 1 - ID_CHARS - PREFIX_CHARS; // before the "." ending the key id
  const name = from - 1 - NAME.length;
  if (name - 1 < begin || data[from - 1] !== 32 || data[name - 1] !== 10) return -1;
  for (let j = 0; j < NAME.length; j++) if (data[name + j] !== NAME.charCodeAt(j)) return -1;
  return from;
}

/** Where a header value starting at `from` ends: at its line's end, less trailing spaces. */
export function markValueEnd(data: Bytes, from: number, end: number): number {
  let to = from;
  while (to < end && data[to] !== 13 && data[to] !== 10) to++;
  while (to > from && data[to - 1] === 32) to--;
  return to;
}

/**
 * The `prev` of the canonical mark in `data[from, to)` (ASCII), or -1 when it is not one; its
 * version is `markVersion(data, from)`.
 */
export function parseMarkBytes(data: Bytes, from: number, to: number): number {
  if (data[from] !== 118 /* v */ || data[from + 2] !== 46) return -1;
  const version = markVersion(data, from);
  if (version !== V2 && version !== V3 && version !== V4) return -1;
  const mac = macChars(version);
  if (to - from < PREFIX_CHARS + ID_CHARS + 3 + mac) return -1;
  let at = from + PREFIX_CHARS;
  for (const end = at + ID_CHARS; at < end; at++) if (!(classOf(data[at]) & 1)) return -1;
  if (data[at++] !== 46 /* . */) return -1;
  const digitsAt = at;
  let prev = 0;
  for (let c = data[at] ?? 0; at < to && c >= 48 && c <= 57; c = data[++at] ?? 0) prev = prev * 10 + (c - 48);
  const digits = at - digitsAt;
  if (digits === 0 || digits > MAX_PREV_DIGITS || (digits > 1 && data[digitsAt] === 48)) return -1;
  if (data[at++] !== 46 || to - at !== mac) return -1;
  for (; at < to - 1; at++) if (!(classOf(data[at]) & 2)) return -1;
  return classOf(data[at]) & (version === V2 ? 4 : 8) ? prev : -1;
}

/** Whether the mark at `data[from…]` names the key with this id (8 lowercase hex characters). */
export function namesKey(data: Bytes, from: number, id: string): boolean {
  for (let i = 0; i < ID_CHARS; i++) if (data[from + PREFIX_CHARS + i] !== id.charCodeAt(i)) return false;
  return true;
}

/** A tag (`tags[at, at + 16)`) in unpadded base64url, as character codes written to `out[0, 22)`. */
function tagChars(tags: Bytes, at: number, out: Uint8Array): Uint8Array {
  let o = 0;
  for (let i = at; i < at + 15; i += 3) {
    const n = ((tags[i] as number) << 16) | ((tags[i + 1] as number) << 8) | (tags[i + 2] as number);
    out[o++] = B64[n >>> 18] as number;
    out[o++] = B64[(n >>> 12) & 63] as number;
    out[o++] = B64[(n >>> 6) & 63] as number;
    out[o++] = B64[n & 63] as number;
  }
  const last = tags[at + 15] as number;
  out[o++] = B64[last >>> 2] as number;
  out[o] = B64[(last & 3) << 4] as number;
  return out;
}
const chars = new Uint8Array(V3_MAC_CHARS);

/**
 * Whether the mark's tag at `view[at…]` is tag k of `tags` (TAG_BYTES each), compared in constant
 * time (no early exit) as text: the mark's tag is never decoded.
 */
function sameTag(view: Bytes, at: number, tags: Bytes, k: number): boolean {
  tagChars(tags, TAG_BYTES * k, chars);
  let diff = 0;
  for (let j = 0; j < V3_MAC_CHARS; j++) diff |= (view[at + j] as number) ^ (chars[j] as number);
  return diff === 0;
}

/** Writes an ASCII string's character codes at `at`; returns the end, or -1 when it is not ASCII. */
export function writeAscii(s: Uint8Array, at: number, text: string): number {
  let wide = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    wide |= c;
    s[at++] = c;
  }
  return wide > 0x7f ? -1 : at;
}

/** Writes `u64 prev ‖ u32 length` (big-endian) at `at`; returns the end. */
export function writeMiddle(s: Uint8Array, at: number, prev: number, length: number): number {
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
export const STAGED = { valid: 0, missing: 1, malformed: 2, "other-key": 3, mismatch: 4 } as const;

/**
 * Checks batches staged by src/store/mark-batch.ts, on whichever thread runs it. Entry i is
 * `subject ‖ header block ‖ body` in `view`, with `spans[4i…4i+3]` = its start, header start, body
 * start and end. A batch's v4 marks are tagged together by the process's `Hasher` (mark-hash.ts);
 * the MAC inputs of its v3 marks (u16 |subject|, subject, u64 prev, u32 |body|, body, padding) are
 * laid out in one buffer and tagged in two native calls (mark-mac.ts); a v2 mark is hashed on its
 * own, as before.
 */
export class StagedChecker {
  private readonly v4: V4Key;
  private readonly v3: Laid;
  private v2: Uint8Array;

  /** `keyBlock`: the writer's 32-byte key, then zeros to KEY_BLOCK (never logged). */
  constructor(
    keyBlock: Uint8Array,
    private readonly keyId: string,
  ) {
    const key = keyBlock.subarray(0, 32);
    this.v4 = v4Key(key, keyId);
    this.v3 = new Laid(new MarkMac(key, 3));
    this.v2 = new Uint8Array(4096);
    this.v2.set(keyBlock.subarray(0, KEY_BLOCK));
  }

  /** Writes each entry's verdict to `verdicts` and each valid mark's prev to `prevs`. */
  check(view: Bytes, spans: Uint32Array, count: number, verdicts: Uint8Array, prevs: Float64Array): void {
    const v3 = this.v3;
    v3.reset();
    /** The v4 marks: what to tag, each one's entry, and where its mark's tag is in the view. */
    const v4: HashInput[] = [];
    const v4Entries: number[] = [];
    const v4TagAt: number[] = [];
    for (let i = 0; i < count; i++) {
      const start = spans[4 * i] as number;
      const hdrAt = spans[4 * i + 1] as number;
      const bodyAt = spans[4 * i + 2] as number;
      const end = spans[4 * i + 3] as number;
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
      if (!namesKey(view, from, this.keyId)) {
        verdicts[i] = STAGED["other-key"];
        continue;
      }
      prevs[i] = prev;
      const version = markVersion(view, from);
      if (version === V2) {
        verdicts[i] = this.checkV2(view, start, hdrAt, bodyAt, end, prev, to);
        continue;
      }
      const subjectLength = hdrAt - start;
      const bodyLength = end - bodyAt;
      if (version === V4) {
        v4.push({ subject: view.subarray(start, hdrAt), prev, body: view.subarray(bodyAt, end) });
        v4Entries.push(i);
        v4TagAt.push(to - V3_MAC_CHARS);
      } else {
        const at = v3.room(2 + subjectLength + MIDDLE + bodyLength + 16, i, to - V3_MAC_CHARS);
        v3.laid(MarkMac.pad(v3.input, writeInput(v3.input, at, view, start, hdrAt, bodyAt, end, prev)));
      }
    }
    v3.compare(view, verdicts);
    if (v4.length === 0) return;
    const ok = new Uint8Array(v4.length);
    const tags = hasher().tags(this.v4, v4, ok);
    for (let k = 0; k < v4.length; k++) {
      const entry = v4Entries[k] as number;
      // Not ok: a prev no writer marks.
      verdicts[entry] =
        ok[k] && sameTag(view, v4TagAt[k] as number, tags, k) ? STAGED.valid : STAGED.mismatch;
    }
  }

  /** A v2 mark: one SHA-256 over the key block and the same input (event-mark.ts, `macV2`). */
  private checkV2(
    view: Bytes,
    start: number,
    hdrAt: number,
    bodyAt: number,
    end: number,
    prev: number,
    to: number,
  ): number {
    const need = KEY_BLOCK + 2 + (hdrAt - start) + MIDDLE + (end - bodyAt);
    if (need > this.v2.length) this.v2 = grown(this.v2, need, KEY_BLOCK);
    const at = writeInput(this.v2, KEY_BLOCK, view, start, hdrAt, bodyAt, end, prev);
    const mac = hash("sha256", this.v2.subarray(0, at), "base64url");
    let diff = mac.length ^ V2_MAC_CHARS;
    for (let j = 0; j < V2_MAC_CHARS; j++)
      diff |= (view[to - V2_MAC_CHARS + j] as number) ^ mac.charCodeAt(j);
    return diff === 0 ? STAGED.valid : STAGED.mismatch;
  }
}

/** A batch's v3 MAC inputs, laid out for `MarkMac.tags`, and where their tags are to be compared (v4 ones go to mark-hash.ts). */
class Laid {
  input = new Uint8Array(1 << 16);
  private starts = new Uint32Array(257);
  /** Per input: its entry, and where its mark's tag is in the view. */
  private entries = new Uint32Array(256);
  private tagAt = new Uint32Array(256);
  private n = 0;
  private used = 0;

  constructor(private readonly mac: MarkMac) {}

  reset(): void {
    this.n = 0;
    this.used = 0;
  }

  /** Makes room for an input of up to `bytes` for entry `entry`, its tag at `tagAt`; returns where to lay it. */
  room(bytes: number, entry: number, tagAt: number): number {
    const need = this.used + bytes;
    if (need > this.input.length) this.input = grown(this.input, need, this.used);
    if (this.n + 1 >= this.starts.length) {
      this.starts = grown(this.starts, 2 * this.starts.length, this.starts.length);
      this.entries = grown(this.entries, 2 * this.entries.length, this.entries.length);
      this.tagAt = grown(this.tagAt, 2 * this.tagAt.length, this.tagAt.length);
    }
    this.starts[this.n] = this.used;
    this.entries[this.n] = entry;
    this.tagAt[this.n] = tagAt;
    return this.used;
  }

  /** The input made room for last ends at `end`. */
  laid(end: number): void {
    this.used = end;
    this.n++;
  }

  /** Each laid-out entry's verdict: its tag against its mark's. */
  compare(view: Bytes, verdicts: Uint8Array): void {
    const n = this.n;
    if (n === 0) return;
    this.starts[n] = this.used;
    const tags = this.mac.tags(this.input, this.starts, n);
    for (let k = 0; k < n; k++) {
      const valid = sameTag(view, this.tagAt[k] as number, tags, k);
      verdicts[this.entries[k] as number] = valid ? STAGED.valid : STAGED.mismatch;
    }
  }
}

/** Writes `u16 |subject| ‖ subject ‖ u64 prev ‖ u32 |body| ‖ body` of a staged entry at `at`; returns the end. */
function writeInput(
  s: Uint8Array,
  at: number,
  view: Bytes,
  start: number,
  hdrAt: number,
  bodyAt: number,
  end: number,
  prev: number,
): number {
  const subjectLength = hdrAt - start;
  s[at++] = subjectLength >>> 8;
  s[at++] = subjectLength & 0xff;
  for (let j = start; j < hdrAt; j++) s[at++] = view[j] as number;
  at = writeMiddle(s, at, prev, end - bodyAt);
  s.set(view.subarray(bodyAt, end), at);
  return at + end - bodyAt;
}

/** `array` in a new one of at least `need` elements, its first `keep` kept. */
function grown<T extends Uint8Array | Uint32Array>(array: T, need: number, keep: number): T {
  const more = new (array.constructor as new (n: number) => T)(Math.max(need, 2 * array.length));
  more.set(array.subarray(0, keep));
  return more;
}
