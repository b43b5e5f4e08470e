import type { Msg } from "@nats-io/nats-core";
import { MARK_HEADER } from "./event-mark.ts";

const NEEDLE = Buffer.from(`\r\n${MARK_HEADER}:`, "latin1");

/** The shape of nats-core's MsgImpl that holds the raw bytes (header block, then payload). */
interface RawMsg {
  _rdata?: Uint8Array;
  _msg?: { hdr?: number };
}

/**
 * The Corral-Mark header of a delivered message. A rebuild reads every message, and nats.js parses
 * a whole header block into a map on first access (reader.ts skips that for data messages), so the
 * one header is found in the raw block with one native search; when the client's internals are
 * not shaped as expected, its own parser answers.
 */
export function markOf(msg: Msg): string | undefined {
  const raw = msg as unknown as RawMsg;
  const data = raw._rdata;
  const hdr = raw._msg?.hdr;
  if (!(data instanceof Uint8Array) || typeof hdr !== "number") {
    return msg.headers?.get(MARK_HEADER) || undefined;
  }
  if (hdr <= 0) return undefined;
  const block = Buffer.from(data.buffer, data.byteOffset, hdr);
  const at = block.indexOf(NEEDLE);
  if (at < 0) return undefined;
  const from = at + NEEDLE.length;
  const end = block.indexOf(13 /* \r */, from);
  return block.toString("latin1", from, end < 0 ? hdr : end).trim() || undefined;
}
