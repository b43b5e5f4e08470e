import { createHash } from "node:crypto";
import { Encoder } from "@msgpack/msgpack";
import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { decode, encode } from "../codec/msgpack.ts";
import type { EventKey } from "../store/event-mark.ts";
import { type Integrity, integrityOf } from "../store/integrity.ts";
import { JetStreamApiCodes, JetStreamApiError } from "../vendor/nats.ts";
import { CHECKPOINT_BUCKET, type Checkpoint, type PutResult } from "./checkpoints.ts";
import { openBucket } from "./kv-bucket.ts";
import { type ProjectionLogger, silent } from "./projection.ts";

/** One kept snapshot, as its projection's index lists it. */
export interface SnapshotEntry {
  /** Where its chunks are: keys `<name>.snapshot.<slot>.<i>`, reused once the entry is dropped. */
  slot: number;
  seq: number;
  version: number;
  chunks: number;
  bytes: number;
  /** SHA-256 of the encoded snapshot (base64url): the marked index vouches for the chunks. */
  digest: string;
  /** The event stream it was folded from (EventStore.identity), when the writer was bound to one. */
  stream?: string;
}

/** Snapshots kept per projection by default, thinned evenly over the stream (`victim`). */
export const KEEP_SNAPSHOTS = 128;
/** …and at most this many bytes of them (a 10,000-agent worldview is megabytes). */
export const KEEP_SNAPSHOT_BYTES = 256 * 1024 * 1024;
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;
const HEADROOM = 1024;

export interface SnapshotStoreOptions {
  /** Default: the checkpoints' bucket, which every reader may already read. */
  bucket?: string;
  /** false: only read an existing bucket. */
  create?: boolean;
  /** How many to keep per projection, and how many bytes of them (thinned: `victim`). */
  keep?: number;
  keepBytes?: number;
  /** Largest chunk; default: the server's max_payload less headroom. */
  chunkBytes?: number;
  logger?: ProjectionLogger;
  integrity?: Integrity;
  /**
   * The identity of the stream the snapshots are folded from (EventStore.identity), as for
   * checkpoints: each one written names it; one of another stream is never loaded, and the next
   * write drops it from the index. None: any is read.
   */
  stream?: string;
}

const indexKey = (name: string) => `${name}.snapshots`;
const chunkKey = (name: string, slot: number, i: number) => `${name}.snapshot.${slot}.${i}`;
const digestOf = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("base64url");

/**
 * A projection's state at many past sequences, for time travel (`corral worldview --at`, `corral
 * diff`): each snapshot split into chunks that fit a NATS message, under ring slots in the KV
 * bucket (bounded keys, and history 1 keeps only the latest value of each), at most `keep` of them
 * spread over the whole stream (`victim`), listed by an index
 * entry sorted by sequence so the nearest one at or before a sequence is one read away. The index
 * is marked like a checkpoint (ARCHITECTURE.md, "Event marks") and names each snapshot's digest,
 * so a chunk that does not match — forged, or overwritten while read — is refused; a reader
 * without the key believes none. Only the readers' KV gets are needed (src/nats/corral-nats.conf).
 */
export class SnapshotStore {
  private constructor(
    private readonly kv: KV,
    readonly keep: number,
    readonly keepBytes: number,
    readonly chunkBytes: number,
    private readonly log: ProjectionLogger,
    private readonly integrity: Integrity,
    private readonly stream: string | undefined,
  ) {}

  static async open(nc: NatsConnection, opts: SnapshotStoreOptions = {}): Promise<SnapshotStore> {
    const bucket = opts.bucket ?? CHECKPOINT_BUCKET;
    const kv = await openBucket(nc, bucket, opts.create !== false);
    const chunkBytes = opts.chunkBytes ?? (nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD) - HEADROOM;
    const integrity = opts.integrity ?? integrityOf(nc) ?? "off";
    const keep = opts.keep ?? KEEP_SNAPSHOTS;
    const keepBytes = opts.keepBytes ?? KEEP_SNAPSHOT_BYTES;
    return new SnapshotStore(kv, keep, keepBytes, chunkBytes, opts.logger ?? silent, integrity, opts.stream);
  }

