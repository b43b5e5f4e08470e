import { createPrivateKey, createPublicKey, type KeyObject, sign } from "node:crypto";
import type { Authenticator } from "@nats-io/nats-core";
import { NatsCredentialsError } from "./credential-files.ts";

/**
 * NATS nkey authentication with node's own Ed25519. nats.js signs the server's nonce with
 * tweetnacl, pure JavaScript: ~25-35 ms on every connection of a fresh process (every CLI
 * command), against ~1 ms here. The formats are the nkeys ones: RFC 4648 base32 without padding,
 * a CRC-16/XMODEM (little-endian) after the bytes, and a prefix byte naming the key's role.
 */

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/** A seed's first 5 bits ('S'); the next 8 are the public key's prefix byte. */
const SEED_PREFIX = 18 << 3;
/** Ed25519 in PKCS#8 (RFC 8410): this header, then the 32-byte seed. */
const PKCS8_HEADER = Buffer.from("302e020100300506032b657004220420", "hex");

export interface NkeyPair {
  /** The public key as the server's config names it (U… for a user). */
  readonly publicKey: string;
  sign(data: Uint8Array): Uint8Array;
}

/** The key pair of an nkey seed (`SU…`); NatsCredentialsError, not naming the seed, when it is not one. */
export function nkeyFromSeed(seed: Uint8Array | string): NkeyPair {
  const text = typeof seed === "string" ? seed : new TextDecoder().decode(seed);
  const raw = base32Decode(text.trim());
  if (raw?.length !== 36 || !crcMatches(raw) || ((raw[0] as number) & 0xf8) !== SEED_PREFIX)
    throw new NatsCredentialsError("the nkey seed is malformed (not base32, a bad checksum, or not a seed)");
  const prefix = (((raw[0] as number) & 0x07) << 5) | (((raw[1] as number) & 0xf8) >> 3);
  const key: KeyObject = createPrivateKey({
    key: Buffer.concat([PKCS8_HEADER, raw.subarray(2, 34)]),
    format: "der",
    type: "pkcs8",
  });
  const spki = createPublicKey(key).export({ format: "der", type: "spki" });
  const publicKey = encodeKey(prefix, spki.subarray(spki.length - 32));
  return { publicKey, sign: (data) => sign(null, data, key) };
}

/** nats.js's nkeyAuthenticator, natively: the public key, and the nonce signed (base64). */
export function nkeyAuthenticator(seed: Uint8Array | string): Authenticator {
  const pair = nkeyFromSeed(seed);
  return (nonce?: string) => ({
    nkey: pair.publicKey,
    sig: nonce ? Buffer.from(pair.sign(new TextEncoder().encode(nonce))).toString("base64") : "",
  });
}

/** Both blocks of a creds file: `-----BEGIN …-----` lines around the JWT, then around the seed (LF or CRLF). */
const CREDS_BLOCK = /-{3,}[^\n]*-{3,}\r?\n\s*(\S+)\s*\n\s*-{3,}[^\n]*-{3,}/g;

/** nats.js's credsAuthenticator, natively: the user JWT, and the nonce signed with the file's seed. */
export function credsAuthenticator(creds: Uint8Array, file: string): Authenticator {
  const blocks = [...new TextDecoder().decode(creds).matchAll(CREDS_BLOCK)].map((m) => m[1] as string);
  const [jwt, seed] = blocks;
  if (!jwt || !seed) throw new NatsCredentialsError(`${file} is not a NATS creds file (a JWT and a seed)`);
  const nkey = nkeyAuthenticator(seed);
  return (nonce?: string) => ({ jwt, ...nkey(nonce) });
}

function encodeKey(prefix: number, key: Uint8Array): string {
  const body = Buffer.concat([Buffer.from([prefix]), key]);
  const crc = crc16(body);
  return base32Encode(Buffer.concat([body, Buffer.from([crc & 0xff, crc >> 8])]));
}

function crcMatches(raw: Uint8Array): boolean {
  const n = raw.length - 2;
  return crc16(raw.subarray(0, n)) === ((raw[n] as number) | ((raw[n + 1] as number) << 8));
}

/** CRC-16/XMODEM: polynomial 0x1021, initial value 0. */
function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const b of bytes) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

function base32Encode(bytes: Uint8Array): string {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = ((value << 8) | b) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

/** undefined when `text` holds a character outside the alphabet. */
function base32Decode(text: string): Uint8Array | undefined {
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const c of text) {
    const v = ALPHABET.indexOf(c);
    if (v < 0) return undefined;
    value = ((value << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Uint8Array.from(out);
}
