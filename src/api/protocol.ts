import { z } from "zod";
import { LEASE_ID } from "../events/lease-id.ts";

/**
 * The request/reply contract on `corral.api.>`: JSON bodies, so any NATS client (or the `nats`
 * CLI) can call it. A failure is always `{ "error": { "code", "message" } }`. Every pool endpoint
 * is on the pool's own subject, answered only by the daemon that runs that pool; a lease's pool is
 * in its first event (`LeaseGranted.data.poolId` on `corral.evt.lease.<id>`).
 */

export const API_PREFIX = "corral.api";

export const subjects = {
  acquire: (pool: string) => `${API_PREFIX}.pool.${pool}.acquire`,
  release: (pool: string) => `${API_PREFIX}.pool.${pool}.release`,
  renew: (pool: string) => `${API_PREFIX}.pool.${pool}.renew`,
  cancel: (pool: string) => `${API_PREFIX}.pool.${pool}.cancel`,
  status: (pool: string) => `${API_PREFIX}.pool.${pool}.status`,
  close: (pool: string) => `${API_PREFIX}.pool.${pool}.close`,
  poolsList: `${API_PREFIX}.pools.list`,
  down: `${API_PREFIX}.daemon.down`,
} as const;

const id = z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, "1-128 characters of A-Z a-z 0-9 _ -");

export const acquireRequest = z
  .object({
    /** How long to wait for a free agent (ms). */
    timeoutMs: z.number().int().min(0).max(600_000).default(30_000),
    /** Who holds the lease (free text, shown by status). */
    holder: z.string().max(200).optional(),
    /** Lease TTL (ms); default: the pool's. */
    ttlMs: z.number().int().min(100).max(86_400_000).optional(),
    /** Lets the caller cancel this acquire while it waits (`.cancel` with the same id). */
    requestId: z.string().min(1).max(128).optional(),
  })
  .strict();

const leaseId = z.string().regex(LEASE_ID, "a lease id as acquire returned it (<agent id>.<uuid>)");
export const leaseRequest = z.object({ leaseId }).strict();
export const renewRequest = z
  .object({ leaseId, ttlMs: z.number().int().min(100).max(86_400_000).optional() })
  .strict();
export const cancelRequest = z.object({ requestId: z.string().min(1).max(128) }).strict();
export const closeRequest = z.object({ revokeLeases: z.boolean().default(false) }).strict();

export interface AcquireReply {
  leaseId: string;
  pool: string;
  agentId: string;
  generation: number;
  ports: number[];
  urls: string[];
  /** Environment the agent sees for its ports (CORRAL_PORT_A …). */
  env: Record<string, string>;
  expiresAt: string;
  ttlMs: number;
  /** How to reach the agent from this host. */
  reach: { runtime: "docker" | "process"; instanceId: string; host: string };
}

export interface ErrorReply {
  error: { code: string; message: string };
}

export function isErrorReply(v: unknown): v is ErrorReply {
  return typeof v === "object" && v !== null && "error" in v;
}
