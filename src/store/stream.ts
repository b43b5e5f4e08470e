import type { JetStreamManager, StreamConfig } from "@nats-io/jetstream";
import {
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  nanos,
  RetentionPolicy,
  StorageType,
} from "../vendor/nats.ts";
import { ALL_EVENTS } from "./subjects.ts";

export interface StreamOptions {
  /** Stream name; one stream holds every corral event. */
  name: string;
  /** Deduplication window for Nats-Msg-Id: a retried append inside it is not stored twice. */
  duplicateWindowMs: number;
  /** 1 for a single server; 3 or 5 once corral runs against a cluster. */
  replicas: number;
  /** 0 keeps events forever. */
  maxAgeMs: number;
}

export const DEFAULT_STREAM: StreamOptions = {
  name: "CORRAL_EVENTS",
  duplicateWindowMs: 120_000,
  replicas: 1,
  maxAgeMs: 0,
};

export interface EnsureResult {
  action: "created" | "updated" | "unchanged";
  /**
   * When the stream was created (nats-server's own timestamp): which stream this is. One deleted
   * and made again under the same name starts its sequences anew, so state saved from the old one
   * (checkpoints, snapshots, recovery points) names positions that mean nothing in it.
   */
  created: string;
}

/** Creates the event stream, or brings an existing one to our settings; safe to call at every start. */
export async function ensureStream(jsm: JetStreamManager, opts: StreamOptions): Promise<EnsureResult> {
  const want: Partial<StreamConfig> & { name: string } = {
    name: opts.name,
    subjects: [ALL_EVENTS],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    duplicate_window: nanos(opts.duplicateWindowMs),
    num_replicas: opts.replicas,
    max_age: nanos(opts.maxAgeMs),
    allow_direct: true,
  };
  let current: StreamConfig;
  let created: string;
  try {
    ({ config: current, created } = await jsm.streams.info(opts.name));
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) {
      try {
        return { action: "created", created: (await jsm.streams.add(want)).created };
      } catch (addErr) {
        // Another process may have created it between our info and add: then compare.
        const raced = await jsm.streams.info(opts.name).catch(() => undefined);
        if (!raced) {
          throw new Error(`cannot create stream ${opts.name} on ${ALL_EVENTS}: ${(addErr as Error).message}`);
        }
        ({ config: current, created } = raced);
      }
    } else {
      throw err;
    }
  }
  if (current.storage !== StorageType.File) {
    throw new Error(`stream ${opts.name} exists with ${current.storage} storage; corral needs file storage`);
  }
  const same =
    current.subjects.length === 1 &&
    current.subjects[0] === ALL_EVENTS &&
    current.duplicate_window === want.duplicate_window &&
    current.num_replicas === want.num_replicas &&
    current.max_age === want.max_age &&
    current.allow_direct === true;
  if (same) return { action: "unchanged", created };
  await jsm.streams.update(opts.name, { ...current, ...want } as StreamConfig);
  return { action: "updated", created };
}
