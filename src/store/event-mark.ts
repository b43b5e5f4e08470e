import { createHash, hash, randomBytes } from "node:crypto";

/**
 * The mark a corral writer puts on every event it appends (ARCHITECTURE.md, "Event marks"):
 * `Corral-Mark: v1.<key id>.<prev>.<HMAC-SHA256 base64url>`, the HMAC over the subject, a zero
 * byte, `prev` (decimal), a zero byte and the exact msgpack body. `prev` is the stream sequence of
 * the subject's message before this one, as the writer appended it (its expected last sequence):
 * a copy of the event stored anywhere later claims a position it is not at. A reader holding the
 * key knows the event came from a corral writer, for this aggregate, after `prev`; one without
 * the key can only tell a marked event from an unmarked one.
 */
export const MARK_HEADER = "Corral-Mark";

const VERSION = "v1";
const KEY_BYTES = 32;
const BLOCK = 64; // SHA-256 block size
/**
 * `v1.<8 hex>.<prev>.<32 bytes in unpadded base64url>`, canonical only: one spelling per mark
 * (Node's decoder would also take `+/`, padding, or other low bits in the last character).
 */
const CANONICAL = /^v1\.[0-9a-f]{8}\.(0|[1-9][0-9]{0,15})\.[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;
const MAC_CHARS = 43;

/** base64url character code → its 6-bit value (the shape check admits no other characters). */
const B64URL = new Uint8Array(128);
for (const [i, c] of [..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"].entries()) {
  B64URL[c.charCodeAt(0)] = i;
}

/** What a reader learns from a message's mark. */
export type MarkCheck = "valid" | "missing" | "malformed" | "other-key" | "mismatch";

/**
 * A writer key. HMAC-SHA256 as in RFC 2104, with the pads precomputed and two one-shot hashes
 * over a reused buffer: createHmac per message costs ~3x as much (an object and several native
 * calls each), which a rebuild of the whole stream would feel.
 */
export class EventKey {
  /** Names the key in each mark (not secret): a mark from another key is told apart from a bad one. */
  readonly id: string;
  private readonly outer: Buffer;
  private scratch: Buffer;

  private constructor(key: Uint8Array) {
    if (key.length !== KEY_BYTES) throw new Error(`an event key is ${KEY_BYTES} bytes, got ${key.length}`);
    this.id = createHash("sha256").update("corral event key id\0").update(key).digest("hex").slice(0, 8);
    this.scratch = Buffer.alloc(BLOCK + 4096);
    this.outer = Buffer.alloc(BLOCK + 32);
    for (let i = 0; i < BLOCK; i++) {
      const k = key[i] ?? 0;
      this.scratch[i] = k ^ 0x36;
      this.outer[i] = k ^ 0x5c;
    }
  }

  static generate(): EventKey {
    return new EventKey(randomBytes(KEY_BYTES));
  }

  static fromBytes(key: Uint8Array): EventKey {
    return new EventKey(key);
  }

  /** The raw HMAC of (subject, 0, prev, 0, body). */
  mac(subject: string, prev: string, body: Uint8Array): Buffer {
    const need = BLOCK + subject.length + prev.length + 2 + body.length;
    if (need > this.scratch.length) {
      const grown = Buffer.alloc(Math.max(need, this.scratch.length * 2));
      this.scratch.copy(grown, 0, 0, BLOCK);
      this.scratch = grown;
    }
    // Plain JS loops and TypedArray.set rather than Buffer.write/copy: each native call costs more
    // than the bytes it moves here. Subjects are ASCII (src/store/subjects.ts); a stray wider
    // character still changes the bytes hashed (low byte), so it can only fail a check.
    const scratch = this.scratch;
    let n = BLOCK;
    for (let i = 0; i < subject.length; i++) scratch[n++] = subject.charCodeAt(i);
    scratch[n++] = 0;
    for (let i = 0; i < prev.length; i++) scratch[n++] = prev.charCodeAt(i);
    scratch[n++] = 0;
    scratch.set(body, n);
    n += body.length;
    this.outer.set(hash("sha256", scratch.subarray(0, n), "buffer"), BLOCK);
    return hash("sha256", this.outer, "buffer");
  }

  /** The header value for an event stored on `subject` right after sequence `prev`, with these bytes. */
  mark(subject: string, body: Uint8Array, prev: number): string {
    const p = String(prev);
    return `${VERSION}.${this.id}.${p}.${this.mac(subject, p, body).toString("base64url")}`;
  }

  check(subject: string, body: Uint8Array, mark: string | undefined): MarkCheck {
    const shape = markShape(mark);
    if (shape !== "valid") return shape;
    const m = mark as string;
    if (m.slice(3, 11) !== this.id) return "other-key";
    const macAt = m.length - MAC_CHARS;
    // The given MAC decoded and compared in JS, in constant time: no native call beyond the hashes.
    const want = this.mac(subject, m.slice(12, macAt - 1), body);
    let diff = 0;
    let bits = 0;
    let acc = 0;
    let at = 0;
    for (let i = macAt; i < m.length; i++) {
      acc = (acc << 6) | (B64URL[m.charCodeAt(i)] as number);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        diff |= ((acc >> bits) & 0xff) ^ (want[at++] as number);
      }
    }
    return diff === 0 && at === 32 ? "valid" : "mismatch";
  }
}

/** The sequence a (well-shaped) mark says its event was appended after. */
export function markedPrev(mark: string): number {
  return Number(mark.slice(12, mark.length - MAC_CHARS - 1));
}

/** What can be said without the key: "valid" only means "shaped like a mark". */
export function markShape(mark: string | undefined): "valid" | "missing" | "malformed" {
  if (!mark) return "missing";
  return CANONICAL.test(mark) ? "valid" : "malformed";
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
