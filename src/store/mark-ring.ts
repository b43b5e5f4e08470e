import type { NatsConnection } from "@nats-io/nats-core";
import { setFrameTap } from "../nats/msg-frames.ts";
import type { EventKey } from "./event-mark.ts";
import { checkStaged, MarkBatch } from "./mark-batch.ts";
import { v4Key } from "./mark-hash.ts";
import { MarkMac, TAG_BYTES } from "./mark-mac.ts";
import { type MarkModule, markModule, SPAN } from "./mark-module.ts";

/**
 * Where a read's marks are checked in bulk (ARCHITECTURE.md, "Event marks"): mark-check.wasm
 * (from mark-check.c) over a ring of this connection's socket bytes. The connection's frame reader
 * (src/nats/msg-frames.ts) copies every chunk it reads into the ring, one copy per chunk, and tells
 * each message where its subject and bytes landed; a message that came another way is copied in
 * when it is staged. A batch's check is then three calls into the module around two AES calls over
 * the whole batch (mark-mac.ts): find and parse each mark and lay out its MAC input (a v4 mark's:
 * its hash, made where the bytes lie; a v3 mark's: the bytes, copied); sum; compare.
 */

/** mark-check.c's verdicts are mark-bytes.ts STAGED's, and this one: left to the JavaScript checker. */
const FALLBACK = 5;
/** A verdict of `check`: nothing to MAC (a subject corral never writes: not ASCII, or too long). */
export const UNMACABLE = 255;
/**
 * MAC input bytes enciphered per call: Node allocates each call's output, and a call over more
 * than this runs slower per byte (~1.8 GB/s at 700 KB against ~2.9 at 64 KB, measured here).
 */
const CHUNK = 1 << 16;

/** A batch of a read staged in the ring (src/store/record-batches.ts). */
export interface RingBatch {
  /** Bytes written to the ring before its first unchecked entry; -1: none. */
  readonly first: number;
  /** Checks what it has staged, while the ring still holds it. */
  checkNow(): void;
}

/** One per connection: the ring its frame reader fills and the module that checks what is in it. */
export class MarkRing {
  private static readonly byConnection = new WeakMap<NatsConnection, MarkRing>();
  private readonly x: MarkModule;
  /** The module's memory (grown once, by `init_ring`, before this view is made: it stays valid). */
  private readonly mem: Uint8Array;
  private readonly ringPtr: number;
  readonly size: number;
  /** Most entries one `check` takes. */
  readonly maxEntries: number;
  /** Whether the connection's own frame reader fills the ring (else every message is copied in when staged). */
  readonly tapping: boolean;
  /**
   * Bytes written since the ring began (a place in it is this modulo its size), before the last
   * write, and before the last chunk the frame reader copied in.
   */
  private written = 0;
  private last = 0;
  private lastTap = 0;
  private readonly open = new Set<RingBatch>();
  private key: EventKey | undefined;
  /** The MACs of v3 and v4 marks under `key`. */
  private macs: { 3: MarkMac; 4: MarkMac } | undefined;
  /** Entries the module checked (tests: proof the work was done there). */
  checkedInModule = 0;
  /** Times a batch was checked early, before the ring wrote over it. */
  earlyChecks = 0;

  private constructor(nc: NatsConnection | undefined) {
    this.x = markModule();
    // Grown before the view is made: growing detaches a view of the old memory.
    this.ringPtr = this.x.init_ring();
    if (this.ringPtr === 0) throw new Error("the marks' ring could not be allocated");
    this.mem = new Uint8Array(this.x.memory.buffer);
    this.size = this.x.ring_size();
    this.maxEntries = this.x.max_entries();
    this.tapping = nc ? setFrameTap(nc, (chunk) => this.tap(chunk)) : false;
  }

  /** The connection's ring, made (and its frame reader tapped) on first use. */
  static of(nc: NatsConnection): MarkRing {
    let ring = MarkRing.byConnection.get(nc);
    if (!ring) {
      ring = new MarkRing(nc);
      MarkRing.byConnection.set(nc, ring);
    }
    return ring;
  }

  /** A ring no frame reader fills (tests): every message is copied in when staged. */
  static detached(): MarkRing {
    return new MarkRing(undefined);
  }

  /**
   * Bytes written to the ring before the last chunk the frame reader copied in: a message it tapped
   * is staged while its chunk is read (nats.js calls a subscription's callback as it parses), so
   * its bytes are there or later.
   */
  get lastChunk(): number {
    return this.lastTap;
  }

  /** Bytes written to the ring before the last chunk or message copied in. */
  get lastWrite(): number {
    return this.last;
  }

  /**
   * Copies a socket chunk in (the frame reader's tap); returns where it starts in the ring, or -1
   * when it is larger than the ring.
   */
  tap(chunk: Uint8Array): number {
    const at = this.reserve(chunk.length);
    if (at < 0) return -1;
    this.lastTap = at;
    const off = at % this.size;
    this.mem.set(chunk, this.ringPtr + off);
    return off;
  }

  /**
   * Copies a message that did not come through the frame reader in: its subject, then its header
   * block and body. Returns where its subject starts in the ring, or -1 when the ring cannot hold it.
   */
  put(subject: Uint8Array, raw: Uint8Array): number {
    const at = this.reserve(subject.length + raw.length);
    if (at < 0) return -1;
    const off = at % this.size;
    this.mem.set(subject, this.ringPtr + off);
    this.mem.set(raw, this.ringPtr + off + subject.length);
    return off;
  }

