import { z } from "zod";
import { LEASE_ID } from "../events/lease-id.ts";
import { DEFAULT_ACQUIRE_TIMEOUT_MS } from "./protocol.ts";

/** The request bodies of the pool API (protocol.ts), as the daemon checks them. */

export const acquireRequest = z
  .object({
    /** How long to wait for a free agent (ms). */
    timeoutMs: z.number().int().min(0).max(600_000).default(DEFAULT_ACQUIRE_TIMEOUT_MS),
    /** Who holds the lease (free text, shown by status). */
    holder: z.string().max(200).optional(),
    /** Lease TTL (ms); default: the pool's. */
    ttlMs: z.number().int().min(100).max(86_400_000).optional(),
    /** Lets the caller cancel this acquire while it waits (`.cancel` with the same id). */
    requestId: z.string().min(1).max(128).optional(),
  })
  .strict();

const leaseId = z.string().regex(LEASE_ID, "a lease id as acquire returned it (<agent id>.<uuid>)");
/** Any string: a wrong one is refused as lease_token_invalid by the broker, not as a bad request. */
const leaseToken = z.string().min(1, "the lease token acquire returned").max(256);
export const leaseRequest = z.object({ leaseId, leaseToken }).strict();
export const renewRequest = z
  .object({ leaseId, leaseToken, ttlMs: z.number().int().min(100).max(86_400_000).optional() })
  .strict();
export const cancelRequest = z.object({ requestId: z.string().min(1).max(128) }).strict();
export const closeRequest = z.object({ revokeLeases: z.boolean().default(false) }).strict();
/** Names the instance again: a stray or garbled message on the down subject stops nothing. */
export const downRequest = z.object({ instance: z.string().min(1).max(64) }).strict();
