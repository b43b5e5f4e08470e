import { createCipheriv } from "node:crypto";
import { writeAscii } from "./mark-bytes.ts";
import { derive, MarkMac, TAG_BYTES } from "./mark-mac.ts";
import { type MarkModule, markModule, SPAN } from "./mark-module.ts";

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
 * (mark-ring.ts), and for a writer's burst where `Hasher` copied each subject and body in.
 */

/** Bytes per chunk, passes, and key words per pass. */
const NH_CHUNK = 1024;
const PASSES = 4;
const WORDS = NH_CHUNK / 4;
/** The stream's first block. */
const FIRST = 32;

/** The hash's key, derived from the writer's key (never logged): PASSES × WORDS words of AES-CTR keystream. */
function hashKey(key: Uint8Array): Uint32Array {
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

/** What a v4 tag is made with (never logged): the key's id, the hash's key and the MAC (its E1, E2 and L). */
export interface V4Key {
  id: string;
  hash: Uint32Array;
  mac: MarkMac;
}

/** A writer key's (32 bytes) v4 material, for the key named `id`. */
export function v4Key(key: Uint8Array, id: string): V4Key {
  return { id, hash: hashKey(key), mac: new MarkMac(key, 4) };
}

/** One v4 tag to make: a subject (a string, or its bytes), the sequence it follows, a body. */
export interface HashInput {
  subject: string | Uint8Array;
  prev: number;
  body: Uint8Array;
}

/** Staged bytes a round takes at most (or one input, if larger): the staging area stays small. */
const ROUND_BYTES = 1 << 20;
/** mark-check.c MARK_TEXT: where `mark_texts` puts each mark. */
const MARK_TEXT = 64;

/** A round's inputs [from, to): each one's place among those tagged (-1: nothing to MAC), and their tags. */
interface Round {
  from: number;
  to: number;
  slots: Int32Array;
  tagged: number;
  made: Uint8Array;
}

/**
 * One per process: an instance of the module with no ring, which makes the v4 tags of a burst of
 * marks. Each input's subject and body are copied into the module's staging area as they are; one
 * call hashes them all where they lie and lays out their MAC inputs, masked; then E1 over all of
 * them, Σ per input in the module, E2 over the Σs (mark-mac.ts): two native calls a burst. A
 * writer's marks are written out as text there too: a byte loop in JavaScript cost more than all
 * the rest of a mark.
 */
export class Hasher {
  private readonly x: MarkModule = markModule();
  /** Views of the module's memory: made again when the staging area grows it. */
  private mem = new Uint8Array(this.x.memory.buffer);
  private text = Buffer.from(this.x.memory.buffer);
  private spans = new Uint32Array(this.x.memory.buffer);
  private prevs = new Float64Array(this.x.memory.buffer);
  private readonly spansAt = this.x.spans_ptr() >> 2;
  private readonly prevsAt = this.x.prevs_ptr() >> 3;
  private readonly sumsAt = this.x.sums_ptr();
  private readonly maxEntries = this.x.max_entries();
  private keyed: V4Key | undefined;

  /**
   * The v4 tag of each input, TAG_BYTES at `TAG_BYTES · k` of the result; `ok[k]` is 0 for an input
   * with nothing to MAC (a subject that is not ASCII or too long, or a prev that is not a safe
   * non-negative integer), whose bytes there are zeros.
   */
  tags(key: V4Key, inputs: readonly HashInput[], ok: Uint8Array): Uint8Array {
    this.useKey(key);
    const tags = new Uint8Array(TAG_BYTES * inputs.length);
    for (let from = 0; from < inputs.length; ) {
      const { to, slots, made } = this.round(key.mac, inputs, from);
      for (let k = from; k < to; k++) {
        const slot = slots[k - from] as number;
        ok[k] = slot < 0 ? 0 : 1;
        for (let i = 0; slot >= 0 && i < TAG_BYTES; i++)
          tags[TAG_BYTES * k + i] = made[TAG_BYTES * slot + i] as number;
      }
      from = to;
    }
    return tags;
  }

  /** The v4 mark of each input (event-mark.ts says what it is); undefined where `tags` has no tag. */
  marks(key: V4Key, inputs: readonly HashInput[]): (string | undefined)[] {
    this.useKey(key);
    const marks: (string | undefined)[] = new Array(inputs.length);
    for (let from = 0; from < inputs.length; ) {
      const { to, slots, tagged, made } = this.round(key.mac, inputs, from);
      this.mem.set(made, this.x.tags_ptr());
      this.x.mark_texts();
      const at = this.x.out_ptr();
      const lengths = this.x.verdicts_ptr();
      const text = this.text.toString("latin1", at, at + MARK_TEXT * tagged);
      for (let k = from; k < to; k++) {
        const slot = slots[k - from] as number;
        marks[k] =
          slot < 0
            ? undefined
            : text.slice(MARK_TEXT * slot, MARK_TEXT * slot + (this.mem[lengths + slot] as number));
      }
      from = to;
    }
    return marks;
  }

  /** Tags the inputs from `from` on that fit a round. */
  private round(mac: MarkMac, inputs: readonly HashInput[], from: number): Round {
    let staged = 0;
    let hashed = 0;
    let to = from;
    for (; to < inputs.length && to - from < this.maxEntries; to++) {
      const { subject, body } = inputs[to] as HashInput;
      const more = subject.length + body.length;
      if (to > from && staged + more > ROUND_BYTES) break;
      staged += more;
      hashed += hashedLength(subject.length, body.length);
    }
    const base = this.stage(staged + hashed);
    const mem = this.mem;
    const spans = this.spans;
    let at = base;
    let n = 0;
    const slots = new Int32Array(to - from);
    for (let k = from; k < to; k++) {
      const { subject, prev, body } = inputs[k] as HashInput;
      slots[k - from] = -1;
      if (!Number.isSafeInteger(prev) || prev < 0 || subject.length > 0xffff) continue;
      const subjectAt = at;
      if (typeof subject === "string") {
        at = writeAscii(mem, at, subject);
        if (at < 0) {
          at = subjectAt;
          continue;
        }
      } else {
        mem.set(subject, at);
        at += subject.length;
      }
      mem.set(body, at);
      const s = this.spansAt + SPAN * n;
      spans[s] = subjectAt;
      spans[s + 1] = subject.length;
      spans[s + 2] = at;
      spans[s + 3] = body.length;
      this.prevs[this.prevsAt + n] = prev;
      at += body.length;
      slots[k - from] = n++;
    }
    if (n === 0) return { from, to, slots, tagged: 0, made: new Uint8Array(0) };
    const laid = this.x.hash_staged(n, at);
    mem.set(mac.blocks.update(mem.subarray(at, at + laid)), at);
    this.x.sum(at);
    const made = mac.final.update(mem.subarray(this.sumsAt, this.sumsAt + TAG_BYTES * n));
    return { from, to, slots, tagged: n, made };
  }

  /** The staging area's address, with room for `bytes`; the views made again if the memory grew. */
  private stage(bytes: number): number {
    const at = this.x.stage_ptr(bytes);
    if (at === 0) throw new RangeError(`no room to stage ${bytes} bytes of marks`);
    if (this.mem.buffer !== this.x.memory.buffer) {
      this.mem = new Uint8Array(this.x.memory.buffer);
      this.text = Buffer.from(this.x.memory.buffer);
      this.spans = new Uint32Array(this.x.memory.buffer);
      this.prevs = new Float64Array(this.x.memory.buffer);
    }
    return at;
  }

  /** The module set up for `key`: the hash's key, and the masks from the MAC's L. */
  private useKey(key: V4Key): void {
    if (this.keyed === key) return;
    const x = this.x;
    new Uint32Array(this.mem.buffer, x.nh_key_ptr(), key.hash.length).set(key.hash);
    this.mem.set(key.mac.offset, x.offset4_ptr());
    for (let i = 0; i < key.id.length; i++) this.mem[x.key_id_ptr() + i] = key.id.charCodeAt(i);
    this.keyed = key;
  }
}

let shared: Hasher | undefined;

/** The process's hasher (made on first use). */
export function hasher(): Hasher {
  shared ??= new Hasher();
  return shared;
}
