import { createCipheriv } from "node:crypto";
import { writeAscii, writeMiddle } from "./mark-bytes.ts";
import { derive } from "./mark-mac.ts";
import { INPUT_BYTES, type MarkModule, markModule } from "./mark-module.ts";

/**
 * The hash a v4 mark's MAC is taken over (ARCHITECTURE.md, "Event marks"): NH, the hash of UMAC
 * (RFC 4418), four passes under independent keys. Its stream is a first block of 32 bytes
 * (u16 |subject|, u64 prev, u32 |body|, big-endian, then zeros), then the subject and the body,
 * each padded with zeros to 32 bytes: the lengths up front make that one-to-one. Each KiB chunk of
 * the stream, as 32-bit little-endian words w, hashes per pass q to
 * `Σ (w[8i+t] + k_q[8i+t] mod 2^32) · (w[8i+t+4] + k_q[8i+t+4] mod 2^32) mod 2^64` over its
 * 32-byte blocks i and t < 4, and the chunk's four sums, 64-bit little-endian, are two blocks of
 * the MAC input (1 ‖ 2, then 3 ‖ 4). Two chunks that differ collide under one pass with
 * probability at most 2^-31 (the NH bound, the key words unique to each product), so under the
 * four, 2^-124. The loops run in mark-check.wasm: in a read's ring where the bytes lie
 * (mark-ring.ts), here over a stream laid out for it.
 */

/** Bytes per chunk, passes, and key words per pass. */
const NH_CHUNK = 1024;
const PASSES = 4;
const WORDS = NH_CHUNK / 4;
/** The stream's first block. */
const FIRST = 32;

/** The hash's key, derived from the writer's key (never logged): PASSES × WORDS words of AES-CTR keystream. */
export function hashKey(key: Uint8Array): Uint32Array {
  const ctr = createCipheriv("aes-128-ctr", derive(key, 4, "hash"), new Uint8Array(16));
  const bytes = ctr.update(new Uint8Array(4 * PASSES * WORDS));
  const words = new Uint32Array(PASSES * WORDS);
  for (let i = 0; i < words.length; i++) words[i] = bytes.readUInt32LE(4 * i);
  return words;
}

const pad32 = (n: number) => (n + 31) & ~31;

/** Bytes of the MAC input (the hash's blocks) for a subject and body of these lengths. */
export function hashedLength(subjectLength: number, bodyLength: number): number {
  return 32 * Math.ceil((FIRST + pad32(subjectLength) + pad32(bodyLength)) / NH_CHUNK);
}

/** One per process: an instance of the module with no ring, keyed for one key at a time. */
export class Hasher {
  private readonly x: MarkModule = markModule();
  private readonly mem = new Uint8Array(this.x.memory.buffer);
  /** The module's input, and where its output starts (the memory never grows: no ring here). */
  private readonly input = this.mem.subarray(this.x.input_ptr(), this.x.input_ptr() + INPUT_BYTES);
  private readonly out = this.x.out_ptr();
  private keyed: Uint32Array | undefined;

  /**
   * Writes the v4 MAC input of (subject, prev, body) — its hash's blocks, not yet masked — at
   * `dst[at…]` (room for `hashedLength`); returns the end, or -1 for nothing to MAC: a subject
   * that is not ASCII or too long, or a prev that is not a safe non-negative integer.
   */
  blocks(
    key: Uint32Array,
    subject: string | Uint8Array,
    prev: number,
    body: Uint8Array,
    dst: Uint8Array,
    at: number,
  ): number {
    if (!Number.isSafeInteger(prev) || prev < 0 || subject.length > 0xffff) return -1;
    const x = this.x;
    if (this.keyed !== key) {
      new Uint32Array(this.mem.buffer, x.nh_key_ptr(), key.length).set(key);
      this.keyed = key;
    }
    const n = FIRST + pad32(subject.length) + pad32(body.length);
    // Laid out in the module's input, or (larger than it) here first, then copied in a part at a time.
    const s = n <= INPUT_BYTES ? this.input : new Uint8Array(n);
    // Plain stores, not fill/set calls: each native call costs more than these few bytes.
    s[0] = subject.length >>> 8;
    s[1] = subject.length & 0xff;
    let p = writeMiddle(s, 2, prev, body.length);
    while (p < FIRST) s[p++] = 0;
    if (typeof subject === "string") {
      p = writeAscii(s, p, subject);
      if (p < 0) return -1;
    } else {
      for (let i = 0; i < subject.length; i++) s[p++] = subject[i] as number;
    }
    for (const end = FIRST + pad32(subject.length); p < end; ) s[p++] = 0;
    s.set(body, p);
    p += body.length;
    while (p < n) s[p++] = 0;
    const mem = this.mem;
    for (let from = 0; from < n; from += INPUT_BYTES) {
      const length = Math.min(INPUT_BYTES, n - from);
      if (s !== this.input) this.input.set(s.subarray(from, from + length));
      const bytes = 16 * x.nh_laid(length);
      for (let i = 0; i < bytes; i++) dst[at + i] = mem[this.out + i] as number;
      at += bytes;
    }
    return at;
  }
}

let shared: Hasher | undefined;

/** The process's hasher (made on first use). */
export function hasher(): Hasher {
  shared ??= new Hasher();
  return shared;
}