  /** The memory address of a place in the ring. */
  address(offset: number): number {
    return this.ringPtr + offset;
  }

  /** `length` bytes of this module's memory from `address` (a view: valid until the ring moves on). */
  bytes(address: number, length: number): Uint8Array {
    return this.mem.subarray(address, address + length);
  }

  /** A batch whose staged bytes are in the ring: checked before the ring writes over them. */
  watch(batch: RingBatch): void {
    this.open.add(batch);
  }

  unwatch(batch: RingBatch): void {
    this.open.delete(batch);
  }

  /**
   * Where `n` contiguous bytes go, as a count of bytes written before them (the ring starts over
   * when they do not fit before its end); -1: never. Any open batch whose bytes they would
   * overwrite is checked first.
   */
  private reserve(n: number): number {
    if (n > this.size) return -1;
    const off = this.written % this.size;
    if (off + n > this.size) this.written += this.size - off;
    const end = this.written + n;
    for (const batch of this.open) {
      if (batch.first < 0 || batch.first >= end - this.size) continue;
      this.earlyChecks++;
      batch.checkNow();
    }
    this.last = this.written;
    this.written = end;
    return this.last;
  }

  /**
   * Each entry's verdict (mark-bytes.ts STAGED, or UNMACABLE) and the prev of each valid one.
   * `spans` holds `count` entries, SPAN fields each, addresses in this ring. What the module leaves
   * (a v2 mark, a mark not where the writer puts it, an entry over MAX_ENTRY) is checked from the
   * same bytes by mark-bytes.ts's checker.
   */
  check(key: EventKey, spans: Uint32Array, count: number): { verdicts: Uint8Array; prevs: Float64Array } {
    if (count > this.maxEntries) throw new RangeError(`at most ${this.maxEntries} entries a check`);
    const x = this.x;
    const macs = this.useKey(key);
    const mem = this.mem;
    mem.set(new Uint8Array(spans.buffer, spans.byteOffset, SPAN * 4 * count), x.spans_ptr());
    const input = x.input_ptr();
    const out = x.out_ptr();
    const sums = x.sums_ptr();
    for (let from = 0; from < count; ) {
      from = x.layout(from, count, CHUNK);
      const laid = x.laid_count();
      if (laid === 0) continue; // the rest left to the JavaScript checker
      const mac = x.laid_version() === 4 ? macs[4] : macs[3];
      mem.set(mac.blocks.update(mem.subarray(input, input + x.input_used())), out);
      x.sum(out);
      mem.set(mac.final.update(mem.subarray(sums, sums + TAG_BYTES * laid)), x.tags_ptr());
      x.compare();
      this.checkedInModule += laid;
    }
    const verdicts = mem.slice(x.verdicts_ptr(), x.verdicts_ptr() + count);
    const prevs = new Float64Array(mem.buffer.slice(x.prevs_ptr(), x.prevs_ptr() + 8 * count));
    this.checkLeftovers(key, spans, verdicts, prevs);
    return { verdicts, prevs };
  }

  /** The entries the module left (FALLBACK), checked by mark-bytes.ts's checker from the ring's bytes. */
  private checkLeftovers(key: EventKey, spans: Uint32Array, verdicts: Uint8Array, prevs: Float64Array): void {
    let batch: MarkBatch | undefined;
    const back: number[] = [];
    for (let k = 0; k < verdicts.length; k++) {
      if (verdicts[k] !== FALLBACK) continue;
      const s = SPAN * k;
      const subject = this.bytes(spans[s] as number, spans[s + 1] as number);
      const raw = this.bytes(spans[s + 2] as number, spans[s + 4] as number);
      batch ??= MarkBatch.fresh();
      if (batch.add(subject, raw, spans[s + 3] as number)) back.push(k);
      else verdicts[k] = UNMACABLE;
    }
    if (!batch || back.length === 0) return;
    const { verdicts: v, prevs: p } = checkStaged(key, batch);
    for (let j = 0; j < back.length; j++) {
      const k = back[j] as number;
      verdicts[k] = v[j] as number;
      prevs[k] = p[j] as number;
    }
  }

  /** The module set up for `key`'s marks: its id, the masks from each version's secret offset, the v4 hash's key (never logged). */
  private useKey(key: EventKey): { 3: MarkMac; 4: MarkMac } {
    if (this.key === key && this.macs) return this.macs;
    const secret = key.keyBlock().subarray(0, 32);
    const v4 = v4Key(secret, key.id);
    const macs = { 3: new MarkMac(secret, 3), 4: v4.mac };
    const x = this.x;
    this.mem.set(macs[3].offset, x.masks_ptr());
    this.mem.set(v4.mac.offset, x.offset4_ptr());
    x.init_masks();
    new Uint32Array(this.mem.buffer, x.nh_key_ptr(), v4.hash.length).set(v4.hash);
    for (let i = 0; i < v4.id.length; i++) this.mem[x.key_id_ptr() + i] = v4.id.charCodeAt(i);
    this.key = key;
    this.macs = macs;
    return macs;
  }
}
