import { type KV, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { decode, encode } from "../codec/msgpack.ts";
import type { AggregateRef } from "../events/envelope.ts";

/** What we keep of an actor between events: enough for `machine.resolveState`. */
export interface Snapshot {
  /** Stream sequence of the last event folded into this snapshot. */
  seq: number;
  /** Machine definition version; a snapshot from another version is ignored (full replay). */
  version: number;
  value: unknown;
  context: unknown;
}

export const SNAPSHOT_BUCKET = "corral_snapshots";

/** Snapshots in a JetStream KV bucket, one key per aggregate (`<kind>.<id>`), latest only. */
export class SnapshotStore {
  private constructor(private readonly kv: KV) {}

  static async open(nc: NatsConnection, bucket = SNAPSHOT_BUCKET, replicas = 1): Promise<SnapshotStore> {
    const kv = await new Kvm(nc).create(bucket, { history: 1, replicas });
    return new SnapshotStore(kv);
  }

  async get(ref: AggregateRef): Promise<Snapshot | undefined> {
    const e = await this.kv.get(`${ref.kind}.${ref.id}`);
    if (e?.operation !== "PUT" || e.value.length === 0) return undefined;
    const s = decode(e.value) as Snapshot;
    if (typeof s?.seq !== "number" || typeof s.version !== "number") return undefined;
    return s;
  }

  async put(ref: AggregateRef, snapshot: Snapshot): Promise<void> {
    await this.kv.put(`${ref.kind}.${ref.id}`, encode(snapshot));
  }

  async delete(ref: AggregateRef): Promise<void> {
    await this.kv.delete(`${ref.kind}.${ref.id}`);
  }
}
