import { randomFillSync } from "node:crypto";

/**
 * UUIDv7 (RFC 9562): 48-bit ms timestamp, then a 12-bit counter in rand_a so ids made in the same
 * millisecond by this process still sort in creation order, then 62 random bits.
 */
const pool = new Uint8Array(4096);
let poolPos = pool.length;
let lastMs = 0;
let counter = 0;

/**
 * `n` bytes from the system's random source, drawn a pool at a time (one call per 4 KiB, not per
 * id). The view is overwritten by later draws: copy or encode it before drawing again.
 */
export function randomBytes(n: number): Uint8Array {
  if (poolPos + n > pool.length) {
    randomFillSync(pool);
    poolPos = 0;
  }
  const out = pool.subarray(poolPos, poolPos + n);
  poolPos += n;
  return out;
}

const HEX_DIGIT = Array.from("0123456789abcdef", (c) => c.charCodeAt(0));
const DASH = 45;
/**
 * The id's characters, made into a string in one call: 20 concatenations would make a rope that
 * every later reader flattens, the encoder of each event first (~0.3 µs an append).
 */
const chars: number[] = new Array(36).fill(0);

export function uuidv7(now: number = Date.now()): string {
  let ms = now;
  if (ms <= lastMs) {
    ms = lastMs;
    counter++;
    if (counter > 0xfff) {
      // Counter exhausted within one ms: borrow the next millisecond to stay monotonic.
      ms = ++lastMs;
      counter = 0;
    }
  } else {
    lastMs = ms;
    counter = 0;
  }
  const r = randomBytes(8);
  const b = new Uint8Array(16);
  b[0] = (ms / 2 ** 40) & 0xff;
  b[1] = (ms / 2 ** 32) & 0xff;
  b[2] = (ms >>> 24) & 0xff;
  b[3] = (ms >>> 16) & 0xff;
  b[4] = (ms >>> 8) & 0xff;
  b[5] = ms & 0xff;
  b[6] = 0x70 | ((counter >>> 8) & 0x0f);
  b[7] = counter & 0xff;
  b[8] = 0x80 | ((r[0] as number) & 0x3f);
  for (let i = 1; i < 8; i++) b[8 + i] = r[i] as number;
  let j = 0;
  for (let i = 0; i < 16; i++) {
    const v = b[i] as number;
    chars[j++] = HEX_DIGIT[v >>> 4] as number;
    chars[j++] = HEX_DIGIT[v & 0x0f] as number;
    if (i === 3 || i === 5 || i === 7 || i === 9) chars[j++] = DASH;
  }
  return String.fromCharCode.apply(null, chars);
}

/** The millisecond timestamp a UUIDv7 carries. */
export function uuidv7Time(id: string): number {
  return Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
}
