import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager, Kvm } from "../vendor/nats.ts";

/**
 * One of the daemon's projection buckets (checkpoints, snapshots). `create` makes it if missing
 * (the daemon); otherwise it is only bound (a read-only caller such as the CLI makes nothing).
 *
 * A bound bucket reads with direct gets when its stream allows them (corral's buckets do: Kvm
 * makes them so on nats-server 2.9+): the value comes back as raw bytes rather than base64 inside
 * JSON, which loads a 700 KB worldview snapshot in ~10 ms instead of ~60 ms. That needs one
 * stream info first: a direct get on a bucket that does not exist waits out its timeout, where
 * a plain get says "stream not found" at once (what the stores expect of a missing bucket).
 */
export async function openBucket(nc: NatsConnection, bucket: string, create: boolean): Promise<KV> {
  const kvm = new Kvm(nc);
  if (create) return kvm.create(bucket, { history: 1 });
  let direct = false;
  try {
    const jsm = await jetstreamManager(nc, { checkAPI: false });
    direct = (await jsm.streams.info(`KV_${bucket}`)).config.allow_direct === true;
  } catch {
    // Missing, or not ours to inspect: plain gets, whose errors the stores already handle.
  }
  return kvm.open(bucket, { allow_direct: direct });
}
