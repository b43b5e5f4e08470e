import type { Msg } from "@nats-io/nats-core";

/**
 * A delivered message's raw bytes, read from nats-core's MsgImpl where a rebuild cannot afford
 * its getters (each decodes a string or parses a header block, per message). Every caller has a
 * fallback for when the client's internals are not shaped as expected.
 */
interface RawMsg {
  /** Header block, then payload. */
  _rdata?: Uint8Array;
  _msg?: { hdr?: number; reply?: Uint8Array; subject?: Uint8Array };
}

/** The raw bytes of a delivered message and the length of its header block, when nats-core has them. */
export function rawOf(msg: Msg): { data: Uint8Array; hdr: number } | undefined {
  const raw = msg as unknown as RawMsg;
  const data = raw._rdata;
  const hdr = raw._msg?.hdr;
  return data instanceof Uint8Array && typeof hdr === "number" ? { data, hdr } : undefined;
}

const utf8 = new TextEncoder();
const NO_REPLY = new Uint8Array(0);

/** The subject's bytes, without decoding them to a string. */
export function subjectBytesOf(msg: Msg): Uint8Array {
  const subject = (msg as unknown as RawMsg)._msg?.subject;
  return subject instanceof Uint8Array ? subject : utf8.encode(msg.subject);
}

/** The reply subject's bytes, without decoding it to a string (empty when there is none). */
export function replyBytesOf(msg: Msg): Uint8Array {
  const reply = (msg as unknown as RawMsg)._msg?.reply;
  if (reply instanceof Uint8Array) return reply;
  return msg.reply ? utf8.encode(msg.reply) : NO_REPLY;
}

/** The raw bytes of a delivered message (header block, then payload), when nats-core has them. */
export function rawDataOf(msg: Msg): Uint8Array | undefined {
  const data = (msg as unknown as RawMsg)._rdata;
  return data instanceof Uint8Array ? data : undefined;
}

/** The length of a delivered message's header block; -1 when it has none or nats-core does not say. */
export function rawHeaderLength(msg: Msg): number {
  const hdr = (msg as unknown as RawMsg)._msg?.hdr;
  return typeof hdr === "number" ? hdr : -1;
}

/** A message as src/nats/msg-frames.ts read it from a chunk its tap copied (places in the tap's ring). */
export interface TappedFrame {
  subject: Uint8Array;
  /** Header block length; total size (header block, then body). */
  hdr: number;
  size: number;
  /** Where its subject, and its header block and body, are in the tap's copy. */
  subjectAt: number;
  dataAt: number;
}

/**
 * The frame a tap placed, when the frame reader made it and its tap copied it; undefined for any
 * other message. One check of one object, where a read staging every message had checked it again
 * for each field through the accessors above.
 */
export function tappedFrame(msg: Msg): TappedFrame | undefined {
  const frame = (msg as unknown as RawMsg)._msg as Partial<TappedFrame> | undefined;
  return frame !== undefined && (frame.subjectAt as number) >= 0 ? (frame as TappedFrame) : undefined;
}
