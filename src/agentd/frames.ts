import { decode, encode } from "../codec/msgpack.ts";
import { MAX_FRAME_BYTES } from "./protocol.ts";

/**
 * Framing of the CP ↔ agentd channel: a 4-byte big-endian length, then that many bytes of one
 * MessagePack value. The decoder takes bytes exactly as the socket hands them over and never
 * throws: a bad frame is a typed error, after which the stream cannot be trusted to be in step
 * and the decoder stays failed (the connection is closed).
 */

const HEADER = 4;

export type FrameError =
  | { code: "frame_too_large"; length: number; max: number }
  | { code: "bad_length"; length: number }
  | { code: "bad_msgpack"; message: string };

export interface PushResult {
  /** Frames completed by this chunk, in order (before the error, if any). */
  frames: unknown[];
  /** Set once the stream is broken; every later push returns it again with no frames. */
  error?: FrameError;
}

/** One frame for `msg`; throws RangeError if it would exceed `max` (a bug of the sender). */
export function encodeFrame(msg: unknown, max = MAX_FRAME_BYTES): Uint8Array {
  const body = encode(msg);
  if (body.length > max) throw new RangeError(`frame of ${body.length} bytes exceeds ${max}`);
  const frame = new Uint8Array(HEADER + body.length);
  new DataView(frame.buffer).setUint32(0, body.length);
  frame.set(body, HEADER);
  return frame;
}

export function describeFrameError(e: FrameError): string {
  switch (e.code) {
    case "frame_too_large":
      return `frame of ${e.length} bytes exceeds the limit of ${e.max}`;
    case "bad_length":
      return `bad frame length ${e.length}`;
    case "bad_msgpack":
      return `frame is not msgpack (${e.message})`;
  }
}

export class FrameDecoder {
  // Chunks not yet consumed; joined only once a whole frame is there, so a large frame arriving
  // in many small chunks costs one copy, not one per chunk.
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private failed: FrameError | undefined;

  constructor(private readonly max = MAX_FRAME_BYTES) {}

  push(chunk: Uint8Array): PushResult {
    if (this.failed) return { frames: [], error: this.failed };
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const frames: unknown[] = [];
    for (;;) {
      if (this.buffered < HEADER) break;
      const length = this.length();
      const bad = this.checkLength(length);
      if (bad) return this.fail(frames, bad);
      if (this.buffered < HEADER + length) break;
      const body = this.take(HEADER + length).subarray(HEADER);
      try {
        frames.push(decode(body));
      } catch (err) {
        return this.fail(frames, { code: "bad_msgpack", message: messageOf(err) });
      }
    }
    return { frames };
  }

  private checkLength(length: number): FrameError | undefined {
    // An empty frame cannot hold a msgpack map: a sender out of step, not a message.
    if (length === 0) return { code: "bad_length", length };
    if (length > this.max) return { code: "frame_too_large", length, max: this.max };
    return undefined;
  }

  private fail(frames: unknown[], error: FrameError): PushResult {
    this.failed = error;
    this.chunks = [];
    this.buffered = 0;
    return { frames, error };
  }

  /** The big-endian length at the front of the buffer (4 bytes are there). */
  private length(): number {
    const c = this.chunks[0]!;
    const h = c.length >= HEADER ? c : this.peek(HEADER);
    return ((h[0]! << 24) | (h[1]! << 16) | (h[2]! << 8) | h[3]!) >>> 0;
  }

  /** The first `n` buffered bytes (a fresh copy), without consuming them. */
  private peek(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let at = 0;
    for (const c of this.chunks) {
      if (at === n) break;
      const part = c.subarray(0, n - at);
      out.set(part, at);
      at += part.length;
    }
    return out;
  }

  /** Consumes and returns the first `n` buffered bytes (a view when one chunk holds them all). */
  private take(n: number): Uint8Array {
    const first = this.chunks[0]!;
    const out = first.length >= n ? first.subarray(0, n) : this.peek(n);
    let left = n;
    while (left > 0) {
      const c = this.chunks[0]!;
      if (c.length <= left) {
        this.chunks.shift();
        left -= c.length;
      } else {
        this.chunks[0] = c.subarray(left);
        left = 0;
      }
    }
    this.buffered -= n;
    return out;
  }
}

function messageOf(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).slice(0, 200);
}
