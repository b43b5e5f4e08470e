import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/**
 * Lease tokens: the acquire reply carries one (32 random bytes, base64url), the stream keeps only
 * its SHA-256 (AgentLeased.tokenHash), and release and renew must present it. A lease id alone is
 * public (it is on the stream); the token is what proves the caller is the holder.
 */

export function newLeaseToken(): { token: string; hash: string } {
  const token = randomBytes(32).toString("base64url");
  return { token, hash: hashLeaseToken(token) };
}

export function hashLeaseToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("base64url");
}

/** Compares hashes (fixed length) in constant time, so timing says nothing about the token. */
export function leaseTokenMatches(token: string, hash: string | undefined): boolean {
  if (!hash) return false;
  const a = Buffer.from(hashLeaseToken(token));
  const b = Buffer.from(hash);
  return a.length === b.length && timingSafeEqual(a, b);
}
