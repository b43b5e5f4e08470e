import { createHash, hash, randomBytes } from "node:crypto";
import {
  ID_CHARS,
  KEY_BLOCK,
  MARK_HEADER,
  MIDDLE,
  PREFIX,
  parseMarkBytes,
  V2_MAC_CHARS,
  V3_MAC_CHARS,
  writeAscii,
  writeMiddle,
} from "./mark-bytes.ts";
import { hasher, type V4Key, v4Key } from "./mark-hash.ts";
import { type MacVersion, MarkMac, TAG_BYTES } from "./mark-mac.ts";

/**
 * The mark a corral writer puts on every event it appends (ARCHITECTURE.md, "Event marks"):
 * `Corral-Mark: v4.<key id>.<prev>.<tag base64url>`, the tag a MAC (src/store/mark-mac.ts) over
 * the hash (src/store/mark-hash.ts) of the subject, `prev` and the exact msgpack body, encoded
 * one-to-one. `prev` is the stream sequence of the subject's message before this one, as the
 * writer appended it (its expected last sequence): a copy of the event stored anywhere later
 * claims a position it is not at. A
 * reader holding the key knows the event came from a corral writer, for this aggregate, after
 * `prev`; one without the key can only tell a marked event from an unmarked one. v3 marks (the
 * same MAC over the bytes themselves, written until v4) and v2 marks (one SHA-256 call) are still
 * checked; v1 marks (HMAC-SHA256) read as malformed, hence forged.
 */
export { MARK_HEADER } from "./mark-bytes.ts";

const KEY_BYTES = 32;
/** Bytes before the subject: u16 subject length (then MIDDLE bytes between subject and body). */
const HEAD = 2;
const V2 = 50;
const V3 = 51;
const V4 = PREFIX.charCodeAt(1);

/** What a reader learns from a message's mark. */
export type MarkCheck = "valid" | "missing" | "malformed" | "other-key" | "mismatch";

/** One event to mark: its subject, the sequence it must follow there, its body. */
export interface MarkInput {
  subject: string;
  prev: number;
  body: Uint8Array;
}

/**
 * A writer key. A v4 mark's tag is the MAC (src/store/mark-mac.ts) of the hash of the subject,
 * prev and body (src/store/mark-hash.ts); a v3 one's of `u16 |subject| ‖ subject ‖ u64 prev ‖
 * u32 |body| ‖ body` (big-endian, padded to whole AES blocks). A batch of marks — an
 * append burst, a read's batch — costs two native calls, where a hash per mark cost one each, and
 * each such call costs more than the ~300 bytes it hashes.
 */
export class EventKey {
  /** Names the key in each mark (not secret): a mark from another key is told apart from a bad one. */
  readonly id: string;
  /** A v2 MAC's input: the first block holds the key; the rest is rewritten per MAC. */
  private v2: Uint8Array;
  private readonly mac3: MarkMac;
  /** What v4 tags are made with (mark-hash.ts). */
  private readonly v4: V4Key;
  /** v3 MAC inputs, laid out for `MarkMac.tags`. */
  private input = new Uint8Array(8192);
  private starts = new Uint32Array(65);

  private constructor(key: Uint8Array) {
    if (key.length !== KEY_BYTES) throw new Error(`an event key is ${KEY_BYTES} bytes, got ${key.length}`);
    this.id = createHash("sha256").update("corral event key id\0").update(key).digest("hex").slice(0, 8);
    this.v2 = new Uint8Array(KEY_BLOCK + 4096);
    this.v2.set(key, 0);
    this.mac3 = new MarkMac(key, 3);
    this.v4 = v4Key(key, this.id);
  }

  static generate(): EventKey {
    return new EventKey(randomBytes(KEY_BYTES));
  }

  static fromBytes(key: Uint8Array): EventKey {
    return new EventKey(key);
  }

  /**
   * The tag of (subject, prev, body) in base64url (22 characters); undefined when the subject is
   * not ASCII (corral never writes one: src/store/subjects.ts) or prev is out of range.
   */
  tag(subject: string, prev: number, body: Uint8Array): string | undefined {
    return this.tags(4, [{ subject, prev, body }])[0];
  }

  /** The v3 tag (before v4 marks: the MAC over the bytes themselves); undefined as for `tag`. */
  macV3(subject: string, prev: number, body: Uint8Array): string | undefined {
    return this.tags(3, [{ subject, prev, body }])[0];
  }

