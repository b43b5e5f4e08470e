import { decodeEvent } from "../codec/msgpack.ts";
import type { CorralEvent } from "../events/catalogue.ts";
import { DecodeError } from "../events/errors.ts";

/** One stream message as a reader sees it: the decoded event, or the typed reason it is unreadable. */
export type StoredRecord =
  | { seq: number; subject: string; time: number; event: CorralEvent; error?: undefined }
  | { seq: number; subject: string; time: number; event?: undefined; error: DecodeError };

export function toRecord(seq: number, subject: string, time: number, data: Uint8Array): StoredRecord {
  try {
    return { seq, subject, time, event: decodeEvent(data, { seq, subject }) };
  } catch (err) {
    const error =
      err instanceof DecodeError ? err : new DecodeError("not-envelope", String(err), { seq, subject });
    return { seq, subject, time, error };
  }
}
