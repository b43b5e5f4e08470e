import { hash, randomFillSync, timingSafeEqual } from "node:crypto";

/**
 * Lease tokens: the acquire reply carries one (32 random bytes, base64url), the stream keeps only
 * its SHA-256 (AgentLeased.tokenHash), and release and renew must present it. A lease id alone is
 * public (it is on the stream); the token is what proves the caller is the holder.
 */

const TOKEN_BYTES = 32;
// One call to the system's random source per 128 tokens instead of one per acquire (the hot
// path); every byte is used once.
const pool = Buffer.alloc(TOKEN_BYTES * 128);
let poolPos = pool.length;

export function newLeaseToken(): { token: string; hash: string } {
  if (poolPos + TOKEN_BYTES > pool.length) {
    randomFillSync(pool);
    poolPos = 0;
  }
  const token = pool.toString("base64url", poolPos, poolPos + TOKEN_BYTES);
  poolPos += TOKEN_BYTES;
  return { token, hash: hashLeaseToken(token) };
}

export function hashLeaseToken(token: string): string {
  return hash("sha256", token, "base64url");
}

/** Compares hashes (fixed length) in constant time, so timing says nothing about the token. */
export function leaseTokenMatches(token: string, hash: string | undefined): boolean {
  if (!hash) return false;
  const a = Buffer.from(hashLeaseToken(token));
  const b = Buffer.from(hash);
  return a.length === b.length && timingSafeEqual(a, b);
}