  /** `tag` (or `macV3`) of each input, made together. */
  private tags(version: MacVersion, inputs: readonly MarkInput[]): (string | undefined)[] {
    const ok = new Uint8Array(inputs.length);
    const tags = version === 4 ? hasher().tags(this.v4, inputs, ok) : this.tagsV3(inputs, ok);
    const text = tagsText(tags, inputs.length);
    return inputs.map((_, k) =>
      ok[k] ? text.slice(TAG_STRIDE_CHARS * k, TAG_STRIDE_CHARS * k + V3_MAC_CHARS) : undefined,
    );
  }

  /** v3 tags as `Hasher.tags` makes v4 ones: TAG_BYTES each, `ok[k]` 0 for nothing to MAC. */
  private tagsV3(inputs: readonly MarkInput[], ok: Uint8Array): Uint8Array {
    let used = 0;
    let n = 0;
    const slots: number[] = [];
    for (const { subject, prev, body } of inputs) {
      const need = used + markInputLength(subject, body) + 16;
      if (need > this.input.length) {
        const grown = new Uint8Array(Math.max(need, 2 * this.input.length));
        grown.set(this.input.subarray(0, used));
        this.input = grown;
      }
      if (n + 1 >= this.starts.length) {
        const grown = new Uint32Array(2 * this.starts.length);
        grown.set(this.starts);
        this.starts = grown;
      }
      const end = writeMarkInput(this.input, used, subject, prev, body);
      slots.push(end < 0 ? -1 : n);
      if (end < 0) continue;
      this.starts[n++] = used;
      used = MarkMac.pad(this.input, end);
    }
    this.starts[n] = used;
    const made = n > 0 ? this.mac3.tags(this.input, this.starts, n) : new Uint8Array(0);
    const tags = new Uint8Array(TAG_BYTES * inputs.length);
    slots.forEach((slot, k) => {
      ok[k] = slot < 0 ? 0 : 1;
      if (slot >= 0) tags.set(made.subarray(TAG_BYTES * slot, TAG_BYTES * (slot + 1)), TAG_BYTES * k);
    });
    return tags;
  }

  /**
   * The v2 MAC (before v3 marks): one SHA-256 call over `key ‖ 0^32 ‖` the same input, in
   * base64url (43 characters); undefined as for `tag`. A secret prefix is sound here because no
   * encoded input is a prefix of another (ARCHITECTURE.md, "Event marks").
   */
  macV2(subject: string, prev: number, body: Uint8Array): string | undefined {
    const n = KEY_BLOCK + markInputLength(subject, body);
    if (n > this.v2.length) {
      const grown = new Uint8Array(Math.max(n, this.v2.length * 2));
      grown.set(this.v2.subarray(0, KEY_BLOCK));
      this.v2 = grown;
    }
    if (writeMarkInput(this.v2, KEY_BLOCK, subject, prev, body) < 0) return undefined;
    return hash("sha256", this.v2.subarray(0, n), "base64url");
  }

  /** The key block a StagedChecker or a MarkMac starts from (src/store/mark-batch.ts, mark-ring.ts; never logged). */
  keyBlock(): Uint8Array {
    return this.v2.slice(0, KEY_BLOCK);
  }

  /** The header value for an event stored on `subject` right after sequence `prev`, with these bytes. */
  mark(subject: string, body: Uint8Array, prev: number): string {
    const input = { subject, prev, body };
    const mark = this.markAll([input])[0];
    if (mark === undefined) throw cannotMark(input);
    return mark;
  }

  /**
   * `mark` of each input, made together: one MAC call for all (the publisher's burst); undefined
   * for an input that cannot be marked (see `cannotMark`).
   */
  markAll(inputs: readonly MarkInput[]): (string | undefined)[] {
    return hasher().marks(this.v4, inputs);
  }

  check(subject: string, body: Uint8Array, mark: string | undefined): MarkCheck {
    const verdict = this.verify(subject, body, mark);
    return typeof verdict === "number" ? "valid" : verdict;
  }

  /** As `check`, but a valid mark answers the sequence it says its event follows. */
  verify(subject: string, body: Uint8Array, mark: string | undefined): number | Exclude<MarkCheck, "valid"> {
    if (!mark) return "missing";
    const prev = this.precheck(mark);
    if (typeof prev !== "number") return prev;
    const version = mark.charCodeAt(1);
    const want =
      version === V4
        ? this.tag(subject, prev, body)
        : version === V3
          ? this.macV3(subject, prev, body)
          : this.macV2(subject, prev, body);
    const chars = version === V2 ? V2_MAC_CHARS : V3_MAC_CHARS;
    if (want?.length !== chars) return "mismatch";
    // Compared in constant time (no early exit), on the base64url text: no decoding needed.
    const macAt = mark.length - chars;
    let diff = 0;
    for (let i = 0; i < chars; i++) diff |= mark.charCodeAt(macAt + i) ^ want.charCodeAt(i);
    return diff === 0 ? prev : "mismatch";
  }

