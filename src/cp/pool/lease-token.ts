import { hash, timingSafeEqual } from "node:crypto";
import { randomBytes } from "../../events/id.ts";

/**
 * Lease tokens: the acquire reply carries one (32 random bytes, base64url), the stream keeps only
 * its SHA-256 (AgentLeased.tokenHash), and release and renew must present it. A lease id alone is
 * public (it is on the stream); the token is what proves the caller is the holder.
 */

const TOKEN_BYTES = 32;

/** A new token (from the pooled random source: the acquire is the hot path) and its hash. */
export function newLeaseToken(): { token: string; hash: string } {
  const bytes = randomBytes(TOKEN_BYTES);
  const token = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64url");
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
