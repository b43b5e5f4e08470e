import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { decode, encode } from "../codec/msgpack.ts";
import type { AggregateRef } from "../events/envelope.ts";
import { Kvm } from "../vendor/nats.ts";
import type { EventKey } from "./event-mark.ts";
import { type Integrity, integrityOf } from "./integrity.ts";

/** What we keep of an actor between events: enough for `machine.resolveState`. */
export interface Snapshot {
  /** Stream sequence of the last event folded into this snapshot. */
  seq: number;
  /** Machine definition version; a snapshot from another version is ignored (full replay). */
  version: number;
  value: unknown;
  context: unknown;
}

/** Where a restart starts folding a kind: snapshots of `ids` as of stream sequence `seq`. */
export interface RecoveryPoint {
  seq: number;
  ids: string[];
}

export const SNAPSHOT_BUCKET = "corral_snapshots";

/** A snapshot stands in for events, so a writer marks it like one (ARCHITECTURE.md, "Event marks"). */
export class UnmarkedSnapshotError extends Error {
  override name = "UnmarkedSnapshotError";
}

/**
 * Snapshots in a JetStream KV bucket, one key per aggregate (`<kind>.<id>`), latest only. With a
 * writer key (bound to the connection, as for the event store) each value is `{b, m}`: the msgpack
 * snapshot and its mark over the pseudo-subject `corral.snapshot.<kind>.<id>` (never an event
 * subject, so neither mark passes for the other). One without a valid mark is refused: the actor
 * host then replays the full history instead.
 */
export class SnapshotStore {
  private constructor(
    private readonly kv: KV,
    private readonly key: EventKey | undefined,
    private readonly stream: string | undefined,
  ) {}

  /**
   * `stream`: the identity of the event stream the snapshots stand in for (EventStore.identity).
   * Each value written is stamped with it, and one stamped with another (or none) reads as absent:
   * after the stream was deleted and made again, the actors are rebuilt from the new one instead of
   * from snapshots whose sequences name positions it never had.
   */
  static async open(
    nc: NatsConnection,
    bucket = SNAPSHOT_BUCKET,
    replicas = 1,
    integrity?: Integrity,
    stream?: string,
  ): Promise<SnapshotStore> {
    const kv = await new Kvm(nc).create(bucket, { history: 1, replicas });
    const i = integrity ?? integrityOf(nc) ?? "off";
    return new SnapshotStore(kv, typeof i === "object" ? i.key : undefined, stream);
  }

  async get(ref: AggregateRef): Promise<Snapshot | undefined> {
    const s = await this.read(`${ref.kind}.${ref.id}`, `the snapshot of ${ref.kind}/${ref.id}`);
    if (!this.ours(s)) return undefined;
    const snap = s as Partial<Snapshot> | undefined;
    if (typeof snap?.seq !== "number" || typeof snap.version !== "number") return undefined;
    return snap as Snapshot;
  }

  async put(ref: AggregateRef, snapshot: Snapshot): Promise<void> {
    await this.write(`${ref.kind}.${ref.id}`, snapshot);
  }

  /**
   * The recovery point `name` (`recovery.<kind>.<instance>`): the stream sequence as of which every
   * actor it lists had its snapshot written (the actor host's `writeRecoveryPoint`).
   */
  async getPoint(name: string): Promise<RecoveryPoint | undefined> {
    const read = await this.read(`recovery.${name}`, `recovery point ${name}`);
    if (!this.ours(read)) return undefined;
    const p = read as Partial<RecoveryPoint> | undefined;
    if (typeof p?.seq !== "number" || !Array.isArray(p.ids) || !p.ids.every((id) => typeof id === "string"))
      return undefined;
    return { seq: p.seq, ids: p.ids };
  }

  async putPoint(name: string, point: RecoveryPoint): Promise<void> {
    await this.write(`recovery.${name}`, point);
  }

  /** The value under `name`, its mark checked when this store has a key (else refused, naming `what`). */
  private async read(name: string, what: string): Promise<unknown> {
    const e = await this.kv.get(name);
    if (e?.operation !== "PUT" || e.value.length === 0) return undefined;
    const s = decode(e.value) as { b?: unknown; m?: unknown } | null;
    if (this.key) {
      const body = s?.b;
      const mark = typeof s?.m === "string" ? s.m : undefined;
      if (
        !(body instanceof Uint8Array) ||
        this.key.check(`corral.snapshot.${name}`, body, mark) !== "valid"
      ) {
        throw new UnmarkedSnapshotError(`${what} has no valid mark`);
      }
      return decode(body);
    }
    // Marked by a writer; this store has no key to check it.
    return s?.b instanceof Uint8Array ? decode(s.b) : s;
  }

  /** Whether a value read belongs to this store's stream (any does, for a store bound to none). */
  private ours(value: unknown): boolean {
    return this.stream === undefined || (value as { stream?: unknown } | undefined)?.stream === this.stream;
  }

  private async write(name: string, data: object): Promise<void> {
    const value = this.stream === undefined ? data : { ...data, stream: this.stream };
    if (!this.key) {
      await this.kv.put(name, encode(value));
      return;
    }
    const b = encode(value);
    await this.kv.put(name, encode({ b, m: this.key.mark(`corral.snapshot.${name}`, b, 0) }));
  }

  async delete(ref: AggregateRef): Promise<void> {
    await this.kv.delete(`${ref.kind}.${ref.id}`);
  }
}