  /**
   * All that can be told of a mark before its MAC: the `prev` of a well-shaped mark made with this
   * key, or why it is not one.
   */
  precheck(mark: string | undefined): number | "missing" | "malformed" | "other-key" {
    if (!mark) return "missing";
    const prev = parseMark(mark);
    if (prev < 0) return "malformed";
    for (let i = 0; i < ID_CHARS; i++) {
      if (mark.charCodeAt(PREFIX.length + i) !== this.id.charCodeAt(i)) return "other-key";
    }
    return prev;
  }
}

/** A tag and two zero bytes: 18 bytes are 24 base64url characters, the tag's 22 first. */
const TAG_STRIDE = TAG_BYTES + 2;
const TAG_STRIDE_CHARS = (TAG_STRIDE / 3) * 4;
let strided = Buffer.alloc(TAG_STRIDE * 64);

/**
 * `count` tags (16 bytes each) in base64url, each at TAG_STRIDE_CHARS characters from the last: one
 * native call for a burst's tags, where one per tag cost more than the rest of its mark.
 */
function tagsText(tags: Uint8Array, count: number): string {
  if (strided.length < TAG_STRIDE * count) strided = Buffer.alloc(TAG_STRIDE * count * 2);
  for (let k = 0; k < count; k++) {
    const to = TAG_STRIDE * k;
    for (let i = 0; i < TAG_BYTES; i++) strided[to + i] = tags[TAG_BYTES * k + i] as number;
  }
  return strided.toString("base64url", 0, TAG_STRIDE * count);
}

/** Why an input has no mark: a subject that is not ASCII (or too long), or a prev out of range. */
export function cannotMark({ subject, prev }: MarkInput): TypeError {
  return new TypeError(`cannot mark ${JSON.stringify(subject)} after ${prev}`);
}

/** Bytes `writeMarkInput` writes for this subject and body. */
function markInputLength(subject: string, body: Uint8Array): number {
  return HEAD + subject.length + MIDDLE + body.length;
}

/**
 * Writes `u16 |subject| ‖ subject ‖ u64 prev ‖ u32 |body| ‖ body` (big-endian) at `at`: the input
 * of a v3 tag (padded) and of a v2 MAC (after the key block). Plain JS stores rather than Buffer.write/copy: each
 * native call costs more than the bytes it moves here. Returns the end, or -1 (nothing to MAC)
 * for a subject that is not ASCII or too long, or a prev that is not a safe non-negative integer.
 */
function writeMarkInput(s: Uint8Array, at: number, subject: string, prev: number, body: Uint8Array): number {
  if (!Number.isSafeInteger(prev) || prev < 0 || subject.length > 0xffff) return -1;
  s[at++] = subject.length >>> 8;
  s[at++] = subject.length & 0xff;
  at = writeAscii(s, at, subject);
  if (at < 0) return -1;
  at = writeMiddle(s, at, prev, body.length);
  s.set(body, at);
  return at + body.length;
}

/** The sequence a (well-shaped) mark says its event was appended after; -1 when it is not one. */
export function markedPrev(mark: string): number {
  return parseMark(mark);
}

/** What can be said without the key: "valid" only means "shaped like a mark". */
export function markShape(mark: string | undefined): "valid" | "missing" | "malformed" {
  if (!mark) return "missing";
  return parseMark(mark) >= 0 ? "valid" : "malformed";
}

/** A string mark as bytes, for parseMarkBytes; reused (marks are short). */
let markBytes = new Uint8Array(128);

/** The `prev` of a canonical mark, or -1 when `mark` is not one (see PREFIX). */
function parseMark(mark: string): number {
  if (mark.length > markBytes.length) markBytes = new Uint8Array(mark.length);
  for (let i = 0; i < mark.length; i++) {
    const c = mark.charCodeAt(i);
    if (c > 0x7f) return -1;
    markBytes[i] = c;
  }
  return parseMarkBytes(markBytes, 0, mark.length);
}

/** Why a record is treated as forged, in words (for logs, `events tail` and `events show`). */
export function describeMark(check: Exclude<MarkCheck, "valid">, mark: string | undefined): string {
  switch (check) {
    case "missing":
      return `no ${MARK_HEADER} header: not written by a corral writer`;
    case "malformed":
      return `${MARK_HEADER} is not a corral mark`;
    case "other-key":
      return `${MARK_HEADER} was made with another key (${mark?.slice(3, 11)})`;
    case "mismatch":
      return `${MARK_HEADER} does not match this subject and body`;
  }
}
