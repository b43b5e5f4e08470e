/**
 * The request/reply contract on `corral.api.>`: JSON bodies, so any NATS client (or the `nats`
 * CLI) can call it. A failure is always `{ "error": { "code", "message" } }`. Every pool endpoint
 * is on the pool's own subject, answered only by the daemon that runs that pool; a lease id names
 * its agent, whose first event names the pool (`AgentRequested.data.poolId`). The request
 * schemas are apart, in requests.ts, so a client (the CLI) answers without loading zod.
 */

export const API_PREFIX = "corral.api";

export const subjects = {
  acquire: (pool: string) => `${API_PREFIX}.pool.${pool}.acquire`,
  release: (pool: string) => `${API_PREFIX}.pool.${pool}.release`,
  renew: (pool: string) => `${API_PREFIX}.pool.${pool}.renew`,
  cancel: (pool: string) => `${API_PREFIX}.pool.${pool}.cancel`,
  status: (pool: string) => `${API_PREFIX}.pool.${pool}.status`,
  close: (pool: string) => `${API_PREFIX}.pool.${pool}.close`,
  /** Answered by every daemon (no queue group): a client gathers the replies (scatter-gather). */
  poolsList: `${API_PREFIX}.pools.list`,
  /** Addressed to one instance: nothing that stops agents goes to whichever daemon answers first. */
  down: (instance: string) => `${API_PREFIX}.daemon.${instance}.down`,
} as const;

/** How long an acquire waits for a free agent unless it says otherwise (ms). */
export const DEFAULT_ACQUIRE_TIMEOUT_MS = 30_000;

export interface AcquireReply {
  leaseId: string;
  /** Proves the holder on release and renew; shown once (the stream keeps only its hash). */
  leaseToken: string;
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

/** What release and renew need: the lease id and the token its acquire returned. */
export interface LeaseRef {
  leaseId: string;
  leaseToken: string;
}

/** One daemon's answer on `poolsList`. */
export interface PoolsReply {
  instance: string;
  pools: unknown[];
  /** Every instance this daemon knows to run an open pool (the client stops once all answered). */
  instances?: string[];
}

export interface ErrorReply {
  error: { code: string; message: string };
}

export function isErrorReply(v: unknown): v is ErrorReply {
  return typeof v === "object" && v !== null && "error" in v;
}