  /** Whether an entry is of this store's stream (any is, for a store bound to none). */
  private ours(e: SnapshotEntry): boolean {
    return this.stream === undefined || e.stream === this.stream;
  }

  private get key(): EventKey | undefined {
    return typeof this.integrity === "object" ? this.integrity.key : undefined;
  }

  /** The index, sorted by sequence, with its KV revision (0: none yet); [] when unreadable. */
  async list(name: string): Promise<{ entries: SnapshotEntry[]; revision: number }> {
    try {
      const e = await this.kv.get(indexKey(name));
      if (e?.operation !== "PUT" || e.value.length === 0) return { entries: [], revision: e?.revision ?? 0 };
      return { entries: this.unwrapIndex(name, decode(e.value)), revision: e.revision };
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) {
        return { entries: [], revision: 0 };
      }
      this.log.warn({ projection: name, err: (err as Error).message }, "ignoring unreadable snapshot index");
      return { entries: [], revision: 0 };
    }
  }

  /**
   * The newest readable snapshot of `version` at or before `maxSeq` (and after `after`); one that
   * does not match its digest (or does not decode) is skipped for the next older one. `listed`:
   * the index, already asked for (by a caller that fetched it alongside something else).
   */
  async nearest<V>(
    name: string,
    version: number,
    maxSeq: number,
    after = -1,
    listed?: Promise<{ entries: SnapshotEntry[] }>,
  ): Promise<Checkpoint<V> | undefined> {
    const { entries } = await (listed ?? this.list(name));
    const fit = entries
      .filter((e) => e.version === version && this.ours(e) && e.seq <= maxSeq && e.seq > after)
      .reverse();
    for (const entry of fit) {
      const cp = await this.read<V>(name, entry);
      if (cp) return cp;
    }
    return undefined;
  }

  private async read<V>(name: string, entry: SnapshotEntry): Promise<Checkpoint<V> | undefined> {
    try {
      // No allocation bigger than the chunks listed can hold (an index without a key is anyone's).
      if (entry.bytes > entry.chunks * (this.chunkBytes + HEADROOM))
        throw new Error("larger than its chunks");
      const parts = await Promise.all(
        Array.from({ length: entry.chunks }, (_, i) => this.kv.get(chunkKey(name, entry.slot, i))),
      );
      const bytes = new Uint8Array(entry.bytes);
      let at = 0;
      for (const p of parts) {
        if (p?.operation !== "PUT" || at + p.value.length > entry.bytes) throw new Error("chunks do not fit");
        bytes.set(p.value, at);
        at += p.value.length;
      }
      if (at !== entry.bytes || digestOf(bytes) !== entry.digest) throw new Error("digest mismatch");
      const cp = decode(bytes) as Checkpoint<V>;
      if (cp?.seq !== entry.seq || cp.version !== entry.version || cp.stream !== entry.stream)
        throw new Error("not the snapshot listed");
      return cp;
    } catch (err) {
      this.log.warn(
        { projection: name, seq: entry.seq, slot: entry.slot, err: (err as Error).message },
        "ignoring unreadable snapshot",
      );
      return undefined;
    }
  }

  /**
   * Encodes a snapshot (synchronously: the state may change right after) and returns its write:
   * the chunks into a free slot or one made free (`victim`), then the index, only if nobody
   * changed it meanwhile (another writer's snapshot wins).
   */
  prepare<V>(name: string, saved: Checkpoint<V>): () => Promise<PutResult | "unchanged"> {
    const cp = this.stream === undefined ? saved : { ...saved, stream: this.stream };
    const bytes = new Encoder({ ignoreUndefined: true }).encode(cp);
    const digest = digestOf(bytes);
    return async () => {
      const { entries, revision } = await this.list(name);
      if (entries.some((e) => e.seq === cp.seq && e.version === cp.version && this.ours(e)))
        return "unchanged";
      const { slot, kept } = this.slotFor(entries, cp.version, bytes.length);
      const chunks = Math.max(1, Math.ceil(bytes.length / this.chunkBytes));
      const entry: SnapshotEntry = {
        slot,
        seq: cp.seq,
        version: cp.version,
        chunks,
        bytes: bytes.length,
        digest,
      };
      if (cp.stream !== undefined) entry.stream = cp.stream;
      try {
        await Promise.all(
          Array.from({ length: chunks }, (_, i) =>
            this.kv.put(
              chunkKey(name, slot, i),
              bytes.subarray(i * this.chunkBytes, (i + 1) * this.chunkBytes),
            ),
          ),
        );
        const next = [...kept, entry].sort((a, b) => a.seq - b.seq);
        const index = this.wrapIndex(name, next);
        if (revision === 0) await this.kv.create(indexKey(name), index);
        else await this.kv.update(indexKey(name), index, revision);
        return "written";
      } catch (err) {
        this.log.warn(
          { projection: name, seq: cp.seq, err: (err as Error).message },
          "snapshot write failed",
        );
        return "failed";
      }
    };
  }

  /** A free slot, or the slot of the first entry dropped to make room (see `victim`). */
  private slotFor(
    entries: SnapshotEntry[],
    version: number,
    bytes: number,
  ): { slot: number; kept: SnapshotEntry[] } {
    // Another stream's are dropped at once: no position in this one is theirs.
    const kept = entries.filter((e) => this.ours(e));
    let total = kept.reduce((n, e) => n + e.bytes, bytes);
    let slot = -1;
    // The slots of any others dropped are free again from the next write on.
    while (kept.length > 0 && (kept.length >= this.keep || total > this.keepBytes)) {
      const [gone] = kept.splice(victim(kept, version), 1) as [SnapshotEntry];
      total -= gone.bytes;
      if (slot < 0) slot = gone.slot;
    }
    if (slot < 0) {
      const used = new Set(kept.map((e) => e.slot));
      for (slot = 0; used.has(slot); ) slot++;
    }
    return { slot, kept };
  }

  private wrapIndex(name: string, entries: SnapshotEntry[]): Uint8Array {
    const body = encode(entries);
    const key = this.key;
    return key ? encode({ b: body, m: key.mark(`corral.snapshots.${name}`, body, 0) }) : body;
  }

  private unwrapIndex(name: string, value: unknown): SnapshotEntry[] {
    const v = value as { b?: unknown; m?: unknown } | null;
    const wrapped = v?.b instanceof Uint8Array;
    let entries: unknown;
    if (this.integrity === "off") entries = wrapped ? decode(v?.b as Uint8Array) : value;
    else {
      const key = this.key;
      const mark = typeof v?.m === "string" ? v.m : undefined;
      if (!key || !wrapped || key.check(`corral.snapshots.${name}`, v?.b as Uint8Array, mark) !== "valid") {
        this.log.warn(
          { projection: name, reason: key ? "forged" : "unverified" },
          "ignoring snapshot index without a valid mark",
        );
        return [];
      }
      entries = decode(v?.b as Uint8Array);
    }
    if (!Array.isArray(entries) || !entries.every(isEntry)) throw new TypeError("not a snapshot index");
    return entries.sort((a, b) => a.seq - b.seq);
  }
}

