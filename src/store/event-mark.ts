import { createHash, hash, randomBytes } from "node:crypto";
import {
  ID_CHARS,
  KEY_BLOCK,
  MAC_CHARS,
  MARK_HEADER,
  MIDDLE,
  PREFIX,
  parseMarkBytes,
  writeMiddle,
} from "./mark-bytes.mjs";

/**
 * The mark a corral writer puts on every event it appends (ARCHITECTURE.md, "Event marks"):
 * `Corral-Mark: v2.<key id>.<prev>.<MAC base64url>`, the MAC a keyed SHA-256 over the subject,
 * `prev` and the exact msgpack body, encoded prefix-free (see EventKey). `prev` is the stream
 * sequence of the subject's message before this one, as the writer appended it (its expected last
 * sequence): a copy of the event stored anywhere later claims a position it is not at. A reader
 * holding the key knows the event came from a corral writer, for this aggregate, after `prev`; one
 * without the key can only tell a marked event from an unmarked one. v1 marks (HMAC-SHA256) read
 * as malformed, hence forged.
 */
export { MARK_HEADER } from "./mark-bytes.mjs";

const VERSION = "v2";
const KEY_BYTES = 32;
const BLOCK = KEY_BLOCK;
/** Bytes before the subject: u16 subject length (then MIDDLE bytes between subject and body). */
const HEAD = 2;

/** What a reader learns from a message's mark. */
export type MarkCheck = "valid" | "missing" | "malformed" | "other-key" | "mismatch";

/**
 * A writer key. The MAC is one SHA-256 call over `key ‖ 0^32 ‖ u16 |subject| ‖ subject ‖ u64 prev ‖
 * u32 |body| ‖ body` (big-endian), returned as base64url: one native call instead of HMAC's two,
 * and a string out instead of a Buffer (each native call and each Buffer made costs more than the
 * ~300 bytes hashed). A secret prefix is sound here because no encoded input is a prefix of another
 * (the lengths come first), so SHA-256's length extension has nothing to extend; the argument is in
 * ARCHITECTURE.md, "Event marks".
 */
export class EventKey {
  /** Names the key in each mark (not secret): a mark from another key is told apart from a bad one. */
  readonly id: string;
  /** The first block holds the key; the rest is rewritten per MAC. */
  private scratch: Uint8Array;

  private constructor(key: Uint8Array) {
    if (key.length !== KEY_BYTES) throw new Error(`an event key is ${KEY_BYTES} bytes, got ${key.length}`);
    this.id = createHash("sha256").update("corral event key id\0").update(key).digest("hex").slice(0, 8);
    this.scratch = new Uint8Array(BLOCK + 4096);
    this.scratch.set(key, 0);
  }

  static generate(): EventKey {
    return new EventKey(randomBytes(KEY_BYTES));
  }

  static fromBytes(key: Uint8Array): EventKey {
    return new EventKey(key);
  }

  /**
   * The MAC of (subject, prev, body) in base64url (43 characters); undefined when the subject is
   * not ASCII (corral never writes one: src/store/subjects.ts) or prev is out of range.
   */
  mac(subject: string, prev: number, body: Uint8Array): string | undefined {
    const n = BLOCK + markInputLength(subject, body);
    if (n > this.scratch.length) {
      const grown = new Uint8Array(Math.max(n, this.scratch.length * 2));
      grown.set(this.scratch.subarray(0, BLOCK));
      this.scratch = grown;
    }
    if (writeMarkInput(this.scratch, BLOCK, subject, prev, body) < 0) return undefined;
    return hash("sha256", this.scratch.subarray(0, n), "base64url");
  }

  /** The key block every MAC input starts with, for src/store/mark-worker.mjs (never logged). */
  keyBlock(): Uint8Array {
    return this.scratch.slice(0, BLOCK);
  }

  /** The header value for an event stored on `subject` right after sequence `prev`, with these bytes. */
  mark(subject: string, body: Uint8Array, prev: number): string {
    const mac = this.mac(subject, prev, body);
    if (mac === undefined) throw new TypeError(`cannot mark ${JSON.stringify(subject)} after ${prev}`);
    return `${VERSION}.${this.id}.${prev}.${mac}`;
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
    const want = this.mac(subject, prev, body);
    if (want?.length !== MAC_CHARS) return "mismatch";
    // Compared in constant time (no early exit), on the base64url text: no decoding needed.
    const macAt = mark.length - MAC_CHARS;
    let diff = 0;
    for (let i = 0; i < MAC_CHARS; i++) diff |= mark.charCodeAt(macAt + i) ^ want.charCodeAt(i);
    return diff === 0 ? prev : "mismatch";
  }

  /**
   * All that can be told of a mark before hashing: the `prev` of a well-shaped mark made with this
   * key, or why it is not one (src/store/mark-batch.ts then hashes off the main thread).
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

/** Bytes `writeMarkInput` writes for this subject and body. */
export function markInputLength(subject: string, body: Uint8Array): number {
  return HEAD + subject.length + MIDDLE + body.length;
}

/**
 * Writes `u16 |subject| ‖ subject ‖ u64 prev ‖ u32 |body| ‖ body` (big-endian) at `at`, the input
 * a MAC is taken over after the key block. Plain JS stores rather than Buffer.write/copy: each
 * native call costs more than the bytes it moves here. Returns the end, or -1 (nothing to MAC)
 * for a subject that is not ASCII or too long, or a prev that is not a safe non-negative integer.
 */
export function writeMarkInput(
  s: Uint8Array,
  at: number,
  subject: string,
  prev: number,
  body: Uint8Array,
): number {
  if (!Number.isSafeInteger(prev) || prev < 0 || subject.length > 0xffff) return -1;
  s[at++] = subject.length >>> 8;
  s[at++] = subject.length & 0xff;
  let wide = 0;
  for (let i = 0; i < subject.length; i++) {
    const c = subject.charCodeAt(i);
    wide |= c;
    s[at++] = c;
  }
  if (wide > 0x7f) return -1;
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
