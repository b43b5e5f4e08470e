import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { decode, encode } from "../codec/msgpack.ts";
import type { EventKey } from "../store/event-mark.ts";
import { type Integrity, integrityOf } from "../store/integrity.ts";
import { JetStreamApiCodes, JetStreamApiError } from "../vendor/nats.ts";
import { openBucket } from "./kv-bucket.ts";
import { type ProjectionLogger, silent } from "./projection.ts";

/** A projection's saved position: the state after folding every record up to `seq`. */
export interface Checkpoint<V = unknown> {
  seq: number;
  /** The projection version that wrote it; any other version is ignored (rebuild). */
  version: number;
  state: V;
  /** The event stream it was folded from (EventStore.identity), stamped by a store bound to one. */
  stream?: string;
}

export const CHECKPOINT_BUCKET = "corral_projections";

/** NATS's default max_payload; the server's own limit is used when the connection knows it. */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;
/** Room for the KV message's headers and protocol overhead within max_payload. */
const HEADROOM = 1024;

export interface CheckpointStoreOptions {
  bucket?: string;
  /** false: only read an existing bucket (a read-only caller such as the CLI creates nothing). */
  create?: boolean;
  /** Largest encoded checkpoint to write; default: the server's max_payload less headroom. */
  maxBytes?: number;
  logger?: ProjectionLogger;
  /** As for the event store (default: what is bound to the connection, else "off"). */
  integrity?: Integrity;
  /**
   * The identity of the stream the checkpoints are folded from (EventStore.identity): each one
   * written is stamped with it, and one of another stream is ignored (the stream was deleted and
   * made again: its sequences start anew). None: any is read, none stamped.
   */
  stream?: string;
}

export type PutResult = "written" | "too-large" | "failed";

/** Checkpoints in a JetStream KV bucket, one key per projection name, latest only. */
export class CheckpointStore {
  private constructor(
    private readonly kv: KV,
    readonly maxBytes: number,
    private readonly log: ProjectionLogger,
    /** A checkpoint stands in for events: with a key it is marked like one (`{b, m}`), and one
     * without a valid mark is ignored; "unverified" (a reader without the key) ignores every
     * checkpoint and folds the stream, where forged events show (ARCHITECTURE.md, "Event marks"). */
    private readonly integrity: Integrity,
    private readonly stream: string | undefined,
  ) {}

  private get key(): EventKey | undefined {
    return typeof this.integrity === "object" ? this.integrity.key : undefined;
  }

  static async open(nc: NatsConnection, opts: CheckpointStoreOptions = {}): Promise<CheckpointStore> {
    const bucket = opts.bucket ?? CHECKPOINT_BUCKET;
    const kv = await openBucket(nc, bucket, opts.create !== false);
    const maxBytes = opts.maxBytes ?? (nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD) - HEADROOM;
    const integrity = opts.integrity ?? integrityOf(nc) ?? "off";
    return new CheckpointStore(kv, maxBytes, opts.logger ?? silent, integrity, opts.stream);
  }

  /** The checkpoint under `name`, or undefined when there is none or it cannot be read. */
  async get<V>(name: string): Promise<Checkpoint<V> | undefined> {
    let bytes: Uint8Array;
    try {
      const e = await this.kv.get(name);
      if (e?.operation !== "PUT" || e.value.length === 0) return undefined;
      bytes = e.value;
    } catch (err) {
      // No bucket yet (read-only open, nothing checkpointed so far): simply none.
      if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) return undefined;
      // NATS trouble: fold from the start instead.
      this.log.warn({ projection: name, err: (err as Error).message }, "cannot read projection checkpoint");
      return undefined;
    }
    try {
      const cp = this.unwrap(name, decode(bytes)) as Checkpoint<V> | undefined;
      if (!cp) return undefined;
      if (!Number.isInteger(cp?.seq) || cp.seq < 0 || !Number.isInteger(cp.version)) {
        throw new TypeError("not a checkpoint");
      }
      if (this.stream !== undefined && cp.stream !== this.stream) {
        this.log.warn(
          { projection: name, seq: cp.seq, found: cp.stream, stream: this.stream },
          "ignoring checkpoint of another event stream",
        );
        return undefined;
      }
      return cp;
    } catch (err) {
      this.log.warn(
        { projection: name, err: (err as Error).message },
        "ignoring unreadable projection checkpoint",
      );
      return undefined;
    }
  }

  /**
   * Writes a checkpoint. One that would not fit in a NATS message is logged and skipped, and a
   * failed write is logged: the projection carries on and simply replays more next time.
   */
  async put<V>(name: string, cp: Checkpoint<V>): Promise<PutResult> {
    const body = encode(this.stream === undefined ? cp : { ...cp, stream: this.stream });
    const key = this.key;
    const bytes = key ? encode({ b: body, m: key.mark(`corral.checkpoint.${name}`, body, 0) }) : body;
    if (bytes.length > this.maxBytes) {
      this.log.warn(
        { projection: name, seq: cp.seq, bytes: bytes.length, maxBytes: this.maxBytes },
        "projection checkpoint too large, not written",
      );
      return "too-large";
    }
    try {
      await this.kv.put(name, bytes);
      return "written";
    } catch (err) {
      this.log.warn(
        { projection: name, seq: cp.seq, err: (err as Error).message },
        "checkpoint write failed",
      );
      return "failed";
    }
  }

  /** The checkpoint inside a stored value, if this store may believe it. */
  private unwrap(name: string, value: unknown): unknown {
    const v = value as { b?: unknown; m?: unknown } | null;
    const wrapped = v?.b instanceof Uint8Array;
    if (this.integrity === "off") return wrapped ? decode(v?.b as Uint8Array) : value;
    const key = this.key;
    const mark = typeof v?.m === "string" ? v.m : undefined;
    if (!key || !wrapped || key.check(`corral.checkpoint.${name}`, v?.b as Uint8Array, mark) !== "valid") {
      this.log.warn(
        { projection: name, reason: key ? "forged" : "unverified" },
        "ignoring projection checkpoint without a valid mark",
      );
      return undefined;
    }
    return decode(v?.b as Uint8Array);
  }

  async delete(name: string): Promise<void> {
    await this.kv.delete(name);
  }
}
