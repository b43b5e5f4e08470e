// The MAC of v3 and v4 event marks (ARCHITECTURE.md, "Event marks"): PMAC-style over AES-128, so
// a whole batch of marks costs two native calls, not one per mark. A v3 mark's MAC input is the
// event's bytes; a v4 mark's is their hash (src/store/mark-hash.ts), two blocks per KiB.
import { type Cipher, createCipheriv, createHmac } from "node:crypto";

/** A tag: one AES block. */
export const TAG_BYTES = 16 as const;
const BLOCK = 16;
/**
 * Bytes enciphered per native call at most (whole entries; one larger entry goes alone): a call
 * costs ~2 µs whatever its size, and a much larger one allocates its output more slowly.
 */
const CHUNK = 1 << 16;

/** The mark versions a MarkMac is for: each derives secrets of its own. */
export type MacVersion = 3 | 4;

/**
 * 16 bytes of HMAC-SHA256 of a label under the key: the secrets a version's MAC uses (and a v4
 * hash's key: mark-hash.ts), independent of each other and of the other version's.
 */
export function derive(key: Uint8Array, version: MacVersion, label: string): Uint8Array {
  return createHmac("sha256", key).update(`corral mark v${version} ${label}`).digest().subarray(0, BLOCK);
}

function ecb(key: Uint8Array): Cipher {
  const cipher = createCipheriv("aes-128-ecb", key, null);
  cipher.setAutoPadding(false);
  return cipher;
}

/** `x · 2` in GF(2^128) modulo x^128 + x^7 + x^2 + x + 1, big-endian (as in CMAC and OCB). */
function double(x: Uint8Array): Uint8Array {
  const out = new Uint8Array(BLOCK);
  let carry = 0;
  for (let i = BLOCK - 1; i >= 0; i--) {
    const b = x[i] as number;
    out[i] = ((b << 1) | carry) & 0xff;
    carry = b >>> 7;
  }
  if (carry) out[BLOCK - 1] = (out[BLOCK - 1] as number) ^ 0x87;
  return out;
}

/**
 * For an entry of input blocks M_1 … M_m: `Σ = ⊕ E1(M_i ⊕ Δ_i)`, `tag = E2(Σ)`, with E1, E2 AES-128
 * under two keys and `Δ_i = 2^i · L` for a secret L, all three derived from the writer's key. A
 * block's mask makes it count only at its own position (the tweaked cipher of PMAC and OCB), and
 * the last encipherment, under a key of its own, makes the tag unpredictable from Σ.
 */
export class MarkMac {
  /** E1 and E2: AES-128-ECB under the two derived keys (never logged). */
  readonly blocks: Cipher;
  readonly final: Cipher;
  /** L, the secret offset the masks are made from. */
  readonly offset: Uint8Array;
  /** Δ_1, Δ_2, … as bytes, grown as longer entries come; read as 32-bit words. */
  private maskBytes = new Uint8Array(0);
  private masks = new Int32Array(0);
  private sums = new Uint8Array(BLOCK * 256);
  /** Where a cipher output not on a word boundary is copied (never so far). */
  private aligned = new Uint8Array(0);

  constructor(
    key: Uint8Array,
    readonly version: MacVersion,
  ) {
    this.blocks = ecb(derive(key, version, "blocks"));
    this.final = ecb(derive(key, version, "final"));
    this.offset = derive(key, version, "offset");
  }

  /**
   * Pads an entry written in `input[start, end)`: `0x80`, then zeros to a whole number of blocks
   * (the input's own lengths already make the encoding one-to-one; the pad only fills the block).
   * Returns the entry's new end; `input` must have room for 16 more bytes.
   */
  static pad(input: Uint8Array, end: number): number {
    const padded = (end + BLOCK) & ~(BLOCK - 1);
    input[end] = 0x80;
    for (let i = end + 1; i < padded; i++) input[i] = 0;
    return padded;
  }

  /**
   * The tags of `count` padded entries laid out in `input` (a Uint8Array at the start of its
   * buffer), entry k at `input[starts[k], starts[k + 1])`, every start a multiple of 16. `input` is
   * overwritten. Returns the tags, `TAG_BYTES` each, in order.
   */
  tags(input: Uint8Array, starts: Uint32Array, count: number): Uint8Array {
    const at = (k: number) => starts[k] as number;
    if (input.byteOffset % 4 !== 0) throw new TypeError("a MAC input must start on a 4-byte boundary");
    const words = new Int32Array(input.buffer, input.byteOffset, input.length >> 2);
    let longest = 0;
    for (let k = 0; k < count; k++) longest = Math.max(longest, at(k + 1) - at(k));
    this.grow(longest / BLOCK);
    const masks = this.masks;
    for (let k = 0; k < count; k++) {
      for (let w = at(k) >> 2, end = at(k + 1) >> 2, j = 0; w < end; w += 4, j += 4) {
        words[w] = (words[w] as number) ^ (masks[j] as number);
        words[w + 1] = (words[w + 1] as number) ^ (masks[j + 1] as number);
        words[w + 2] = (words[w + 2] as number) ^ (masks[j + 2] as number);
        words[w + 3] = (words[w + 3] as number) ^ (masks[j + 3] as number);
      }
    }
    if (this.sums.length < BLOCK * count) this.sums = new Uint8Array(BLOCK * count * 2);
    const sums = new Int32Array(this.sums.buffer, 0, 4 * count);
    for (let k = 0; k < count; ) {
      let last = k + 1;
      while (last < count && at(last + 1) - at(k) <= CHUNK) last++;
      const base = at(k);
      const out = this.enciphered(input.subarray(base, at(last)));
      for (; k < last; k++) {
        let a = 0;
        let b = 0;
        let c = 0;
        let d = 0;
        for (let w = (at(k) - base) >> 2, end = (at(k + 1) - base) >> 2; w < end; w += 4) {
          a ^= out[w] as number;
          b ^= out[w + 1] as number;
          c ^= out[w + 2] as number;
          d ^= out[w + 3] as number;
        }
        sums[4 * k] = a;
        sums[4 * k + 1] = b;
        sums[4 * k + 2] = c;
        sums[4 * k + 3] = d;
      }
    }
    return this.final.update(this.sums.subarray(0, BLOCK * count));
  }

  /** E1 of each block of `bytes`, as 32-bit words. */
  private enciphered(bytes: Uint8Array): Int32Array {
    const out = this.blocks.update(bytes);
    if (out.byteOffset % 4 === 0) return new Int32Array(out.buffer, out.byteOffset, out.length >> 2);
    // Node hands back a buffer of its own today; should it ever not start on a word, copy it.
    if (this.aligned.length < out.length) this.aligned = new Uint8Array(out.length);
    this.aligned.set(out);
    return new Int32Array(this.aligned.buffer, 0, out.length >> 2);
  }

  /** Makes Δ_1 … Δ_n available. */
  private grow(n: number): void {
    const have = this.maskBytes.length / BLOCK;
    if (n <= have) return;
    const bytes = new Uint8Array(BLOCK * Math.max(n, 2 * have, 64));
    bytes.set(this.maskBytes);
    let delta = have === 0 ? this.offset : this.maskBytes.subarray(BLOCK * (have - 1));
    for (let i = have; i < bytes.length / BLOCK; i++) {
      delta = double(delta);
      bytes.set(delta, BLOCK * i);
    }
    this.maskBytes = bytes;
    this.masks = new Int32Array(bytes.buffer);
  }
}
