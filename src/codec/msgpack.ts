import { Decoder, Encoder } from "@msgpack/msgpack";
import { type CorralEvent, checkEnvelope } from "../events/catalogue.ts";
import type { Envelope } from "../events/envelope.ts";
import { NotAnEnvelopeError, type StreamPosition } from "../events/errors.ts";

/**
 * The one place bytes become events and back. Standard MessagePack; encoder and decoder are
 * reused because constructing them per message costs more than the encoding itself.
 */
const encoder = new Encoder({ ignoreUndefined: true });
const decoder = new Decoder();

export function encode(value: unknown): Uint8Array {
  return encoder.encode(value);
}

/** Raw msgpack decode; throws NotAnEnvelopeError on bytes that are not msgpack. */
export function decode(bytes: Uint8Array, at?: StreamPosition): unknown {
  try {
    return decoder.decode(bytes);
  } catch (err) {
    throw new NotAnEnvelopeError(`not msgpack (${(err as Error).message})`, at);
  }
}

export function encodeEvent(event: Envelope): Uint8Array {
  return encoder.encode(event);
}

/** Bytes → validated event; any failure is a typed DecodeError that names the stream position. */
export function decodeEvent(bytes: Uint8Array, at?: StreamPosition): CorralEvent {
  return checkEnvelope(decode(bytes, at), at);
}