/**
 * Which entry goes when the store is full: another version's first; else the one whose loss
 * leaves the smallest gap, the oldest and the newest always staying. So the kept ones thin out
 * evenly over the whole stream as it grows (any moment has one within about 2 × stream / keep
 * events), rather than covering only its last `keep` × interval events.
 */
function victim(entries: readonly SnapshotEntry[], version: number): number {
  const other = entries.findIndex((e) => e.version !== version);
  if (other >= 0) return other;
  if (entries.length < 3) return 0;
  let best = 1;
  let bestGap = Number.POSITIVE_INFINITY;
  for (let i = 1; i < entries.length - 1; i++) {
    const gap = (entries[i + 1] as SnapshotEntry).seq - (entries[i - 1] as SnapshotEntry).seq;
    if (gap < bestGap) {
      best = i;
      bestGap = gap;
    }
  }
  return best;
}

function isEntry(e: unknown): e is SnapshotEntry {
  const x = e as Partial<SnapshotEntry> | null;
  return (
    [x?.slot, x?.seq, x?.version, x?.chunks, x?.bytes].every(
      (n) => Number.isSafeInteger(n) && (n as number) >= 0,
    ) &&
    (x?.chunks as number) > 0 &&
    typeof x?.digest === "string" &&
    (x.stream === undefined || typeof x.stream === "string")
  );
}
