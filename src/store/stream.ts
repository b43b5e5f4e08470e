import {
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
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
  try {
    current = (await jsm.streams.info(opts.name)).config;
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) {
      try {
        await jsm.streams.add(want);
        return { action: "created" };
      } catch (addErr) {
        // Another process may have created it between our info and add: then compare.
        const raced = await jsm.streams.info(opts.name).catch(() => undefined);
        if (!raced) {
          throw new Error(`cannot create stream ${opts.name} on ${ALL_EVENTS}: ${(addErr as Error).message}`);
        }
        current = raced.config;
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
  if (same) return { action: "unchanged" };
  await jsm.streams.update(opts.name, { ...current, ...want } as StreamConfig);
  return { action: "updated" };
}
